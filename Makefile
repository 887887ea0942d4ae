# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench faults topology format clean catalogs translations

# Compiled catalogs of the site's languages (alerts/translations/<locale>/LC_MESSAGES).
PO_FILES := $(wildcard alerts/translations/*/LC_MESSAGES/messages.po)
MO_FILES := $(PO_FILES:.po=.mo)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "news alerts needs Python 3.11 or newer as $(PYTHON)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# `make run PORT=5001 SMTP_PORT=8026` when the defaults are taken.
PORT ?= 5000
SMTP_PORT ?= 8025

# Every process counts its metrics in var/metrics (emptied at each start), so /metrics adds
# up the web app, the workers and beat as in production.
run: $(STAMP) catalogs
	rm -rf var/metrics
	PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/var/metrics $(BIN)/alerts dev --port $(PORT) --smtp-port $(SMTP_PORT)

test: $(STAMP) lint catalogs
	$(BIN)/pytest -n 2 -m "not topology"

catalogs: $(MO_FILES)

%.mo: %.po $(STAMP)
	$(BIN)/pybabel compile --statistics -i $< -o $@

# After changing a reader-facing string: extract it, then merge it into every catalog (the
# new entries are empty, and tests/test_i18n.py fails until each is translated).
translations: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k Text -k N_ --sort-output --no-location \
		--project "news alerts" --copyright-holder "news alerts" --msgid-bugs-address "" \
		-o alerts/translations/messages.pot .
	$(BIN)/pybabel update -i alerts/translations/messages.pot -d alerts/translations \
		--no-wrap --no-fuzzy-matching --ignore-obsolete

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy alerts worker

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) catalogs
	$(BIN)/python -m bench

# The delivery promise under faults, with 5,000 readers and the shipped timings: a table of
# readers, delivered, lost, duplicated and time to converge per fault.
faults: $(STAMP) catalogs
	ALERTS_FAULT_READERS=5000 ALERTS_FAULT_DEFAULT_TIMINGS=1 $(BIN)/pytest \
		-s -q --timeout 1800 tests/e2e/test_faults.py

# docker-compose.yml's production topology without Docker, on the PostgreSQL server at
# 127.0.0.1:5432 (ALERTS_TOPOLOGY_POSTGRES_URL): signup, alerts, a digest run across two
# sending nodes with one killed mid-run, one-click unsubscribe; prints its figures.
topology: $(STAMP) catalogs
	ALERTS_REQUIRE_POSTGRES=1 $(BIN)/pytest -s -q -m topology tests/e2e/test_topology.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache $(MO_FILES)
