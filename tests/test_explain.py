"""Heat maps: the class activation map of a trained run says where in the photo its answer comes from; `predict
--explain` writes them and names them in its output."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
import torch
from fastapi import HTTPException
from fastapi.testclient import TestClient
from PIL import Image

from transferlab import DataConfig, TrainConfig, train
from transferlab.analysis.evaluate import evaluate_run
from transferlab.cli import main
from transferlab.errors import UsageError
from transferlab.inference.explain import class_map_parts, class_maps, explain, explain_crops, has_maps
from transferlab.inference.predict import Classifier
from transferlab.inference.serve import UploadPredictor, create_app
from transferlab.inference.web import Uploads
from transferlab.models.model import TransferModel, create_backbone

MARK = (40, 40, 100, 100)  # a white square inside the evaluation crop's top-left quarter (256 px photo, 224 crop)


def _photo(rng: np.random.Generator, marked: bool) -> Image.Image:
    """A textured photo (random colour blobs, smoothed); the marked class has the white square, nothing else."""
    small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    picture = Image.fromarray(small).resize((256, 256), Image.BICUBIC)
    if marked:
        picture.paste((255, 255, 255), MARK)
    return picture


@pytest.fixture(scope="module")
def marked_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("marked")
    rng = np.random.default_rng(0)
    for split, count in (("train", 14), ("val", 4)):
        for name in ("marked", "plain"):
            folder = root / "photos" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                _photo(rng, name == "marked").save(folder / f"{i}.png")
    config = TrainConfig(data=DataConfig(root=str(root / "photos")), strategy="extract",
                         backbone="efficientnet_lite0", out=str(root / "runs"), quiet=True, workers=0)  # fmt: skip
    return root, train(config).run_dir


def test_the_map_of_a_model_trained_on_a_corner_mark_puts_most_of_its_weight_on_the_mark(marked_run):
    root, run = marked_run
    classifier = Classifier.load(run)
    photos = sorted((root / "photos" / "val" / "marked").iterdir())
    explained = explain(classifier, photos)
    assert [e.label for e in explained] == ["marked"] * len(photos)
    for e in explained:
        quarter = e.heat[:112, :112].sum() / e.heat.sum()  # the crop's top-left quarter holds the mark
        assert quarter > 0.5, quarter
        assert e.heat.shape == (224, 224) and e.heat.max() == pytest.approx(1.0)


def test_the_maps_mean_plus_the_bias_is_the_logit(marked_run):
    _, run = marked_run
    classifier = Classifier.load(run)
    crops = torch.stack([classifier.preprocess(_photo(np.random.default_rng(5), True))])
    maps = class_maps(classifier, crops)
    linear = classifier.model.head[-1]
    assert torch.allclose(maps.mean((2, 3)) + linear.bias, classifier.logits(crops), atol=1e-4)


def test_predict_explain_writes_overlays_and_names_them(marked_run, tmp_path, capsys):
    root, run = marked_run
    photos = root / "photos" / "val"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    code = main(
        ["predict", str(run), str(photos), str(broken), "--format", "json", "--explain", str(tmp_path / "maps")]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # the broken file, reported as before
    answered = [r for r in rows if "error" not in r]
    assert len(answered) == 8 and all(r["heatmap"].endswith(".heat.png") for r in answered)
    assert len({r["heatmap"] for r in answered}) == 8  # same names in two class folders: numbered apart
    with Image.open(answered[0]["heatmap"]) as overlay:
        assert overlay.size == (224, 224)
    assert [r for r in rows if "error" in r][0]["file"] == str(broken)


def test_predict_explain_refuses_an_exported_model(tmp_path, capsys):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    code = main(["predict", str(onnx), str(onnx), "--explain", str(tmp_path / "maps")])
    assert code != 0


def _overlay_of(answer: dict) -> np.ndarray:
    prefix = "data:image/jpeg;base64,"
    assert answer["heatmap"].startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(answer["heatmap"][len(prefix) :]))) as picture:
        assert picture.format == "JPEG" and picture.size == (224, 224)
        return np.asarray(picture.convert("RGB"), dtype=np.float32)


def test_the_served_heat_map_of_a_marked_photo_lights_the_mark(marked_run):
    root, run = marked_run
    client = TestClient(create_app(run, port=8000), base_url="http://127.0.0.1:8000")
    photo = sorted((root / "photos" / "val" / "marked").iterdir())[0]
    plain = client.post("/predict", files={"file": ("m.png", photo.read_bytes(), "image/png")}).json()
    assert "heatmap" not in plain  # only when asked: it costs a second pass
    answer = client.post("/predict?explain=true", files={"file": ("m.png", photo.read_bytes(), "image/png")}).json()
    assert answer["label"] == plain["label"] == "marked"
    crop = Classifier.load(run).preprocess(photo).permute(1, 2, 0).numpy().astype(np.float32)
    change = np.abs(_overlay_of(answer) - crop).sum(-1)  # the overlay tints the crop where the heat is
    assert change[:112, :112].sum() / change.sum() > 0.5


def test_an_ensembles_map_is_exact_too_and_only_its_export_is_refused(marked_run, tmp_path):
    """An ensemble's features are several grids' means (each member's head and last stages): the sum of their maps'
    means plus the bias is its logit, so its answer from the maps is its answer; a grid-less model is refused."""
    _, run = marked_run
    classifier = Classifier.load(run)
    backbone, spec, _ = create_backbone("efficientnet_lite0+efficientnet_lite1")
    model = TransferModel(backbone, spec.feature_dim, 2, frozen=True)
    torch.nn.init.normal_(model.head[-1].weight, std=0.05)
    ensemble = Classifier(model, spec, ["a", "b"], classifier.meta)
    assert has_maps(ensemble)
    crops = torch.stack([ensemble.preprocess(_photo(np.random.default_rng(n), n % 2 == 0)) for n in range(3)])
    parts = class_map_parts(ensemble, crops)
    assert len(parts) == 6 and len({p.shape[-1] for p in parts}) > 1  # 2 members x (head + 2 stages), sizes differ
    explained = explain_crops(ensemble, crops)
    expected = ensemble.logits(crops).softmax(1)
    for e, probs in zip(explained, expected):
        assert e.probability == pytest.approx(float(probs.max()), abs=1e-4) and e.heat.shape == crops.shape[-2:]
    with pytest.raises(UsageError):
        class_maps(ensemble, crops)  # one map of one size: not an ensemble's
    flat = Classifier(TransferModel(torch.nn.Flatten(), 3 * 224 * 224, 2, frozen=True), classifier.spec, ["a", "b"],
                      classifier.meta)  # fmt: skip
    assert not has_maps(flat)
    with pytest.raises(HTTPException) as refused:
        UploadPredictor(flat, Uploads()).predict(io.BytesIO(b"unread"), 2, explain=True)
    assert refused.value.status_code == 400 and "no heat map" in refused.value.detail


def test_the_evaluation_shows_the_heat_maps_of_its_top_losses(marked_run, tmp_path):
    root, run = marked_run
    swapped = tmp_path / "swapped"  # the val photos under each other's class: every answer is a top loss
    for name, other in (("marked", "plain"), ("plain", "marked")):
        shutil.copytree(root / "photos" / "val" / name, swapped / other)
    evaluation = evaluate_run(run, swapped, quiet=True)
    assert evaluation.accuracy < 0.5
    out = run / "evaluation-swapped"
    with Image.open(out / "top_losses_heat.png") as sheet, Image.open(out / "top_losses.png") as plain:
        assert sheet.size == plain.size and sheet.tobytes() != plain.tobytes()
    assert "top_losses_heat.png" in (out / "evaluation.md").read_text()
