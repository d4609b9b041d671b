"""Fetching one URL within limits: a timeout on every network wait and a deadline for the whole download, a size
cap (from Content-Length, and counted while reading), at most `redirects` redirects and only to http(s), and the
address sent as a browser sends it. `FetchFailed` says why a fetch failed and whether a retry may help; `STOP` makes
every fetch in flight give up at its next read (set when a collect is interrupted).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException

from transferlab.errors import above, at_least

USER_AGENT = "transferlab-collect/0.1 (+photo dataset builder)"
STOP = threading.Event()  # set when a collect is interrupted: downloads in flight give up at their next read


@dataclass(kw_only=True, frozen=True)
class Limits:
    concurrency: int = 8  # downloads at once
    timeout: float = 15.0  # seconds any one network wait may take
    deadline: float = 60.0  # seconds one download may take in all (a server trickling bytes is cut off)
    retries: int = 3  # further tries after a failure that may pass
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    max_bytes: int = 20_000_000
    redirects: int = 5

    def __post_init__(self) -> None:
        at_least("concurrency", self.concurrency, 1)
        at_least("retries", self.retries, 0)
        at_least("redirects", self.redirects, 0)
        for name in ("timeout", "deadline", "max_bytes"):
            above(name, getattr(self, name), 0)


class FetchFailed(Exception):
    def __init__(self, reason: str, retry: bool = False):
        super().__init__(reason)
        self.retry = retry


def fetch(url: str, limits: Limits) -> bytes:
    """The body of `url`, within the limits; FetchFailed says why not and whether a retry may help."""
    if not url.lower().startswith(("http://", "https://")):
        raise FetchFailed("not an http(s) URL")
    url = encode_url(url)
    opener = urllib.request.build_opener(_redirects(limits.redirects))
    start = time.monotonic()
    try:
        with opener.open(
            urllib.request.Request(url, headers={"User-Agent": USER_AGENT}), timeout=limits.timeout
        ) as response:
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > limits.max_bytes:
                raise FetchFailed(f"too large ({declared} bytes, the cap is {limits.max_bytes})")
            chunks, size = [], 0
            while chunk := response.read(65536):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise FetchFailed(f"too large (over {limits.max_bytes} bytes)")
                if STOP.is_set():
                    raise FetchFailed("interrupted")
                if time.monotonic() - start > limits.deadline:
                    raise FetchFailed(f"too slow (not finished in {limits.deadline:.0f} s)", retry=True)
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:
            raise FetchFailed(f"redirect loop or more than {limits.redirects} redirects") from None
        raise FetchFailed(f"HTTP {error.code} {error.reason}", retry=error.code == 429 or error.code >= 500) from None
    except urllib.error.URLError as error:
        raise FetchFailed(f"cannot connect: {error.reason}", retry=True) from None
    except (TimeoutError, ConnectionError, HTTPException, OSError) as error:
        reason = "truncated (connection closed early)" if isinstance(error, HTTPException) else f"{error}"
        raise FetchFailed(reason or type(error).__name__, retry=True) from None


def encode_url(url: str) -> str:
    """`url` as a browser sends it: a non-ASCII host name in IDNA (punycode), spaces and non-ASCII in the path and
    query percent-encoded (what is encoded already is kept)."""
    parts = urllib.parse.urlsplit(url)
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
        port = parts.port
    except (UnicodeError, ValueError) as error:
        raise FetchFailed(f"not a valid address ({error})") from None
    host = f"[{host}]" if ":" in host else host  # IPv6
    user = parts.netloc.rpartition("@")[0]
    netloc = (f"{user}@" if user else "") + host + (f":{port}" if port else "")
    safe = ":/?#[]@!$&'()*+,;=%~"
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, urllib.parse.quote(parts.path, safe), urllib.parse.quote(parts.query, safe), "")
    )


def _redirects(limit: int) -> urllib.request.HTTPRedirectHandler:
    class Limited(urllib.request.HTTPRedirectHandler):
        max_redirections = limit
        max_repeats = 1  # the same URL twice in one chain is a loop

        def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001 - urllib's signature
            scheme = urllib.parse.urlsplit(headers.get("Location") or headers.get("URI") or "").scheme.lower()
            if scheme not in ("", "http", "https"):
                raise FetchFailed(f"redirected to a non-http address ({scheme}:)")
            return super().http_error_302(req, fp, code, msg, headers)

        http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    return Limited()
