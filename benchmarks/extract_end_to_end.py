"""`transferlab train PHOTOS --strategy extract` end to end, this checkout against another one, runs alternating.

    python benchmarks/extract_end_to_end.py ../shared/datasets/animals4 --src OTHER_CHECKOUT/src [--repeats 5]

Each run is a fresh process (wall time, start-up included) with an empty feature cache, so the features are
computed every time; the backbone's ONNX export (made once per set of weights, see models/onnx_features.py) is made
before the first timed run and kept, as it is on a user's machine after the first run. Runs alternate between the two
checkouts so a change in the machine's load falls on both. Prints each run's seconds and accuracy, then the means and
their ratio. Run it on an idle machine: two cores are easily disturbed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"


def one_run(src: Path, photos: str, backbone: str, cache: Path, out: Path) -> tuple[float, str]:
    shutil.rmtree(cache / "features", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(src), "TRANSFERLAB_CACHE": str(cache)}
    env.pop("TRANSFERLAB_FEATURES", None)
    command = [sys.executable, "-m", "transferlab", "train", photos, "--strategy", "extract"]
    command += ["--backbone", backbone, "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{src}: exit {done.returncode}\n{done.stderr[-2000:]}")
    found = re.search(r"best val accuracy ([\d.]+%)", done.stdout + done.stderr)
    return seconds, found.group(1) if found else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos")
    parser.add_argument("--src", type=Path, required=True, help="the other checkout's src/ folder")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    trees = {"this checkout": HERE, str(args.src): args.src.resolve()}
    times: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "runs"
        one_run(HERE, args.photos, args.backbone, cache, out)  # untimed: makes the ONNX export, warms the disk
        for repeat in range(args.repeats):
            for name, src in trees.items():
                seconds, accuracy = one_run(src, args.photos, args.backbone, cache, out)
                times[name].append(seconds)
                print(f"run {repeat + 1} {name}: {seconds:.1f} s, val accuracy {accuracy}", flush=True)
    means = {name: statistics.mean(values) for name, values in times.items()}
    for name, mean in means.items():
        print(f"{name}: mean {mean:.1f} s over {args.repeats} runs")
    this, other = means["this checkout"], means[str(args.src)]
    print(f"this checkout is {other / this:.2f}x as fast")


if __name__ == "__main__":
    main()
