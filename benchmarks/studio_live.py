"""How soon does the studio's live model take in a move? `transferlab studio` on a photo folder, as a user starts it.

    python benchmarks/studio_live.py FOLDER [--moves 20] [--port 8765]

The studio is started as a command (its own process) on a working copy of FOLDER (hard links: the original is left
as it was). The live model's first pass is timed (from the first `GET /api/model` to "ready": features computed for
photos the store has not seen, then the probe), then `--moves` times a random photo is moved to another class
through `POST /api/move`, and the time from sending the move to `GET /api/model` answering "ready" with the move's
journal entry reflected is measured. Prints the first pass, each move's seconds, and the median and worst.
With `--try N`, then times N Try requests of one photo against the live model (what the webcam sends a frame at a
time). Run it on an idle machine: two cores are easily disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def call(port: int, path: str, body: dict | None = None, *, data: bytes | None = None, kind: str = "") -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    if body is not None:
        data, kind = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, headers={"Content-Type": kind} if kind else {})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def copy_folder(source: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    for path in sorted(source.rglob("*")):
        out = target / path.relative_to(source)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        elif path.is_file() and not path.name.startswith(".") and ".studio" not in path.parts[-2]:
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, out)
            except OSError:
                shutil.copy2(path, out)
    return target


def wait_ready(port: int, journal: int, limit: float) -> dict:
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        model = call(port, "/api/model")
        if model["status"] == "ready" and model["journal"] >= journal:
            return model
        if model["status"] == "none" and model.get("error"):
            raise SystemExit(f"no live model: {model['error']}")
        time.sleep(0.1)  # a client polling ten times a second (the page polls every 0.3 s while it fits)
    raise SystemExit(f"not ready within {limit} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--try", dest="tries", type=int, default=0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--work", default="/tmp/transferlab-studio-live")
    args = parser.parse_args()
    work = Path(args.work)
    photos = copy_folder(Path(args.folder), work / "photos")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "transferlab", "studio", str(photos), "--out", str(work / "runs")]
    studio = subprocess.Popen([*command, "--port", str(args.port)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert studio.stdout is not None
        studio.stdout.readline()  # "transferlab studio: http://..." once it listens
        for _ in range(100):
            try:
                call(args.port, "/api/state")
                break
            except OSError:
                time.sleep(0.1)
        start = time.perf_counter()
        first = wait_ready(args.port, 0, 3600)
        print(f"first pass: {time.perf_counter() - start:.1f} s for {first['photos']} photos "
              f"({100 * first['accuracy']:.1f}% held out, fit {first['seconds']:.2f} s)", flush=True)  # fmt: skip
        rng = random.Random(0)
        state = call(args.port, "/api/state")
        classes = [c["name"] for c in state["classes"]]
        split = state["split"]
        times = []
        for move in range(args.moves):
            source = rng.choice(classes)
            listed = call(args.port, f"/api/photos?cls={source}&split={'train' if split else 'all'}&limit=500")
            photo = rng.choice(listed["photos"])
            target = rng.choice([c for c in classes if c != source])
            began = time.perf_counter()
            entry = call(args.port, "/api/move", {"path": photo, "to": target})["entry"]
            journal = len(call(args.port, "/api/journal")["entries"])
            model = wait_ready(args.port, journal, 600)
            times.append(time.perf_counter() - began)
            print(f"move {move + 1:2d}: {times[-1]:.2f} s ({entry['source']} -> {target}; "
                  f"fit {model['seconds']:.2f} s, {100 * model['accuracy']:.1f}%)", flush=True)  # fmt: skip
        if times:
            print(f"move -> model ready: median {statistics.median(times):.2f} s, worst {max(times):.2f} s")
        if args.tries:
            photo = next(p for p in sorted(photos.rglob("*.jpg")))
            data, boundary = photo.read_bytes(), "transferlabbenchmark"
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            head += "Content-Type: image/jpeg\r\n\r\n"
            body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
            kind = f"multipart/form-data; boundary={boundary}"
            call(args.port, "/api/model/try", data=body, kind=kind)
            began = time.perf_counter()
            for _ in range(args.tries):
                call(args.port, "/api/model/try", data=body, kind=kind)
            rate = args.tries / (time.perf_counter() - began)
            print(f"Try with the live model: {rate:.1f} photos a second ({photo.stat().st_size // 1000} KB JPEG)")
    finally:
        studio.terminate()
        studio.wait(timeout=30)


if __name__ == "__main__":
    main()
