# The image every production service runs: web (gunicorn), worker and beat (celery).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY alerts ./alerts
COPY worker ./worker
COPY templates ./templates
# Editable, so the package finds templates/ beside it as in a checkout.
RUN pip install --no-cache-dir -e . && pybabel compile -d alerts/translations \
    && useradd --system --home /app alerts \
    && mkdir /metrics-data && chown alerts /metrics-data
USER alerts
EXPOSE 8000
CMD ["gunicorn", "-c", "python:alerts.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "2", "alerts:create_app()"]
