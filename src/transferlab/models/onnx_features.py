"""A frozen backbone run by ONNX Runtime on the CPU: the features torch computes (within 1e-4, tested), faster.

The backbone is exported once per set of weights (`state_digest`) into the cache folder (`onnx/`), then every
call runs the ONNX file with as many threads as torch uses. Anything that goes wrong (no onnxruntime, an export or
session that fails) falls back to torch, logged; `TRANSFERLAB_FEATURES=torch` turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from transferlab.models.backbones import BackboneSpec
from transferlab.utils.storage import cache_dir, write_atomically

log = logging.getLogger("transferlab")


def hash_state(module: nn.Module, digest: Any) -> Any:
    """`digest` (a hashlib object) updated with a network's weights and buffers (BatchNorm statistics included)."""
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(hashlib.blake2b(tensor.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest())
    return digest


def state_digest(module: nn.Module) -> str:
    """A short digest of a network's weights and buffers: the name of its ONNX export in the cache."""
    return hash_state(module, hashlib.sha256()).hexdigest()[:32]


class OnnxFeatures:
    """Calls like the backbone: a normalized float batch (N, 3, S, S) -> pooled features (N, D), by onnxruntime."""

    def __init__(self, path: Path):
        self.session = _session(path, torch.get_num_threads())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"x": pixels})[0])


@functools.lru_cache(maxsize=8)
def _session(path: Path, threads: int) -> Any:
    """One session per exported file and process (training's features and the evaluation after it share it)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_features(backbone: nn.Module, spec: BackboneSpec) -> OnnxFeatures | None:
    """`backbone` (in eval mode) as an ONNX Runtime session, exported on first use; None where it cannot be. The
    cached export is named by the backbone, its feature width and a digest of its weights."""
    if os.environ.get("TRANSFERLAB_FEATURES", "onnx") == "torch":
        return None
    revision = f"-r{spec.revision}" if spec.revision else ""
    path = cache_dir() / "onnx" / f"{spec.name}-{spec.feature_dim}{revision}-{state_digest(backbone)}.onnx"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda tmp: _export(backbone, spec.input_size, tmp))
        return OnnxFeatures(path)
    except Exception as error:  # noqa: BLE001 - any failure here only costs speed: torch computes them
        log.warning("features: ONNX Runtime unavailable (%s); computing them with torch", str(error).splitlines()[0])
        return None


def _export(backbone: nn.Module, input_size: int, out: Path) -> None:
    import warnings

    was_training = backbone.training
    network = backbone.eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(2, 3, input_size, input_size)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                network, (example,), dynamo=True, input_names=["x"], output_names=["features"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), verbose=False,
            )  # fmt: skip
        assert program is not None
        program.save(str(out))
    finally:
        backbone.to(memory_format=torch.channels_last).train(was_training)


def feature_identity(backbone: nn.Module, spec: BackboneSpec, precision: torch.dtype | None) -> str:
    """What a frozen backbone's features depend on besides the picture: its weights and BatchNorm statistics, its
    input size and normalization, the precision, and the torch/torchvision versions (a short digest)."""
    import json

    from transferlab.runs import torchvision_version

    digest = hash_state(backbone, hashlib.sha256())
    about = [spec.name, spec.input_size, spec.resize_size, list(spec.mean), list(spec.std), spec.feature_dim,
             spec.revision or "", str(precision), torch.__version__, torchvision_version()]  # fmt: skip
    digest.update(json.dumps(about).encode())
    return digest.hexdigest()[:32]
