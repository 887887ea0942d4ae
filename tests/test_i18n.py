"""The site's five languages: complete catalogs, every reader page and email in each, safe
translations, CLDR plurals, locale dates, topic names, and Chinese and Arabic keywords."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from flask import render_template
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy.orm import Session

from alerts import i18n, matching, tokens
from alerts.digests import DigestContent, DigestItem
from alerts.mail import emails
from alerts.mail.sink import MailSink
from alerts.matching import Reason
from alerts.models import Frequency, Subscriber, SubscriberStatus, Topic

import factories
from support import catalog, csrf_from, translated

CATALOGS = Path(i18n.CATALOGS)
TRANSLATED = [code for code in i18n.LOCALES if code != i18n.DEFAULT]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def template() -> Catalog:
    with open(CATALOGS / "messages.pot", "rb") as pot_file:
        return read_po(pot_file)


def ids(message: Any) -> tuple[str, ...]:
    return message.id if isinstance(message.id, tuple) else (message.id,)


def strings(message: Any) -> tuple[str, ...]:
    return message.string if isinstance(message.string, tuple) else (message.string,)


# --- the catalogs -------------------------------------------------------------------------


def test_the_template_holds_every_message_of_the_sources(tmp_path: Path) -> None:
    """A string added to a page, an email or a message shows up here until `make
    translations` has extracted it (and the test below, until it is translated)."""
    import subprocess
    import sys

    root = CATALOGS.parent.parent
    fresh = tmp_path / "messages.pot"
    subprocess.run(
        [
            *(sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg"),
            *("-k", "Text", "-k", "N_", "--no-location", "-o", str(fresh), "."),
        ],
        cwd=root,
        check=True,
        capture_output=True,
    )
    with open(fresh, "rb") as pot_file:
        extracted = {ids(message) for message in read_po(pot_file) if message.id}
    committed = {ids(message) for message in template() if message.id}
    assert extracted - committed == set(), "run `make translations`"
    assert committed - extracted == set(), "run `make translations`"


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_message_is_translated_and_none_is_fuzzy(code: str) -> None:
    po = catalog(code)
    expected = {ids(message)[0] for message in template() if message.id}
    present = {ids(message)[0] for message in po if message.id}
    assert expected - present == set(), "run `make translations`: messages missing"
    problems = []
    for message in po:
        if not message.id:
            continue
        forms = strings(message)
        if message.fuzzy:
            problems.append(f"fuzzy: {ids(message)[0]!r}")
        if not all(forms):
            problems.append(f"untranslated: {ids(message)[0]!r}")
        if isinstance(message.id, tuple) and len(forms) != po.num_plurals:
            problems.append(f"{len(forms)} plural forms, not {po.num_plurals}: {message.id[0]!r}")
    assert problems == []


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_translation_keeps_its_placeholders_and_holds_no_markup(code: str) -> None:
    problems = []
    for message in catalog(code):
        if not message.id:
            continue
        wanted = set(PLACEHOLDER.findall(ids(message)[-1]))
        for form in strings(message):
            found = set(PLACEHOLDER.findall(form))
            # A plural form may leave the count out where its words say it ("أسبوعان": two
            # weeks), as CLDR's one and two forms often do; nothing else may be dropped.
            if isinstance(message.id, tuple):
                found |= {"count"} & wanted
            if found != wanted:
                problems.append((ids(message)[0], form))
            if "<" in form or ">" in form:
                problems.append((ids(message)[0], form))
    assert problems == []


def test_the_compiled_catalogs_are_the_sources(tmp_path: Path) -> None:
    """`make catalogs` ran: each .mo is there and says what its .po says."""
    for code in TRANSLATED:
        compiled = i18n.translations(code)
        for message in catalog(code):
            if message.id and not isinstance(message.id, tuple):
                assert compiled.ugettext(message.id) == message.string, (code, message.id)


def test_arabic_has_six_plural_forms_and_chinese_one() -> None:
    counts = (0, 1, 2, 3, 11, 100)

    def weeks(n: int) -> str:
        return i18n.ngettext("%(count)s week", "%(count)s weeks", n, count=n)

    # Arabic: CLDR's six categories (zero, one, two, few, many, other), each its own form.
    arabic = catalog("ar")
    assert arabic.num_plurals == 6
    forms = arabic[("%(count)s week", "%(count)s weeks")].string
    with i18n.using("ar"):
        for form, n in enumerate(counts):
            assert weeks(n) == forms[form] % {"count": n}, n
    with i18n.using("zh"):
        assert len({weeks(n).replace(str(n), "N") for n in counts}) == 1
    with i18n.using("en"):
        assert weeks(1) == "1 week" and weeks(3) == "3 weeks"
        assert i18n.ngettext("%(num)s week", "%(num)s weeks", 1200) == "1,200 weeks"


def test_dates_and_numbers_follow_the_locale() -> None:
    moment = datetime(2026, 11, 28, 16, 5, tzinfo=UTC)
    expected = {
        "en": "28 November 2026, 16:05 UTC",
        "fr": "28 novembre 2026, 16:05 UTC",
        "es": "28 de noviembre de 2026, 16:05 UTC",
        "zh": "2026年11月28日 16:05 UTC",
        "ar": "28 نوفمبر 2026، 16:05 UTC",
    }
    for code, text in expected.items():
        with i18n.using(code):
            assert i18n.long_datetime(moment) == text
    with i18n.using("fr"):
        assert i18n.format_number(12345) == "12\N{NARROW NO-BREAK SPACE}345"
        assert i18n.weekdays()[0] == "lundi"


def test_unknown_locales_fall_back_to_the_default() -> None:
    assert i18n.known("fr-CA") == "fr" and i18n.known("ZH_hant") == "zh"
    assert i18n.known("de") == "en" and i18n.known(None) == "en"
    with i18n.using("de"):
        assert i18n.current() == "en"


# --- pages ----------------------------------------------------------------------------------


def reader_links(app: Any, reader: Subscriber) -> dict[str, str]:
    secret = app.config["SECRET_KEY"]
    return {
        purpose.value: tokens.for_reader(secret, purpose, reader.id, reader.link_key)
        for purpose in (tokens.Purpose.MANAGE, tokens.Purpose.UNSUBSCRIBE)
    }


@pytest.mark.parametrize("code", i18n.LOCALES)
def test_every_reader_page_speaks_the_chosen_language(
    app: Any, client: FlaskClient, session: Session, code: str
) -> None:
    reader = factories.subscriber(session, ["wipo", "copyright"], locale=code)
    links = reader_links(app, reader)

    def say(message_id: str) -> str:
        """As the page writes it: translated, then escaped (l'article -> l&#39;article)."""
        return str(escape(message_id if code == "en" else translated(code, message_id)))

    pages = {
        f"/?lang={code}": "Sign up for free news alerts",
        "/subscribe/check-your-email": "Check your email",
        f"/manage/{links['manage']}": "Your news alerts",
        f"/unsubscribe/{links['unsubscribe']}": "Unsubscribe from news alerts",
        "/no-such-page": "Page not found",
        "/confirm/not-a-token": "This link is not valid",
    }
    for path, heading in pages.items():
        response = client.get(path)
        html = response.get_data(as_text=True)
        assert f'<html lang="{code}" dir="{i18n.direction(code)}">' in html, path
        assert f"<h1>{say(heading)}</h1>" in html, path
    # The reader's own topics, in their language, on the pages of their links.
    unsubscribe = client.get(f"/unsubscribe/{links['unsubscribe']}").get_data(as_text=True)
    names = {"en": "Copyright", "fr": "Droit d&#39;auteur", "zh": "版权", "ar": "حق المؤلف"}
    if code in names:
        assert names[code] in unsubscribe

    # The confirmation link's page, in the language chosen at signup.
    newcomer = factories.subscriber(session, ["wipo"], status=SubscriberStatus.PENDING, locale=code)
    newcomer.confirm_nonce = "n1"
    session.commit()
    token = emails.confirm_token(settings(app), newcomer.id, "n1", None)
    page = client.get(f"/confirm/{token}").get_data(as_text=True)
    assert f'<html lang="{code}"' in page and f"<h1>{say('You are signed up')}</h1>" in page

    # A digest's full list (the "and N more" page).
    with app.test_request_context(f"/?lang={code}"):
        app.preprocess_request()
        article = factories.article(session, topics=["wipo"])
        page = render_template("web/digest.html", articles=[article] * 3, run=None)
        with i18n.using(code):
            heading = i18n.ngettext(
                "Your news alert: %(count)s article",
                "Your news alert: %(count)s articles",
                3,
                count=i18n.format_number(3),
            )
        assert f'<html lang="{code}"' in page and f"<h1>{escape(heading)}</h1>" in page

    # Erasing, last: the reader is gone after it.
    manage = client.get(f"/manage/{links['manage']}").get_data(as_text=True)
    erased = client.post(
        f"/manage/{links['manage']}/erase", data={"csrf_token": csrf_from(manage), "confirm": "yes"}
    ).get_data(as_text=True)
    assert f"<h1>{say('Your data is erased')}</h1>" in erased


def test_the_language_is_remembered_and_english_is_the_default(client: FlaskClient) -> None:
    assert '<html lang="en" dir="ltr">' in client.get("/").get_data(as_text=True)
    page = client.get("/", headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"})
    assert '<html lang="es"' in page.get_data(as_text=True)
    switched = client.get("/?lang=ar")
    assert "lang=ar" in switched.headers["Set-Cookie"]
    # The switch sticks over the browser's own preference, link after link.
    page = client.get("/subscribe/check-your-email", headers={"Accept-Language": "fr"})
    assert '<html lang="ar" dir="rtl">' in page.get_data(as_text=True)
    # The switcher is plain links: no JavaScript needed, one per language, current marked.
    html = client.get("/").get_data(as_text=True)
    for code in i18n.LOCALES:
        assert f'hreflang="{code}"' in html
    assert 'aria-current="true">العربية</a>' in html


def test_the_admin_and_the_api_stay_in_english(client: FlaskClient) -> None:
    page = client.get("/admin/login?lang=fr", headers={"Accept-Language": "fr"})
    assert '<html lang="en"' in page.get_data(as_text=True)
    answer = client.get("/api/v1/nothing-here", headers={"Accept-Language": "fr"})
    assert answer.status_code == 404 and answer.json is not None


def test_form_errors_come_in_the_page_language(client: FlaskClient) -> None:
    form = client.get("/?lang=fr").get_data(as_text=True)
    response = client.post(
        "/subscribe",
        data={"csrf_token": csrf_from(form), "email": "not an address", "languages": ["fr"]},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and '<html lang="fr"' in html
    assert translated("fr", "Choose at least one topic, or type a keyword.") in html
    assert "Choose at least one topic" not in html


def test_signup_stores_the_language_and_the_preference_centre_changes_it(
    app: Any, client: FlaskClient, session: Session, sink: MailSink
) -> None:
    form = client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(as_text=True)
    # The form offers the browser's language for emails, and its articles' language too.
    assert '<option value="zh" lang="zh" selected>' in form
    assert 'value="zh" id="language-zh" checked' in form
    client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_from(form),
            "email": "duzhe@example.org",
            "topics": ["wipo"],
            "languages": ["zh", "en"],
            "frequency": "daily",
            "locale": "zh",
        },
    )
    reader = session.query(Subscriber).filter_by(email="duzhe@example.org").one()
    assert reader.locale == "zh"
    [confirmation] = sink.store.to("duzhe@example.org")
    assert confirmation.subject == translated("zh", "Confirm your %(site)s news alerts") % {
        "site": app.config["SITE_NAME"]
    }
    # An active reader moves to French in the preference centre: pages and emails follow.
    reader.status, reader.confirmed_at = SubscriberStatus.ACTIVE, datetime.now(UTC)
    session.commit()
    manage = f"/manage/{reader_links(app, reader)['manage']}"
    page = client.get(manage).get_data(as_text=True)
    assert '<html lang="zh"' in page
    response = client.post(
        manage,
        data={
            "csrf_token": csrf_from(page),
            "action": "save",
            "topics": ["wipo"],
            "frequency-wipo": "daily",
            "languages": ["zh", "en"],
            "timezone": "Asia/Shanghai",
            "send_hour": "8",
            "send_weekday": "0",
            "locale": "fr",
        },
        follow_redirects=True,
    )
    assert '<html lang="fr"' in response.get_data(as_text=True)
    session.refresh(reader)
    assert reader.locale == "fr"


# --- emails ---------------------------------------------------------------------------------


def settings(app: Any) -> emails.MailSettings:
    return emails.MailSettings.from_config(app.config)


@pytest.mark.parametrize("code", i18n.LOCALES)
def test_every_email_speaks_the_readers_language(app: Any, session: Session, code: str) -> None:
    reader = factories.subscriber(session, ["wipo"], locale=code)
    article = factories.article(
        session,
        topics=["wipo"],
        title="WIPO General Assembly opens",
        published_at=datetime(2026, 11, 28, 9, 30, tzinfo=UTC),
    )
    wipo = session.query(Topic).filter_by(slug="wipo").one()
    mail = settings(app)

    def say(message_id: str, **values: Any) -> str:
        text = message_id if code == "en" else translated(code, message_id)
        return text % values if values else text

    alert = emails.alert(mail, article, reader, Reason("topic", wipo.label, wipo.id))
    month = {"en": "November", "fr": "novembre", "es": "noviembre", "zh": "11月", "ar": "نوفمبر"}
    from email import message_from_bytes, policy

    parsed = message_from_bytes(alert, policy=policy.default)
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f'<html lang="{code}" dir="{i18n.direction(code)}">' in html
    assert str(escape(say("Read the article"))) in html and say("Read the article") in text
    assert month[code] in text
    with i18n.using(code):
        assert str(wipo.label) in text

    reader.status = SubscriberStatus.PENDING
    confirmation = emails.confirmation(mail, reader, "nonce", None)
    assert confirmation is not None
    parsed = message_from_bytes(confirmation, policy=policy.default)
    assert parsed["Subject"] == say("Confirm your %(site)s news alerts", site=mail.site_name)
    if not parsed["Subject"].isascii():
        # RFC 2047: the raw header is ASCII, encoded words.
        raw_subject = confirmation.split(b"\r\nSubject: ", 1)[1].split(b"\r\n")[0]
        assert raw_subject.startswith(b"=?utf-8?")

    reader.status = SubscriberStatus.ACTIVE
    content = DigestContent(
        reader,
        Frequency.DAILY,
        [(wipo.label, [DigestItem(article, Reason("topic", wipo.label, wipo.id))] * 3)],
        article_ids=[article.id] * 3,
    )
    digest = emails.DigestRenderer(mail).render(content, run_id=None)
    with i18n.using(code):
        expected = i18n.ngettext(
            "Your daily news alert: %(count)s new article",
            "Your daily news alert: %(count)s new articles",
            3,
            count=3,
        )
    assert digest.subject == f"{mail.site_name} · {expected}"
    assert f'dir="{i18n.direction(code)}"' in digest.html


def test_a_hostile_translation_or_value_cannot_inject_markup(
    app: Any, session: Session, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hostile = Catalog(locale="fr")
    hostile.add("Read the article", "<script>alert(1)</script>")
    hostile.add(
        "You get this because you follow %(topic)s on %(site)s news alerts.",
        '<img src=x onerror="alert(2)"> %(topic)s %(site)s',
    )
    compiled = tmp_path / "hostile.mo"
    with open(compiled, "wb") as mo_file:
        write_mo(mo_file, hostile)
    with open(compiled, "rb") as mo_file:
        loaded = Translations(mo_file)
    monkeypatch.setattr(i18n, "translations", lambda code: loaded)
    # A renderer of its own: the process's has compiled the real catalogs' text in.
    from alerts.mail import render

    monkeypatch.setattr(render, "_renderer", None)

    reader = factories.subscriber(session, ["wipo"], locale="fr")
    article = factories.article(session, topics=["wipo"], title="<b>Bold</b> & title")
    topic: Any = i18n.Localized("WIPO", {"fr": "<svg onload=alert(3)>"})
    raw = emails.alert(settings(app), article, reader, Reason("topic", topic, 1))
    from email import message_from_bytes, policy

    html = message_from_bytes(raw, policy=policy.default).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=x" in html
    assert "<svg" not in html and "&lt;svg onload=alert(3)&gt;" in html
    # The markup the template itself puts around the topic survives.
    assert '<strong dir="auto">&lt;svg' in html


# --- topic names and keywords ----------------------------------------------------------------


def test_every_topic_has_its_name_in_every_language(session: Session) -> None:
    for topic in session.query(Topic):
        assert set((topic.names or {}).keys()) == set(TRANSLATED), topic.slug
        assert all(topic.names.values())  # type: ignore[union-attr]
    copyright_ = session.query(Topic).filter_by(slug="copyright").one()
    with i18n.using("es"):
        assert str(copyright_.label) == "Derecho de autor"
    assert copyright_.label == "Copyright"  # as a str: the English name, for logs and the API


@pytest.mark.parametrize(
    ("phrase", "text", "found"),
    [
        # Chinese: no spaces, so a keyword is found wherever its characters follow each other.
        ("知识产权", "世界知识产权组织发布年度报告", True),
        ("知识产权", "知识共享与产权", False),
        ("世卫组织", "世卫组织大会讨论大流行协定", True),
        ("WIPO", "WIPO总干事发表讲话", True),
        # Arabic: diacritics (tashkeel), alef forms, tatweel and alef maqsura do not matter.
        ("الملكية الفكرية", "مؤتمر الْمِلْكِيَّةِ الْفِكْرِيَّةِ في جنيف", True),
        ("أمام", "امام المحكمة", True),
        ("إتفاقية", "الاتفاقية الجديدة", False),
        ("اتفاقية", "إتفاقية تريبس", True),
        ("مصطفى", "مصطفي يتحدث", True),
        ("الصحة", "الصـــحة العالمية", True),
        ("الصحة", "الصحي", False),
    ],
)
def test_chinese_and_arabic_keywords(phrase: str, text: str, found: bool) -> None:
    article: Any = type("A", (), {"title": text, "summary_text": ""})()
    assert matching.ArticleWords.of(article).contains(matching.words(phrase)) is found


def test_a_chinese_keyword_brings_chinese_articles(session: Session) -> None:
    reader = factories.subscriber(session, ["patents"], languages=("zh",))
    from alerts import subscriptions

    subscriptions.add_keywords(session, reader, ["知识产权"], Frequency.IMMEDIATE)
    session.commit()
    chinese = factories.article(
        session, topics=["wipo"], title="世界知识产权组织成员国通过新条约", language="zh"
    )
    other = factories.article(session, topics=["wipo"], title="世界卫生组织", language="zh")
    assert matching.matching_subscribers(session, chinese) == [reader.id]
    assert matching.matching_subscribers(session, other) == []


def test_arabic_and_chinese_subjects_and_display_names_are_encoded_words() -> None:
    from email import message_from_bytes, policy

    from alerts.mail import message
    from alerts.mail.render import RenderedEmail

    for name, subject in (("تنبيهات الأخبار", "أكِّد تنبيهاتك"), ("新闻提醒", "确认您的新闻提醒")):
        raw = message.build(
            RenderedEmail(subject=subject, text="t", html="h"),
            sender=f"{name} <alerts@news.test>",
            recipient="r@example.org",
        )
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert head.isascii() and b"=?utf-8?" in head
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Subject"] == subject
        assert parsed["From"].addresses[0].display_name == name  # type: ignore[union-attr]


def test_a_language_the_site_does_not_speak_is_refused(
    client: FlaskClient, session: Session
) -> None:
    form = client.get("/").get_data(as_text=True)
    response = client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_from(form),
            "email": "reader@example.org",
            "topics": ["wipo"],
            "languages": ["en"],
            "frequency": "daily",
            "locale": "de",
        },
    )
    assert response.status_code == 400
    assert "Choose the language of our emails from the list." in response.get_data(as_text=True)
    assert session.query(Subscriber).count() == 0


def test_an_address_error_is_whole_in_every_language(client: FlaskClient) -> None:
    """email-validator explains in English only: English readers get its reason, the others a
    sentence wholly in their language."""
    for code, expected in (
        ("en", "Enter a valid email address: An email address must have an @-sign."),
        ("fr", translated("fr", "Enter a valid email address, like name@example.org.")),
    ):
        form = client.get(f"/?lang={code}").get_data(as_text=True)
        html = client.post(
            "/subscribe", data={"csrf_token": csrf_from(form), "email": "no-at-sign"}
        ).get_data(as_text=True)
        assert str(escape(expected)) in html, code
        if code != "en":
            assert "@-sign" not in html
