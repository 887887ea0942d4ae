"""The `alerts` command group: db, topics, articles publish (progress and summary)."""

from __future__ import annotations

import json
from pathlib import Path

from flask.testing import FlaskCliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.cli import main
from alerts.mail.sink import MailSink
from alerts.models import Article

import factories


def test_topics_seed_is_repeatable(runner: FlaskCliRunner) -> None:
    result = runner.invoke(main, args=["topics", "seed"])
    assert result.exit_code == 0
    assert result.output.strip() == "topics and languages: 0 created, 0 updated"


def test_publish_a_file_of_articles(
    runner: FlaskCliRunner, session: Session, sink: MailSink, tmp_path: Path
) -> None:
    reader = factories.subscriber(session, ["wipo"])
    good = factories.article_payload(topics=["WIPO"], title="From a file")
    items = [good, factories.article_payload(url="javascript:x"), dict(good)]
    path = tmp_path / "articles.json"
    path.write_text(json.dumps(items))
    result = runner.invoke(main, args=["articles", "publish", str(path)])
    assert result.exit_code == 1  # one was rejected
    assert "Publishing" in result.output
    assert "article 2 rejected: url: must be an http:// or https:// address" in result.output
    assert "1 created, 1 updated, 1 rejected" in result.output
    assert session.scalar(select(func.count()).select_from(Article)) == 1
    assert [m.subject for m in sink.store.to(reader.email)] == ["From a file"]


def test_publish_from_stdin(runner: FlaskCliRunner, session: Session) -> None:
    result = runner.invoke(
        main, args=["articles", "publish", "-"], input=json.dumps(factories.article_payload())
    )
    assert result.exit_code == 0, result.output
    assert "1 created, 0 updated, 0 rejected" in result.output


def test_publish_refuses_a_file_that_is_not_json(runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(b"\xff\xfe not json")
    result = runner.invoke(main, args=["articles", "publish", str(path)])
    assert result.exit_code == 1
    assert "is not JSON" in result.output
