"""Subscribers as CSV: export streams every one; import takes the same columns, row by row.

Columns: email, status, topics, languages, timezone, send_hour, created_at, confirmed_at.
`topics` is "slug:frequency" pairs separated by ";" (frequency per topic), `languages`
codes separated by ";". Import reads email, topics, languages and, when present, timezone and
send_hour; it treats each row as consented (source "import", recorded with who imported).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from alerts import digests
from alerts.clock import now, timezones
from alerts.errors import AlertsError, InvalidInput
from alerts.models import (
    Frequency,
    Language,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Subscription,
    Topic,
)
from alerts.subscriptions import Consent, find_by_email, form_int, normalize_email, record

COLUMNS = [
    "email",
    "status",
    "topics",
    "languages",
    "timezone",
    "send_hour",
    "created_at",
    "confirmed_at",
]
PAGE = 1000


IMPORTED = Consent(form_version="import", source="import")


class RowError(AlertsError):
    """One row of an import that cannot be taken; the message says why, for its line."""


def export_rows(session: Session) -> Iterator[str]:
    """The CSV text, a line at a time, a page of subscribers per query (never all in memory)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(COLUMNS)
    yield flush()
    after = 0
    while True:
        page = session.scalars(
            select(Subscriber)
            .where(Subscriber.id > after)
            .order_by(Subscriber.id)
            .limit(PAGE)
            .options(
                selectinload(Subscriber.subscriptions).selectinload(Subscription.topic),
                selectinload(Subscriber.languages),
            )
        ).all()
        if not page:
            return
        for reader in page:
            writer.writerow(
                [
                    _safe(reader.email),
                    reader.status.value,
                    ";".join(
                        f"{s.topic.slug}:{s.frequency.value}"
                        for s in sorted(reader.subscriptions, key=lambda s: s.topic.slug)
                    ),
                    ";".join(reader.language_codes),
                    reader.timezone,
                    reader.send_hour,
                    reader.created_at.isoformat(),
                    reader.confirmed_at.isoformat() if reader.confirmed_at else "",
                ]
            )
        yield flush()
        after = page[-1].id
        session.expunge_all()


def _safe(value: str) -> str:
    """No spreadsheet formula injection from a cell (=, +, -, @ at the start)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


@dataclass
class ImportReport:
    imported: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why): already known
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line, why)

    @property
    def summary(self) -> str:
        return (
            f"{self.imported} imported, {len(self.skipped)} already known, "
            f"{len(self.invalid)} invalid"
        )


def count_rows(text: str) -> int:
    try:
        return max(sum(1 for _ in csv.reader(io.StringIO(text, newline=""))) - 1, 0)
    except csv.Error:
        return 0


def import_rows(
    session: Session, text: str, imported_by: str, progress: Iterable[None] | None = None
) -> ImportReport:
    """Import valid rows (each whole or not at all, in its own savepoint); report the others
    with their line number and reason. Commits as it goes."""
    report = ImportReport()
    # newline="": the csv module then reads CR-only (old Mac) line endings too.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = set(reader.fieldnames or [])
    except csv.Error as error:  # a header cell past csv's field size limit, say
        report.invalid.append((1, f"unreadable CSV header: {error}"))
        return report
    missing = {"email", "topics", "languages"} - columns
    if missing:
        report.invalid.append((1, "missing column(s): " + ", ".join(sorted(missing))))
        return report
    topics = dict(session.execute(select(Topic.slug, Topic.id)).all())
    languages = set(session.scalars(select(Language.code)))
    ticks = iter(progress) if progress is not None else None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            # The file cannot be read past here: report it; the rows before stay imported.
            report.invalid.append((reader.line_num, f"unreadable CSV from here on: {error}"))
            break
        line = reader.line_num
        if ticks is not None:
            next(ticks, None)
        try:
            values = _parse_row(row, topics, languages)
        except RowError as error:
            report.invalid.append((line, str(error)))
            continue
        email, wanted, codes, timezone, send_hour = values
        if find_by_email(session, email) is not None:
            report.skipped.append((line, f"{email} is already a subscriber"))
            continue
        try:
            with session.begin_nested():
                _add(session, email, wanted, codes, timezone, send_hour, topics, imported_by)
        except IntegrityError:
            report.skipped.append((line, f"{email} is already a subscriber"))
            continue
        session.commit()
        report.imported += 1
    return report


def _parse_row(
    row: dict[str, str | None], topics: dict[str, int], languages: set[str]
) -> tuple[str, dict[str, Frequency], list[str], str, int]:
    if None in row:
        raise RowError("more cells than columns")
    raw_email = (row.get("email") or "").strip()
    if raw_email[:1] == "'" and raw_email[1:2] in ("=", "+", "-", "@"):
        raw_email = raw_email[1:]  # the export's guard against spreadsheet formulas
    try:
        email = normalize_email(raw_email)
    except InvalidInput as invalid:
        raise RowError(invalid.errors["email"]) from invalid
    wanted: dict[str, Frequency] = {}
    for pair in filter(None, (part.strip() for part in (row.get("topics") or "").split(";"))):
        slug, _, frequency = pair.partition(":")
        if slug not in topics:
            raise RowError(f"unknown topic {slug!r}")
        try:
            wanted[slug] = Frequency(frequency or "immediate")
        except ValueError:  # not a Frequency
            raise RowError(f"unknown frequency {frequency!r} for {slug}") from None
    if not wanted:
        raise RowError("no topic")
    codes = [code.strip() for code in (row.get("languages") or "").split(";") if code.strip()]
    if not codes:
        raise RowError("no language")
    unknown = [code for code in codes if code not in languages]
    if unknown:
        raise RowError(f"unknown language {unknown[0]!r}")
    timezone = (row.get("timezone") or "UTC").strip()
    if timezone not in timezones():
        raise RowError(f"unknown time zone {timezone!r}")
    hour_text = (row.get("send_hour") or "8").strip()
    if not 0 <= form_int(hour_text) <= 23:
        raise RowError(f"send_hour must be 0 to 23, not {hour_text!r}")
    return email, wanted, list(dict.fromkeys(codes)), timezone, form_int(hour_text)


def _add(
    session: Session,
    email: str,
    wanted: dict[str, Frequency],
    codes: list[str],
    timezone: str,
    send_hour: int,
    topics: dict[str, int],
    imported_by: str,
) -> None:
    current = now()
    reader = Subscriber(
        email=email,
        status=SubscriberStatus.ACTIVE,
        timezone=timezone,
        send_hour=send_hour,
        confirmed_at=current,
    )
    session.add(reader)
    session.flush()
    for slug, frequency in wanted.items():
        session.add(
            Subscription(subscriber_id=reader.id, topic_id=topics[slug], frequency=frequency)
        )
    for code in codes:
        session.add(SubscriberLanguage(subscriber_id=reader.id, language_code=code))
    record(session, reader, "import", IMPORTED, recorded_by=imported_by)
    digests.sync_schedules(session, reader)
