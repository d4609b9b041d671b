"""`transferlab collect` measured against a local web server on 127.0.0.1 (this workplace has no internet).

The server serves every photo of a folder (class folders, or train/ and val/ with class folders) at
/<class>/<file>, and the failures a web image search brings: dead links (404), an HTML page saved as .jpg, a server
that stalls, one that sends half a file, a redirect loop, and the same photo at a second address. URL lists
(`<class>.txt`) are written, then `transferlab collect URLS --out OUT` runs as a user would run it, twice (the
second run shows what resuming costs). Served with a little latency per request (`--latency`, default 50 ms) to
stand in for a real server; the figures are loopback figures, not internet ones.

    python benchmarks/collect_loopback.py ../shared/datasets/animals4 /tmp/urls /tmp/photos
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from transferlab.data.images import is_image_file  # noqa: E402

FAILURES = {
    "missing.jpg": "404",
    "page.jpg": "HTML page",
    "stall.jpg": "stalls",
    "half.jpg": "half a file",
    "loop.jpg": "redirect loop",
}


def class_photos(root: Path) -> dict[str, list[Path]]:
    folders = [root / "train", root / "val"] if (root / "train").is_dir() else [root]
    found: dict[str, list[Path]] = {}
    for folder in folders:
        for class_dir in sorted(d for d in folder.iterdir() if d.is_dir()):
            found.setdefault(class_dir.name, []).extend(
                sorted(p for p in class_dir.iterdir() if p.is_file() and is_image_file(p))
            )
    return found


def handler(files: dict[str, Path], latency: float) -> type[BaseHTTPRequestHandler]:
    class Serve(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            time.sleep(latency)
            key = unquote(urlsplit(self.path).path).lstrip("/")
            name = key.rsplit("/", 1)[-1]
            if key in files:
                body = files[key].read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif name == "page.jpg":
                body = b"<!DOCTYPE html><html><body>Please log in</body></html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif name == "stall.jpg":
                time.sleep(30)
            elif name == "half.jpg":
                body = next(iter(files.values())).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            elif name == "loop.jpg":
                self.send_response(302)
                self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

    return Serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="folder whose photos the server serves")
    parser.add_argument("urls", type=Path, help="where to write the <class>.txt URL lists")
    parser.add_argument("out", type=Path, help="the folder collect fills")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits before answering")
    parser.add_argument("--timeout", default="5")
    args = parser.parse_args()
    by_class = class_photos(args.photos)
    files = {f"{label}/{p.parent.parent.name}-{p.name}": p for label, paths in by_class.items() for p in paths}
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(files, args.latency))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    args.urls.mkdir(parents=True, exist_ok=True)
    first = next(iter(files))
    for label in by_class:
        urls = [f"{base}/{key}" for key in files if key.startswith(label + "/")]
        urls += [f"{base}/{label}/{name}" for name in FAILURES]
        urls.append(f"{base}/{first}?copy={label}")  # the same photo at a second address
        (args.urls / f"{label}.txt").write_text("\n".join(urls) + "\n")
    print(f"serving {len(files)} photos + {len(FAILURES)} failures and 1 repeated photo per class at {base}")
    command = [
        sys.executable,
        "-m",
        "transferlab",
        "collect",
        str(args.urls),
        "--out",
        str(args.out),
        "--timeout",
        args.timeout,
        "--retries",
        "1",
    ]
    for run in ("first run", "second run (resumed)"):
        start = time.perf_counter()
        subprocess.run(command, check=False)
        print(f"{run}: {time.perf_counter() - start:.1f} s wall (transferlab collect, as a user runs it)")
    server.shutdown()


if __name__ == "__main__":
    main()
