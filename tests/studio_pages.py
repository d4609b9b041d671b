"""What the browser tests share: Debian's Chromium and its flags, a page served on a free port (every answer's
status recorded, none may be a 500), and starting a short training from the studio's Train view."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app, port: int) -> Iterator[list[tuple[int, str]]]:
    """`app` on 127.0.0.1:port until the block ends; yields the (status, path) of every answer, and fails if the
    server did not start or stop, or answered 500."""
    import uvicorn

    from transferlab.inference.web import SHUTDOWN_SECONDS

    statuses: list[tuple[int, str]] = []

    async def recorded(scope, receive, send):  # the app as served, every answer's status noted on its way out
        async def noting(message):
            if message["type"] == "http.response.start":
                statuses.append((message["status"], scope.get("path", "")))
            await send(message)

        await app(scope, receive, noting)

    config = uvicorn.Config(
        recorded, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_SECONDS
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the page did not start"
    try:
        yield statuses
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        studio = getattr(app.state, "studio", None)
        if studio is not None:
            studio.close()  # its threads' work ended: none left running under the next test
    assert not thread.is_alive(), "the page did not stop"
    assert not [s for s in statuses if s[0] >= 500], statuses


def start_training(page, expect) -> str:
    """Start a one-epoch extract comparison from the Train view; returns its folder's name once it runs."""
    page.click("#tabs button[data-view=train]")
    page.check("input[name=mode][value=compare]")
    page.uncheck("input[name=strategy][value=finetune]")
    page.fill("#epochs", "1")
    page.click("#train-start")
    expect(page.locator("#train-status")).to_contain_text("running", timeout=20_000)
    return page.locator("#train-status").inner_text().split(": ")[1].split(" ")[0]
