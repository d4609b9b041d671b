"""The studio in a real browser (Debian's Chromium driven by playwright), end to end on a small copy of the shared
photos: see a flagged photo, move it and undo, add a photo by upload and one by the (fake) webcam, train a short run
with its progress pushed to the page, see the answer and where a confusion cell's answers come from (heat maps), try
a photo with its heat map, download the ONNX export. A screenshot of each of the five views (and of the heat maps)
goes to docs/, so the pictures there stay true."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import ANIMALS4, REPO, make_folder
from studio_pages import ARGS, CHROMIUM, free_port, serving, start_training


def _photos(root: Path) -> tuple[Path, bool]:
    """8 cats and 8 dogs from the shared photos (hard links where possible), one cat filed twice; synthetic
    colours when the shared photos are absent."""
    if not ANIMALS4.is_dir():
        return make_folder(root, {"red": 8, "green": 8}, split=False), False
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for photo in sorted((ANIMALS4 / "train" / name).glob("*.jpg"))[:8]:
            shutil.copy(photo, root / name / photo.name)
    first = sorted((root / "cat").iterdir())[0]
    shutil.copy(first, root / "cat" / f"copy-of-{first.name}")  # the doctor flags it: the same photo twice
    return root, True


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)")
def test_the_whole_loop_in_a_browser(tmp_path):
    import httpx
    from playwright.sync_api import expect, sync_playwright

    from transferlab.studio.app import create_studio

    photos, real = _photos(tmp_path / "photos")
    classes = sorted(p.name for p in photos.iterdir())
    port = free_port()
    shots = REPO / "docs" / "images"
    with serving(create_studio(photos, tmp_path / "runs", port=port), port):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            dialogs: list[str] = []
            errors: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{port}/")

            # 1 photos: a flagged photo, moved and undone; one added by upload, one by the webcam
            page.click(f"#classes li[data-class='{classes[0]}']")
            expect(page.locator("#grid .thumb")).to_have_count(9 if real else 8)
            page.click("#check")
            flagged = page.locator("#findings .finding .thumb").first
            expect(flagged).to_be_visible(timeout=60_000)
            path = flagged.get_attribute("data-path")
            flagged.locator("select").select_option(classes[1])
            expect(page.locator("#journal li").first).to_contain_text(f"move: photos/{classes[1]}/")
            assert (photos / classes[1] / Path(path).name).exists() and not (photos / path).exists()
            page.locator("#journal li button", has_text="undo").first.click()
            expect(page.locator("#journal li").first).to_contain_text("undo:")
            assert (photos / path).exists()
            page.click(f"#classes li[data-class='{classes[0]}']")
            before = len(list((photos / classes[0]).iterdir()))
            page.set_input_files("#files", str(sorted((photos / classes[1]).iterdir())[0]))
            expect(page.locator("#message")).to_contain_text("added")
            page.click("#camera-start")
            expect(page.locator("#camera")).to_be_visible()
            page.wait_for_function("document.getElementById('video').videoWidth > 0")
            page.click("#capture")
            expect(page.locator("#journal li").first).to_contain_text("webcam-")
            assert len(list((photos / classes[0]).iterdir())) == before + 2
            page.click("#camera-stop")
            page.screenshot(path=str(tmp_path / "studio-photos.png"), full_page=True)

            # 2 train: a short comparison, its progress pushed to the page as it goes
            start_training(page, expect)
            expect(page.locator("#train-runs tbody tr")).to_have_count(1, timeout=120_000)
            expect(page.locator("#train-status")).to_contain_text("finished", timeout=180_000)
            expect(page.locator("#train-answer")).to_contain_text("Use extract")
            page.screenshot(path=str(tmp_path / "studio-train.png"), full_page=True)

            # 3 results: the answer, the table, per-class scores and the confusion matrix
            page.click("#tabs button[data-view=results]")
            page.wait_for_timeout(2000)
            assert not errors, errors
            expect(page.locator("#result-answer")).to_contain_text("Use extract")
            expect(page.locator("#per-class tbody tr")).to_have_count(len(classes))
            page.locator("#confusion td.cell").first.click()
            page.screenshot(path=str(tmp_path / "studio-results.png"), full_page=True)
            page.check("#result-heat")  # the cell's photos as heat maps of the run's answers
            cell = page.locator("#cell-photos .thumb img").first
            expect(cell).to_have_attribute("src", re.compile("/api/heatmap"))
            page.wait_for_function("[...document.querySelectorAll('#cell-photos .thumb img')]"
                                   ".every(i => i.complete && i.naturalWidth === 224)")  # fmt: skip
            page.locator("#cell-photos").screenshot(path=str(tmp_path / "studio-heat-results.png"))
            page.uncheck("#result-heat")
            expect(cell).to_have_attribute("src", re.compile("/api/thumb"))

            # 4 try: a photo of a class
            page.click("#tabs button[data-view=try]")
            expect(page.locator("#try-run")).to_have_value("")  # the live model first
            page.locator("#try-run").select_option(index=1)  # then the run just trained
            tried = sorted((photos / classes[1]).iterdir())[-1]
            page.set_input_files("#try-file", str(tried))
            expect(page.locator("#try-bars .row")).to_have_count(len(classes))
            answer = httpx.post(  # the same photo asked of the same model through the API
                f"http://127.0.0.1:{port}/api/predict",
                params={"run": page.locator("#try-run").input_value()},
                files={"file": (tried.name, tried.read_bytes())},
            ).json()
            shown = (
                f"{answer['label']} ({100 * answer['probability']:.1f}%)"
                if answer["known"]
                else f"unknown: like none of the classes (nearest: {answer['nearest']})"
            )
            assert page.locator("#try-label").inner_text() == shown
            page.check("#try-explain")  # the same photo again, with where its answer comes from
            page.set_input_files("#try-file", [])
            page.set_input_files("#try-file", str(tried))
            expect(page.locator("#try-heat")).to_be_visible()
            page.wait_for_function("document.getElementById('try-heat').naturalWidth === 224")
            assert page.locator("#try-label").inner_text() == shown
            page.screenshot(path=str(tmp_path / "studio-try.png"), full_page=True)

            # 5 ship: export to ONNX (checked against PyTorch), then download it
            page.click("#tabs button[data-view=ship]")
            page.click("#export")
            expect(page.locator("#download-onnx")).to_be_visible(timeout=180_000)
            with page.expect_download() as download:
                page.click("#download-onnx")
            saved = tmp_path / "model.onnx"
            download.value.save_as(saved)
            assert saved.stat().st_size > 1_000_000
            page.screenshot(path=str(tmp_path / "studio-ship.png"), full_page=True)
            assert not dialogs  # no name was ever run as markup
            assert not errors, errors
            browser.close()
    if real:  # the docs show the real photos only
        shots.mkdir(exist_ok=True)
        for view in ("photos", "train", "results", "heat-results", "try", "ship"):
            shutil.copy(tmp_path / f"studio-{view}.png", shots / f"studio-{view}.png")
