"""Load check for `transferlab serve` (not a test): N concurrent clients on loopback for a bounded time.

    .venv/bin/python benchmarks/load_check.py RUN_DIR [--clients 8] [--seconds 20] [--image PHOTO]

Starts the app on a free loopback port, has each client POST the same photo to /predict in a loop until the time
is up, and prints requests per second, p50/p95 latency and the error count. Traffic never leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from PIL import Image

from transferlab.inference.serve import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--image", help="photo to send (default: a generated 640x480 JPEG)")
    args = parser.parse_args()
    if args.image:
        payload, name = Path(args.image).read_bytes(), Path(args.image).name
    else:
        buffer = io.BytesIO()
        Image.effect_noise((640, 480), 60).convert("RGB").save(buffer, "JPEG")
        payload, name = buffer.getvalue(), "noise.jpg"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(args.run), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    url = f"http://127.0.0.1:{port}/predict"
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < stop_at:
                start = time.perf_counter()
                try:
                    ok = http.post(url, files={"file": (name, payload)}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed) if ok else None
                    errors[0] += 0 if ok else 1

    started = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(args.clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - started
    server.should_exit = True
    thread.join(timeout=10)
    ordered = sorted(latencies)
    p95 = ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan")
    print(
        f"{args.clients} clients, {wall:.1f}s, image {name} ({len(payload) // 1024} KiB): "
        f"{len(latencies) / wall:.1f} requests/s, p50 {statistics.median(ordered) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, errors {errors[0]}"
    )


if __name__ == "__main__":
    main()
