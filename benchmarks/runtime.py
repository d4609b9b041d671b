"""torch float32, ONNX Runtime float32 and ONNX Runtime int8 side by side, on the same run, in one script.

    python benchmarks/runtime.py ../shared/datasets/animals4 ../shared/datasets/flowers5 [--seconds 10]

For each folder: `extract` on EfficientNet-Lite0 (the default recipe), its float32 ONNX export and its int8 export
(`export --int8`: the accuracy check is printed). Then, each as a user runs it (a fresh `python -m transferlab`
process, wall time): `predict` of one photo (start-up included, median of 3), `predict` over the folder's
validation photos (photos per second, start-up included), and `serve` under 1 and 8 concurrent clients on loopback
(`benchmarks/load_check.py`, requests per second). The machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transferlab import DataConfig, TrainConfig, train
from transferlab.cli import main as cli
from transferlab.data.layout import load_dataset

HERE = Path(__file__).parent


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def serve_rate(model: Path, clients: int, seconds: float, photo: Path) -> str:
    out = subprocess.run(
        [sys.executable, str(HERE / "load_check.py"), str(model), "--clients", str(clients), "--seconds",
         str(seconds), "--image", str(photo)], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split(": ", 1)[1].split(" requests/s")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="transferlab-runtime-"))
    rows = []
    for folder in args.folders:
        name = Path(folder).name
        config = TrainConfig(data=DataConfig(root=folder), strategy="extract", backbone="efficientnet_lite0",
                             out=str(work), name=name, quiet=True)  # fmt: skip
        run = train(config).run_dir
        models = {"torch float32": run, "onnx float32": work / f"{name}.onnx", "onnx int8": work / f"{name}.int8.onnx"}
        assert cli(["export", str(run), "--out", str(models["onnx float32"])]) == 0
        assert cli(["export", str(run), "--int8", "--out", str(models["onnx int8"])]) == 0
        val = load_dataset(folder).val
        photo, photos = val[0].path, Path(folder) / "val"
        for label, model in models.items():
            predict = [sys.executable, "-m", "transferlab", "predict", str(model)]
            one = statistics.median(wall([*predict, str(photo)]) for _ in range(3))
            every = wall([*predict, str(photos), "--format", "csv"])
            rates = [serve_rate(model, c, args.seconds, photo) for c in (1, 8)]
            rows.append(
                f"| {name} | {label} | {one:.2f} | {len(val) / every:.1f} ({every:.1f} s) | {rates[0]} | {rates[1]} |"
            )
            print(rows[-1], flush=True)
    print("\n| folder | runtime | one photo, start-up included (s) | predict over val: photos/s (wall) | "
          "serve, 1 client (req/s) | serve, 8 clients (req/s) |\n|---|---|---|---|---|---|")  # fmt: skip
    print("\n".join(rows))


if __name__ == "__main__":
    main()
