"""The reader's pages on real screens: headless Chromium at a phone's width (390) and a
desktop's (1280). No sideways scroll, no serious or critical axe-core violation, focus that
shows; screenshots in var/screenshots/."""

from __future__ import annotations

import re

from browser import chromium, screenshot

import factories
from processes import Browser, Stack
from support import confirm_link_in, csrf_from

WIDTHS = (390, 1280)


def reader_pages(stack: Stack, browser: Browser) -> tuple[dict[str, str], dict[str, str]]:
    """Every page a reader meets, for one reader signed up and confirmed over HTTP."""
    _, form = browser.request("/")
    browser.request(
        "/subscribe",
        {
            "csrf_token": csrf_from(form),
            "email": "screens@example.org",
            "topics": ["wipo", "bilateral-regional-negotiations", "internet-governance"],
            "languages": ["en"],
            "frequency": "daily",
            "keywords": "TRIPS waiver",
        },
    )
    [confirmation] = stack.wait_for_mail(lambda m: "screens@example.org" in m.recipients)
    confirm = confirm_link_in(confirmation.body("plain"))
    browser.request(confirm)
    [welcome] = stack.wait_for_mail(lambda m: m.subject.startswith("Welcome"))
    manage = re.search(r"(/manage/\S+)", welcome.body("plain"))
    unsubscribe = re.search(r"(/unsubscribe/\S+)", welcome.body("plain"))
    assert manage and unsubscribe
    # An alert to an immediate reader, and the screens reader's daily digest, sent by hand.
    with stack.app.app_context():
        from alerts import db

        factories.subscriber(db.session(), ["wipo"], email="instant@example.org")
    story = factories.article_payload(topics=["WIPO"], title="WIPO Assembly opens: TRIPS waiver")
    browser.publish(story)
    [alert] = stack.wait_for_mail(lambda m: "instant@example.org" in m.recipients)
    status, _ = browser.request(
        "/api/v1/digests",
        json_body={"frequency": "daily"},
        headers={"Authorization": "Bearer dev-api-token"},
    )
    assert status in (200, 201, 202)
    [digest] = stack.wait_for_mail(
        lambda m: "screens@example.org" in m.recipients and "daily news alert" in m.subject
    )
    in_browser = re.search(r"(/digest/\S+)", digest.body("plain"))
    assert in_browser
    # The alert's reader is told of a correction in a short email of its own.
    note = "An earlier version gave the wrong date for the vote."
    browser.publish(
        {**story, "title": "WIPO Assembly opens: TRIPS waiver vote", "correction": note}
    )
    [correction] = stack.wait_for_mail(lambda m: m.subject.startswith("Correction"))
    return {
        "signup": "/",
        "digest-page": in_browser.group(1),
        "check-your-email": "/subscribe/check-your-email",
        "confirmed": confirm.removeprefix(stack.base_url),
        "preference-centre": manage.group(1),
        "unsubscribe": unsubscribe.group(1),
        "not-found": "/no-such-page",
        "signup-ar": "/?lang=ar",
    }, {
        "confirmation": confirmation.body("html"),
        "welcome": welcome.body("html"),
        "alert": alert.body("html"),
        "digest": digest.body("html"),
        "correction": correction.body("html"),
    }


def test_reader_pages_and_emails_fit_a_phone_and_pass_axe(stack: Stack, browser: Browser) -> None:
    from axe_playwright_python.sync_playwright import Axe

    pages, mails = reader_pages(stack, browser)
    axe = Axe()
    problems: list[str] = []
    checked: list[int] = []  # axe's passing rules per page: proof that it ran
    with chromium() as chrome:
        for width in WIDTHS:
            page = chrome.new_page(viewport={"width": width, "height": 900})
            for name, path in pages.items():
                page.goto(stack.base_url + path)
                if page.evaluate("document.documentElement.scrollWidth") > width:
                    problems.append(f"{name} at {width}: scrolls sideways")
                results = axe.run(page)
                checked.append(len(results.response["passes"]))
                for violation in results.response["violations"]:
                    if violation["impact"] in ("serious", "critical"):
                        problems.append(f"{name} at {width}: {violation['id']} {violation['help']}")
                page.screenshot(path=str(screenshot(f"{name}-{width}.png")), full_page=True)
            # The emails a reader reads on a phone: no sideways scroll either.
            for name, html in mails.items():
                page.set_content(html)
                if page.evaluate("document.documentElement.scrollWidth") > width:
                    problems.append(f"{name} email at {width}: scrolls sideways")
                page.screenshot(path=str(screenshot(f"email-{name}-{width}.png")), full_page=True)
            page.close()
    assert problems == []
    assert len(checked) == len(pages) * len(WIDTHS) and min(checked) > 10


def test_focus_shows_on_every_kind_of_control(stack: Stack, browser: Browser) -> None:
    pages, _ = reader_pages(stack, browser)
    with chromium() as chrome:
        page = chrome.new_page(viewport={"width": 390, "height": 900})
        page.goto(stack.base_url + pages["preference-centre"])
        # The skip link is the first stop and shows itself.
        page.keyboard.press("Tab")
        box = page.locator(".skip-link").bounding_box()
        assert box and box["x"] >= 0 and box["width"] > 20
        for selector in ("#keywords", "#keyword_frequency", "#timezone", "button[type=submit]"):
            page.focus(selector)
            outline = page.eval_on_selector(selector, "e => getComputedStyle(e).outlineStyle")
            assert outline not in ("none", ""), selector
        # A topic not followed shows no frequency; ticking it shows one.
        assert not page.is_visible("#frequency-patents")
        page.check("#topic-patents")
        assert page.is_visible("#frequency-patents")


ADMIN_PAGES = (
    "/admin/",
    "/admin/readers",
    "/admin/articles",
    "/admin/digests",
    "/admin/runs",
    "/admin/preview",
    "/admin/subscribers",
    "/admin/feeds",
)


def test_admin_pages_fit_a_phone_and_pass_axe(stack: Stack, browser: Browser) -> None:
    from axe_playwright_python.sync_playwright import Axe

    reader_pages(stack, browser)  # a reader, an article, a digest run to show
    axe = Axe()
    problems: list[str] = []
    with chromium() as chrome:
        for width in WIDTHS:
            page = chrome.new_page(viewport={"width": width, "height": 900})
            page.goto(stack.base_url + "/admin/login")
            page.fill("#password", "admin")
            page.click("button[type=submit]")
            reader_link = None
            for path in (*ADMIN_PAGES, "reader"):
                if path == "reader":
                    assert reader_link
                    path = reader_link
                page.goto(stack.base_url + path)
                if path == "/admin/readers":
                    reader_link = page.locator("td a").first.get_attribute("href")
                name = path.strip("/").replace("/", "-") or "admin"
                if page.evaluate("document.documentElement.scrollWidth") > width:
                    problems.append(f"{name} at {width}: scrolls sideways")
                for violation in axe.run(page).response["violations"]:
                    if violation["impact"] in ("serious", "critical"):
                        problems.append(f"{name} at {width}: {violation['id']} {violation['help']}")
                page.screenshot(path=str(screenshot(f"{name}-{width}.png")), full_page=True)
            page.close()
    assert problems == []
