"""A local HTTP server serving feeds the way a WordPress news site does, for the feed tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes
    etag: str = '"v1"'
    status: int = 200
    content_type: str = "application/rss+xml; charset=UTF-8"
    delay: float = 0.0
    location: str | None = None  # a redirect (status 302) to this address
    drip: float = 0.0  # send the body a byte at a time, this many seconds apart


@dataclass
class FeedServer:
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, If-None-Match)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def allow(self) -> str:
        """The ALERTS_FEED_ALLOW entry for this server (only its port on the loopback)."""
        return f"127.0.0.1:{self.port}"


@contextmanager
def serving() -> Iterator[FeedServer]:
    server_state = FeedServer(0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            condition = self.headers.get("If-None-Match")
            server_state.requests.append((self.path, condition))
            route = server_state.routes.get(self.path)
            if route is None:
                self.send_error(404, "Not Found")
                return
            if route.delay:
                time.sleep(route.delay)
            if route.location is not None:
                self.send_response(302)
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if route.status != 200:
                self.send_error(route.status)
                return
            if condition and condition == route.etag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", route.content_type)
            self.send_header("ETag", route.etag)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if not route.drip:
                self.wfile.write(route.body)
                return
            for byte in route.body:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return  # the reader gave up
                time.sleep(route.drip)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()


def wordpress_item(
    number: int,
    title: str,
    categories: list[str],
    published: str = "Wed, 05 Nov 2014 18:00:00 +0000",
    summary: str = "The much belaboured takeover of the internet did not take place.",
) -> str:
    cats = "".join(f"<category><![CDATA[{name}]]></category>" for name in categories)
    return f"""<item>
<title>{title}</title>
<link>https://news.example.org/2014/11/05/story-{number}/</link>
<comments>https://news.example.org/2014/11/05/story-{number}/#comments</comments>
<dc:creator><![CDATA[Monika Ermert]]></dc:creator>
<pubDate>{published}</pubDate>
{cats}
<guid isPermaLink="false">https://news.example.org/?p={number}</guid>
<description><![CDATA[<p>{summary}</p>]]></description>
<content:encoded><![CDATA[<p>{summary}</p><p>Full text of story {number}.</p>]]></content:encoded>
</item>"""


def wordpress_rss(*items: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">
<channel>
<title>Intellectual Property Watch</title>
<link>https://news.example.org</link>
<description>Original news and analysis on international IP policy</description>
<language>en-US</language>
{"".join(items)}
</channel>
</rss>""".encode()


def atom_feed(entries: list[tuple[str, str, list[str], str]]) -> bytes:
    """(id, title, categories, updated) per entry."""
    body = "".join(
        f"""<entry><id>{entry_id}</id><title>{title}</title>
<link href="https://news.example.org/atom/{index}"/>
<author><name>Catherine Saez</name></author><updated>{updated}</updated>
{"".join(f'<category term="{term}"/>' for term in terms)}
<content type="html">&lt;p&gt;Atom content {index}&lt;/p&gt;</content></entry>"""
        for index, (entry_id, title, terms, updated) in enumerate(entries)
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Health Policy Watch</title>
<id>urn:example:hpw</id><updated>2026-11-28T00:00:00Z</updated>{body}</feed>""".encode()
