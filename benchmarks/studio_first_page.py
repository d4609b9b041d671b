"""How soon does the studio show a big folder? A synthetic folder of N photos (default 10,000, phone-like 1024x768
JPEGs in 4 classes) is made once, the doctor's cache is warmed (`diagnose`), then the studio is served and a real
browser (Debian's Chromium) opens it: the time from asking for the page to the first page of thumbnails (60) all
shown, with the thumbnail cache empty (the worst case) and then warm.

    python benchmarks/studio_first_page.py [--photos 10000] [--folder /tmp/studio-10k]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CLASSES = ("daisy", "rose", "tulip", "sunflower")


def make_folder(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for n in range(count):
        folder = root / CLASSES[n % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"photo{n:05d}.jpg"
        if path.exists():
            continue
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB").resize((1024, 768))
        coarse.save(path, quality=85)


def first_page_seconds(port: int, thumbs: int = 60) -> float:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=args)
        # a window tall enough to show the whole first page: the page loads thumbnails lazily, as they come into view
        page = browser.new_page(viewport={"width": 1280, "height": 4000})
        start = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function(
            f"[...document.querySelectorAll('#grid img')].filter(i => i.complete && i.naturalWidth).length >= {thumbs}",
            timeout=120_000,
            polling=50,
        )
        seconds = time.perf_counter() - start
        browser.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "studio-10k")
    args = parser.parse_args()
    os.environ.setdefault("TRANSFERLAB_CACHE", str(args.folder.parent / "studio-10k-cache"))
    import uvicorn

    from transferlab.curate.doctor import diagnose
    from transferlab.studio.app import create_studio

    start = time.perf_counter()
    make_folder(args.folder, args.photos)
    print(f"folder: {args.photos} photos in {time.perf_counter() - start:.0f} s", flush=True)
    start = time.perf_counter()
    report = diagnose(args.folder, quiet=True)
    print(f"doctor: {report.files_scanned} files, {report.cached} from its cache, {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    diagnose(args.folder, quiet=True)
    print(f"doctor again (warm cache): {time.perf_counter() - start:.1f} s")
    thumbs = Path(os.environ["TRANSFERLAB_CACHE"]) / "thumbs"
    for path in thumbs.glob("*.jpg") if thumbs.is_dir() else []:
        path.unlink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_studio(args.folder, args.folder.parent / "studio-10k-runs", host="127.0.0.1", port=port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    cold = first_page_seconds(port)
    warm = first_page_seconds(port)
    print(f"first page of 60 thumbnails: {cold:.2f} s with no thumbnail cached, {warm:.2f} s with them cached")
    server.should_exit = True


if __name__ == "__main__":
    main()
