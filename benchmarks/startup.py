"""How fast the command starts: `transferlab --help`, `backbones`, an argument error and `predict one.jpg`, each
beside a bare `import torch` and a plain script that imports torch, builds the model and classifies the photo.

    python benchmarks/startup.py RUN PHOTO [--repeats 5] [--src OTHER_CHECKOUT/src]

RUN is an efficientnet_lite0 run folder (e.g. from `transferlab train PHOTOS --strategy extract --backbone
efficientnet_lite0 --epochs 1`). Each command runs `--repeats` times in a fresh process; the median wall time is
printed. `--src` measures another checkout's code with the same interpreter (e.g. the commit before a change).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PLAIN_PREDICT = """
import json, sys
import numpy as np, torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import load_file
run, photo = sys.argv[1], sys.argv[2]
meta = json.load(open(run + "/model.json"))
net = EfficientNet.from_name("efficientnet-lite0")
net._fc = torch.nn.Identity(); net._dropout = torch.nn.Identity()
head = torch.nn.Linear(1280, len(meta["classes"]))
state = load_file(run + "/model.safetensors")
net.load_state_dict({k[len("backbone.net."):]: v for k, v in state.items() if k.startswith("backbone.net.")})
head.load_state_dict({"weight": state["head.1.weight"], "bias": state["head.1.bias"]})
net.eval()
image = Image.open(photo).convert("RGB")
w, h = image.size
s = 256 / min(w, h)
image = image.resize((max(256, int(w * s)), max(256, int(h * s))), Image.BILINEAR)
left, top = (image.width - 224) // 2, (image.height - 224) // 2
x = torch.from_numpy(np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32).copy())
x = ((x / 255 - 127 / 255) / (128 / 255)).permute(2, 0, 1)[None]
with torch.inference_mode():
    p = head(torch.flatten(net._avg_pooling(net.extract_features(x)), 1)).softmax(1)[0]
print(meta["classes"][int(p.argmax())], float(p.max()))
"""


def median_seconds(command: list[str], repeats: int, env: dict) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("photo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--src", help="measure the transferlab package in this folder instead of the installed one")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    tl = [sys.executable, "-m", "transferlab"]
    commands = {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "transferlab --help": tl + ["--help"],
        "transferlab backbones": tl + ["backbones"],
        "transferlab train --epochs x (argument error)": tl + ["train", "x", "--epochs", "x"],
        "plain script: torch + model + one photo": [sys.executable, "-c", PLAIN_PREDICT, args.run, args.photo],
        "transferlab predict RUN one.jpg": tl + ["predict", args.run, args.photo],
    }
    print(f"median of {args.repeats} fresh processes each" + (f", code from {args.src}" if args.src else ""))
    results = {}
    for name, command in commands.items():
        results[name] = median_seconds(command, args.repeats, env)
        print(f"{name:48s} {results[name]:6.2f} s")
    torch_s, plain = results["python -c 'import torch'"], results["plain script: torch + model + one photo"]
    print(
        f"--help / import torch: {results['transferlab --help'] / torch_s:.2f}; "
        f"predict / plain script: {results['transferlab predict RUN one.jpg'] / plain:.2f}"
    )


if __name__ == "__main__":
    main()
