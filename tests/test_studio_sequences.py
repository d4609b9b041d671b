"""The studio as people click it (Debian's Chromium driven by playwright), on small copies of the shared photos:
the label check straight away, then the folder check again; train; move a photo the label check doubts, undo,
move it again, train again (reloading the page mid-training) and see the new answer; two tabs moving one photo; an
unsplit folder split from the page, then trained while the studio is restarted; a training cancelled while it
starts; the live model's line after a move and the webcam; a page of the Inbox accepted and undone. No step may
raise an error in the page, and no request may answer 500."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ANIMALS4, REPO, make_folder
from studio_pages import ARGS, CHROMIUM, free_port, serving, start_training

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)"
)
TRAINING = 240_000  # ms: a one-epoch extract comparison of ~20 photos takes ~20 s here; slack for a loaded machine


def _photos(root: Path, misfiled: int = 2) -> tuple[Path, bool]:
    """10 cats and 10 dogs from the shared photos, `misfiled` more dogs filed as cats (what the label check finds);
    synthetic colours when the shared photos are absent."""
    if not ANIMALS4.is_dir():
        return make_folder(root, {"red": 10, "green": 10}, split=False), False
    dogs = sorted((ANIMALS4 / "train" / "dog").glob("*.jpg"))
    for name, photos in (("cat", sorted((ANIMALS4 / "train" / "cat").glob("*.jpg"))[:10]), ("dog", dogs[:10])):
        (root / name).mkdir(parents=True)
        for photo in photos:
            shutil.copy(photo, root / name / photo.name)
    for photo in dogs[10 : 10 + misfiled]:
        shutil.copy(photo, root / "cat" / f"misfiled-{photo.name}")
    return root, True


@contextmanager
def _serving(photos: Path, runs: Path, port: int):
    """The studio on 127.0.0.1:port until the block ends."""
    from transferlab.studio.app import create_studio

    with serving(create_studio(photos, runs, port=port), port) as statuses:
        yield statuses


@contextmanager
def _browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        context.on("weberror", lambda error: errors.append(str(error.error)))
        try:
            yield context, errors
        finally:
            browser.close()
        assert not errors, errors


def _train(page, expect, *, reload_midway: bool = False) -> str:
    """Start a one-epoch extract comparison from the Train view and wait for its answer; returns the run folder."""
    folder = start_training(page, expect)
    expect(page.locator("#train-steps tbody tr").first).to_be_visible()  # a step shows from the first second
    if reload_midway:
        expect(page.locator("#train-steps tr[data-step]").first).to_be_visible(timeout=TRAINING)
        page.reload()
        page.click("#tabs button[data-view=train]")
        expect(page.locator("#train-status")).to_contain_text(folder)
    expect(page.locator("#train-status")).to_contain_text("finished", timeout=TRAINING)
    expect(page.locator("#train-answer")).to_contain_text("Use extract")
    return folder


def _class_counts(run: Path) -> dict[str, int]:
    """Photos per class the run trained and validated on (from its config's resolved counts)."""
    counts = json.loads((run / "config.json").read_text())["resolved"]["counts"]
    totals: dict[str, int] = {}
    for per_class in counts.values():
        for name, n in per_class.items():
            totals[name] = totals.get(name, 0) + n
    return totals


def test_labels_then_check_again_train_move_a_doubted_photo_undo_move_train_again(tmp_path):
    from playwright.sync_api import expect

    photos, real = _photos(tmp_path / "photos")
    runs, port = tmp_path / "runs", free_port()
    with _serving(photos, runs, port), _browser() as (context, _):
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        # the label check straight away: the doctor's findings and the label check's lists, each with its photos
        page.click("#check-labels")
        expect(page.locator("#findings h3")).to_be_visible(timeout=TRAINING)
        expect(page.locator("#check-status")).not_to_contain_text("checking", timeout=TRAINING)
        doubted = page.locator(
            "#findings .finding[data-kind=label] .thumb, #findings .finding[data-kind=ambiguous] .thumb"
        )
        expect(doubted.first).to_be_visible()
        # then the folder check again: the label check's lists stay, nothing breaks
        page.click("#check")
        page.wait_for_timeout(1500)  # the page polls once a second
        expect(page.locator("#check-status")).not_to_contain_text("checking", timeout=60_000)
        expect(page.locator("#check-status")).to_have_text("")  # no error
        expect(doubted.first).to_be_visible()
        if real:
            page.screenshot(path=str(tmp_path / "studio-labels.png"), full_page=True)
        first = _train(page, expect)
        # move a doubted photo with its own button, undo it, move it again
        page.click("#tabs button[data-view=photos]")
        card = doubted.first
        path = card.get_attribute("data-path")
        suggested = card.locator("button", has_text="move to").inner_text().removeprefix("move to ")
        card.locator("button", has_text="move to").click()
        expect(page.locator("#journal li").first).to_contain_text(f"move: photos/{suggested}/")
        assert (photos / suggested / Path(path).name).exists() and not (photos / path).exists()
        page.locator("#journal li button", has_text="undo").first.click()
        expect(page.locator("#journal li").first).to_contain_text("undo:")
        assert (photos / path).exists()
        page.locator(f"#findings .thumb[data-path='{path}'] button", has_text="move to").first.click()
        expect(page.locator("#journal li").first).to_contain_text(f"move: photos/{suggested}/")
        # train again, reloading the page midway: the new answer, from the photos as they are now
        second = _train(page, expect, reload_midway=True)
        assert second != first
        before, after = _class_counts(runs / first / "extract"), _class_counts(runs / second / "extract")
        moved_from = Path(path).parts[0]
        assert after[moved_from] == before[moved_from] - 1 and after[suggested] == before[suggested] + 1
        sentence = json.loads((runs / second / "summary.json").read_text())["recommendation"]["sentence"]
        expect(page.locator("#train-answer")).to_contain_text(sentence)
        page.click("#tabs button[data-view=results]")
        page.select_option("#result-run", second)
        expect(page.locator("#result-answer")).to_contain_text(sentence)

        # two tabs, one photo: the second tab's move of a photo the first moved away is refused in one line
        one, two = page, context.new_page()
        two.goto(f"http://127.0.0.1:{port}/")
        for tab in (one, two):
            tab.click("#tabs button[data-view=photos]")
            tab.click(f"#classes li[data-class='{moved_from}']")
        victim = one.locator("#grid .thumb").first.get_attribute("data-path")
        expect(two.locator(f"#grid .thumb[data-path='{victim}']")).to_be_visible()
        one.locator(f"#grid .thumb[data-path='{victim}'] select").select_option(suggested)
        expect(one.locator("#message")).to_contain_text("moved")
        two.locator(f"#grid .thumb[data-path='{victim}'] select").select_option(suggested)
        expect(two.locator("#message")).to_contain_text("no such photo")
        assert not (photos / victim).exists() and (photos / suggested / Path(victim).name).exists()
    if real:
        shutil.copy(tmp_path / "studio-labels.png", REPO / "docs" / "images" / "studio-labels.png")


def test_split_from_the_page_train_through_a_studio_restart_and_cancel_while_starting(tmp_path):
    from playwright.sync_api import expect

    photos, _ = _photos(tmp_path / "photos", misfiled=0)
    runs, port = tmp_path / "runs", free_port()
    with _browser() as (context, _):
        page = context.new_page()
        with _serving(photos, runs, port):
            page.goto(f"http://127.0.0.1:{port}/")
            page.click("#split-button")
            expect(page.locator("#message")).to_contain_text("split into")
            expect(page.locator("#split-choice")).to_be_visible()
            assert (tmp_path / "photos-split" / "train").is_dir() and (tmp_path / "photos-split" / "val").is_dir()
            folder = start_training(page, expect)
        # the studio stopped mid-training (its server gone), then started again on the folder it was working on
        with _serving(tmp_path / "photos-split", runs, port):
            page.reload()
            page.click("#tabs button[data-view=train]")
            expect(page.locator("#train-status")).to_contain_text(folder)
            expect(page.locator("#train-status")).to_contain_text("finished", timeout=TRAINING)
            expect(page.locator("#train-answer")).to_contain_text("Use extract")
            resolved = json.loads((runs / folder / "extract" / "config.json").read_text())["resolved"]
            assert Path(resolved["data_root"]).name == "photos-split"  # trained on the folder split from the page
            # a training cancelled while it starts: cancelled, and the next one may start
            page.click("#train-start")
            expect(page.locator("#train-status")).to_contain_text("running", timeout=20_000)
            page.click("#train-cancel")
            expect(page.locator("#train-status")).to_contain_text("cancelled")
            expect(page.locator("#train-start")).to_be_enabled(timeout=60_000)


def test_a_move_changes_the_live_model_line_and_the_webcam_is_classified_continuously(tmp_path):
    """The live model as a person sees it: the header's model line fitted on the photos, a move from a photo card
    reflected within 2 s (the issue's bound on a 1,600-photo folder; this one is 22 photos), and the webcam (Chromium's
    fake camera) classified frame after frame at 5 a second or more."""
    from playwright.sync_api import expect

    photos, _ = _photos(tmp_path / "photos")
    runs, port = tmp_path / "runs", free_port()
    with _serving(photos, runs, port), _browser() as (context, _):
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        live = page.locator("#live")
        expect(live).to_have_attribute("data-status", "ready", timeout=TRAINING)  # the first pass
        expect(live).to_contain_text("22 photos")
        card = page.locator("#grid .thumb").first
        expect(card).to_be_visible()
        card.locator("select").select_option("dog")
        expect(live).to_have_attribute("data-journal", "1", timeout=2_000)
        expect(live).to_have_attribute("data-status", "ready")
        rows = page.locator("#live-classes tbody tr")
        expect(rows).to_have_count(2)
        page.click("#tabs button[data-view=try]")
        expect(page.locator("#try-run")).to_have_value("")  # the live model is the first choice
        page.click("#try-camera")
        expect(page.locator("#try-label")).to_contain_text("%", timeout=30_000)
        page.wait_for_timeout(4_000)
        rate = float(page.locator("#try-rate").inner_text().split()[0])
        assert rate >= 5, f"{rate} frames a second"
        page.check("#try-explain")  # the webcam's frames with their heat maps, from the next frame on
        heat = page.locator("#try-heat")
        expect(heat).to_be_visible(timeout=10_000)
        first = heat.get_attribute("src")
        page.wait_for_function(f"document.getElementById('try-heat').src !== {first!r}")  # a map per frame
        page.click("#try-stop")
        expect(page.locator("#try-video")).to_be_hidden()


def test_the_inbox_a_page_accepted_with_one_photo_unticked_then_undone(tmp_path):
    """The Inbox as a person sorts a pile: suggestions a page per class, one wrong-looking photo unticked, the rest
    accepted in one click (moved into the class, in the journal), the unticked photo not offered for that class
    again, then the page undone (the photos back in the pile). A screenshot goes to docs/."""
    from playwright.sync_api import expect

    photos, real = _photos(tmp_path / "photos", misfiled=0)
    pile = photos / "_unsorted"
    pile.mkdir()
    source = ANIMALS4 / "val" if real else None
    for name in ("cat", "dog") if real else ("red", "green"):
        if source is not None:
            for photo in sorted((source / name).glob("*.jpg"))[:4]:
                shutil.copy(photo, pile / f"{name}-{photo.name}")
        else:
            for photo in sorted((photos / name).iterdir())[:4]:
                shutil.copy(photo, pile / f"{name}-copy-{photo.name}")
    first = "cat" if real else "green"
    runs, port = tmp_path / "runs", free_port()
    with _serving(photos, runs, port), _browser() as (context, _):
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("#inbox-count")).to_contain_text("8 unsorted")
        page.click("#inbox-suggest")
        cards = page.locator(f".inbox-page[data-class='{first}'] .inbox-card")
        expect(cards.first).to_be_visible(timeout=TRAINING)
        offered = cards.count()
        unticked = cards.first.get_attribute("data-path")
        cards.first.locator("input").uncheck()
        page.screenshot(path=str(tmp_path / "studio-inbox.png"), full_page=True)
        shown = int(page.locator("#inbox").get_attribute("data-round"))
        page.locator(f".inbox-page[data-class='{first}'] .inbox-accept").click()
        expect(page.locator("#inbox-last")).to_contain_text(f"accepted {offered - 1} as {first}")
        expect(page.locator("#journal li").first).to_contain_text(f"inbox: accepted as {first}")
        assert len(list((photos / first).iterdir())) == 10 + offered - 1
        expect(page.locator("#inbox")).to_have_attribute("data-round", str(shown + 1), timeout=TRAINING)  # again
        again = page.locator(f".inbox-page[data-class='{first}'] .inbox-card[data-path='{unticked}']")
        expect(again).to_have_count(0)
        expect(page.locator(f".inbox-card[data-path='{unticked}']")).to_have_count(1)  # offered as another class
        page.click("#inbox-undo")
        expect(page.locator("#message")).to_contain_text(f"undone: {offered - 1} photos back")
        assert len(list((photos / first).iterdir())) == 10 and len(list(pile.iterdir())) == 8
        expect(page.locator("#inbox-count")).to_contain_text("8 unsorted")
    if real:
        shutil.copy(tmp_path / "studio-inbox.png", REPO / "docs" / "images" / "studio-inbox.png")
