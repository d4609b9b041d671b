"""The studio's first minutes as a new user lives them, in Chromium: a photo folder pooled into class folders (every
split of a shared folder together), `transferlab studio`, "Check the folder", then "Check the labels too"; the page
must show the label check's lists with their photos; then one move (a photo's own "move to" button) and one undo.
Prints each step's time and what the page showed; writes docs/images/studio-findings.png.

    python benchmarks/studio_label_check.py ../shared/datasets/flowers5
"""

from __future__ import annotations

import argparse
import faulthandler
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import expect, sync_playwright

from transferlab.studio.app import create_studio

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update"]  # fmt: skip


def pooled(data: Path, into: Path) -> Path:
    """Every photo of `data` (train/ and val/) in one folder per class, as the issue's commands make it."""
    for split in sorted(p for p in data.iterdir() if p.is_dir()):
        for cls in sorted(p for p in split.iterdir() if p.is_dir()):
            (into / cls.name).mkdir(parents=True, exist_ok=True)
            for photo in cls.iterdir():
                shutil.copy(photo, into / cls.name / photo.name)
    return into


def main() -> None:
    faulthandler.dump_traceback_later(900, exit=True)  # stuck for 15 minutes: every thread's stack, then stop
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--shot", type=Path, default=REPO / "docs" / "images" / "studio-findings.png")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    photos = pooled(args.data, work / "photos")
    print(f"{sum(1 for _ in photos.rglob('*.*'))} photos in {len(list(photos.iterdir()))} class folders")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_studio(photos, work / "runs", port=port)
    statuses: list[int] = []

    @app.middleware("http")
    async def record(request, call_next):
        response = await call_next(request)
        statuses.append(response.status_code)
        return response

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{port}/")
        start = time.monotonic()
        page.click("#check")
        expect(page.locator("#findings .finding, #findings p").first).to_be_visible(timeout=600_000)
        page.wait_for_timeout(1500)
        expect(page.locator("#check-status")).not_to_contain_text("checking", timeout=600_000)
        kinds = page.locator("#findings .finding").evaluate_all("els => els.map(e => e.dataset.kind)")
        print(f"Check the folder: {time.monotonic() - start:.1f} s; findings: {kinds}")
        start = time.monotonic()
        page.click("#check-labels")
        expect(page.locator("#findings h3")).to_be_visible(timeout=1_200_000)
        expect(page.locator("#check-status")).not_to_contain_text("checking", timeout=600_000)
        head = page.locator("#findings h3").inner_text()
        lists = page.locator("#findings .finding[data-kind=label], #findings .finding[data-kind=ambiguous], "
                             "#findings .finding[data-kind=outlier]").evaluate_all(
            "els => els.map(e => [e.dataset.kind, e.querySelectorAll('.thumb').length])")  # fmt: skip
        print(f"Check the labels too: {time.monotonic() - start:.1f} s; '{head}'; lists (kind, photos shown): {lists}")
        page.locator("#findings h3").scroll_into_view_if_needed()
        page.mouse.wheel(0, -120)  # the heading with a little of the doctor's findings above it
        page.wait_for_timeout(300)
        page.screenshot(path=str(args.shot), full_page=False)
        card = page.locator("#findings .finding[data-kind=label] .thumb").first
        path = card.get_attribute("data-path")
        button = card.locator("button", has_text="move to")
        to = button.inner_text().removeprefix("move to ")
        button.click()
        expect(page.locator("#journal li").first).to_contain_text(f"move: photos/{to}/")
        moved, gone = (photos / to / Path(path).name).exists(), not (photos / path).exists()
        print(f"moved {path} to {to}: {moved} (source gone: {gone})")
        page.locator("#journal li button", has_text="undo").first.click()
        expect(page.locator("#journal li").first).to_contain_text("undo:")
        print(f"undone: {path} back: {(photos / path).exists()}")
        browser.close()
    server.should_exit = True
    print(f"page errors: {errors or 'none'}; answers: {sorted(set(statuses))} (500s: {statuses.count(500)})")
    print(f"screenshot: {args.shot}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
