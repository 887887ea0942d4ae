"""A corpus of feeds as servers send them: RSS 0.91, 0.92, 1.0 and 2.0, Atom 0.3 and 1.0, each
with its text encoded in several ways (charset in the header only, in the XML declaration
only, both agreeing, both disagreeing, neither), with entities, relative links and odd dates;
and documents that are no feed at all. Each case says what a reader should find, or that the
feed is unreadable."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape

TITLES = {
    "windows-1251": "Всемирная организация интеллектуальной собственности",
    "shift_jis": "知的財産の新しい条約",
    "iso-8859-1": "Propriété intellectuelle à Genève",
    "utf-8": "Français — 中文 — العربية",
}


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    content_type: str
    title: str | None  # what the stored article's title must be; None: not checked
    readable: bool = True
    link: str | None = None  # the stored article's link, when it must be exact ("{base}")


def _document(kind: str, title: str, link: str, guid: str, date: str, extra: str = "") -> str:
    title_xml = escape(title)
    if kind in ("rss091", "rss092"):
        version = "0.91" if kind == "rss091" else "0.92"
        category = "<category>WIPO</category>" if kind == "rss092" else ""
        return (
            f'<rss version="{version}"><channel><title>Corpus</title>'
            "<link>https://news.example.org/</link><description>d</description>"
            f"<language>en</language><item><title>{title_xml}</title><link>{link}</link>"
            f"<description>Summary {extra}</description>{category}</item></channel></rss>"
        )
    if kind == "rss10":
        return (
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            '<channel rdf:about="https://news.example.org/"><title>Corpus</title>'
            "<link>https://news.example.org/</link><description>d</description></channel>"
            f'<item rdf:about="{guid}"><title>{title_xml}</title><link>{link}</link>'
            f"<description>Summary {extra}</description><dc:date>{date}</dc:date>"
            "<dc:subject>WIPO</dc:subject></item></rdf:RDF>"
        )
    if kind == "rss20":
        return (
            '<rss version="2.0"><channel><title>Corpus</title>'
            "<link>https://news.example.org/</link><description>d</description>"
            f"<item><title>{title_xml}</title><link>{link}</link>"
            f'<guid isPermaLink="false">{guid}</guid><pubDate>{date}</pubDate>'
            f"<category>WIPO</category><description>Summary {extra}</description>"
            "</item></channel></rss>"
        )
    if kind == "atom03":
        return (
            '<feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>Corpus</title>'
            '<link rel="alternate" type="text/html" href="https://news.example.org/"/>'
            f"<modified>2026-11-27T10:00:00Z</modified><entry><title>{title_xml}</title>"
            f'<link rel="alternate" type="text/html" href="{link}"/><id>{guid}</id>'
            f"<issued>{date}</issued><modified>{date}</modified>"
            f"<summary>Summary {extra}</summary></entry></feed>"
        )
    assert kind == "atom10"
    return (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>Corpus</title>'
        "<id>tag:news.example.org,2026:feed</id><updated>2026-11-27T10:00:00Z</updated>"
        f'<link href="https://news.example.org/"/><entry><title>{title_xml}</title>'
        f'<link href="{link}"/><id>{guid}</id><updated>{date}</updated>'
        f'<category term="WIPO"/><category term="Fran&#231;ais"/>'
        f"<summary>Summary {extra}</summary></entry></feed>"
    )


KINDS = ("rss091", "rss092", "rss10", "rss20", "atom03", "atom10")
MEDIA = {
    "rss091": "application/rss+xml",
    "rss092": "application/rss+xml",
    "rss10": "application/rdf+xml",
    "rss20": "application/rss+xml",
    "atom03": "application/atom+xml",
    "atom10": "application/atom+xml",
}
DATES = {
    "rss": ("Thu, 27 Nov 2026 10:00:00 GMT", "27 Nov 2026 10:00 +0100", "not a date at all"),
    "iso": ("2026-11-27T10:00:00Z", "2026-11-27T11:00:00+01:00", "not a date at all"),
}


def cases() -> Iterator[Case]:
    number = 0
    for kind in KINDS:
        dates = DATES["rss" if kind in ("rss091", "rss092", "rss20") else "iso"]
        media = MEDIA[kind]
        for charset, title in TITLES.items():
            for variant, date in enumerate(dates):
                for where in ("header", "declaration", "both"):
                    number += 1
                    text = _document(
                        kind,
                        title,
                        f"https://news.example.org/2026/11/{number}/",
                        f"tag:news.example.org,2026:{number}",
                        date,
                        "&amp; caf&#233; &#x4E2D;" if variant == 1 else "",
                    )
                    declared = f'<?xml version="1.0" encoding="{charset}"?>\n'.encode("ascii")
                    body = text.encode(charset)
                    yield Case(
                        f"{number}-{kind}-{charset}-{where}",
                        body if where == "header" else declared + body,
                        media if where == "declaration" else f"{media}; charset={charset}",
                        title,
                    )
        # Neither header nor declaration: UTF-8, the XML default.
        number += 1
        text = _document(kind, TITLES["utf-8"], f"https://news.example.org/n/{number}/",
                         f"tag:news.example.org,2026:{number}", dates[0])  # fmt: skip
        yield Case(f"{number}-{kind}-utf8-neither", text.encode("utf-8"), media, TITLES["utf-8"])
        # Header and declaration disagree: read or refused, but never a crash or mojibake
        # stored as if it were right (the title is not checked).
        number += 1
        text = _document(kind, TITLES["iso-8859-1"], f"https://news.example.org/c/{number}/",
                         f"tag:news.example.org,2026:{number}", dates[0])  # fmt: skip
        yield Case(
            f"{number}-{kind}-conflict",
            b'<?xml version="1.0" encoding="iso-8859-1"?>\n' + text.encode("iso-8859-1"),
            f"{media}; charset=utf-8",
            None,
        )
        # A relative link resolves against the feed's own address.
        number += 1
        text = _document(kind, "Relative link", f"/2026/11/relative-{number}/",
                         f"tag:news.example.org,2026:{number}", dates[0])  # fmt: skip
        yield Case(
            f"{number}-{kind}-relative",
            text.encode("utf-8"),
            f"{media}; charset=utf-8",
            "Relative link",
            link=f"{{base}}/2026/11/relative-{number}/",
        )
    unreadable = {
        "html-page": (b"<!DOCTYPE html><html><body><p>Not a feed</p></body></html>", "text/html"),
        "empty-body": (b"", "application/rss+xml"),
        "json": (b'{"items": [{"title": "x"}]}', "application/json"),
        "binary": (bytes(range(256)) * 4, "application/octet-stream"),
        "truncated": (b'<?xml version="1.0"?><rss version="2.0"><channel><title>T', "text/xml"),
        "plain-text": (b"just some words, no markup", "text/plain"),
    }
    for name, (body, content_type) in unreadable.items():
        yield Case(f"unreadable-{name}", body, content_type, None, readable=False)
