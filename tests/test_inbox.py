"""The studio's Inbox as a person uses it: the unsorted photos of `_unsorted/` suggested a class each, a page
accepted with one photo unticked (the ticked ones moved, journaled), the unticked photo never offered for that
class again (also after a studio restart), the page undone; `_unsorted/` is never a class; wrong requests refused."""

from __future__ import annotations

import time

import pytest

from conftest import COLOURS, make_folder, studio_client, synthetic_picture
from transferlab.data.layout import load_dataset

WITHIN = 120  # seconds: the first suggestions compute every photo's features


@pytest.fixture
def photos(tmp_path):
    root = make_folder(tmp_path / "photos", {"red": 6, "green": 6, "blue": 6}, split=False)
    pile = root / "_unsorted" / "camera roll"
    pile.mkdir(parents=True)
    for n, name in enumerate(["red"] * 4 + ["green"] * 3 + ["blue"] * 3):
        synthetic_picture(COLOURS[name], 1000 + n).save(pile / f"{name}-{n}.jpg")
    return root


@pytest.fixture
def client(photos, tmp_path):
    with studio_client(photos, tmp_path / "runs") as studio:
        yield studio


def _pages(client) -> dict[str, list[str]]:
    assert client.post("/api/inbox/suggest").status_code == 200
    deadline = time.monotonic() + WITHIN
    while (inbox := client.get("/api/inbox").json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert inbox["status"] == "finished", inbox["error"]
    return {page["name"]: [p["path"] for p in page["photos"]] for page in inbox["pages"]}


def test_the_unsorted_folder_is_never_a_class(photos):
    assert load_dataset(photos, quiet=True).classes == ["blue", "green", "red"]


def test_a_page_accepted_with_one_photo_unticked_then_undone(client, photos):
    assert client.get("/api/inbox").json()["unsorted"] == 10
    pages = _pages(client)
    assert sorted(pages["red"]) == [f"_unsorted/camera roll/red-{n}.jpg" for n in range(4)]
    unticked, ticked = pages["red"][0], pages["red"][1:]
    answer = client.post("/api/inbox/accept", json={"cls": "red", "accept": ticked, "reject": [unticked]})
    assert answer.status_code == 200, answer.text
    entries = answer.json()["entries"]
    assert [e["target"].split("/")[-2] for e in entries] == ["red"] * 3
    assert all((photos / "red" / p.split("/")[-1]).is_file() for p in ticked)
    again = _pages(client)
    assert unticked not in again["red"] and unticked in [p for page in again.values() for p in page]
    with studio_client(photos, photos.parent / "runs") as restarted:
        assert unticked not in _pages(restarted)["red"]  # remembered beside the journal
    for entry in entries:  # undo the page: the photos back in the pile
        assert client.post("/api/undo", json={"id": entry["id"]}).status_code == 200
    assert all((photos / p).is_file() for p in ticked)
    assert client.get("/api/inbox").json()["unsorted"] == 10


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"cls": "red", "accept": ["red/red_0.jpg"]}, 400),  # a sorted photo is not the pile's
        ({"cls": "red", "accept": ["../../etc/passwd"]}, 400),
        ({"cls": "red", "accept": ["_unsorted/none.jpg"]}, 400),
        ({"cls": "purple", "accept": ["_unsorted/camera roll/red-0.jpg"]}, 400),  # no such class
        ({"cls": "_unsorted", "accept": ["_unsorted/camera roll/red-0.jpg"]}, 400),
        (
            {
                "cls": "red",
                "accept": ["_unsorted/camera roll/red-0.jpg"],
                "reject": ["_unsorted/camera roll/red-0.jpg"],
            },
            400,
        ),
        ({"cls": "red", "accept": "_unsorted/camera roll/red-0.jpg"}, 422),
        ({"cls": "red", "accept": ["x"] * 501}, 422),
        ({"cls": "red", "more": 1}, 422),
        ({"accept": []}, 422),
        ({"cls": 5}, 422),
        ({"cls": "../up", "accept": ["_unsorted/camera roll/red-0.jpg"], "new": True}, 400),
        ({"cls": "unknown", "accept": ["_unsorted/camera roll/red-0.jpg"], "new": True}, 400),
        ({"cls": "_unsorted", "accept": ["_unsorted/camera roll/red-0.jpg"], "new": True}, 400),
        ({"cls": "new one", "accept": ["../../etc/passwd"], "new": True}, 400),
        ({"cls": "new one", "accept": ["_unsorted/camera roll/red-0.jpg"], "new": "yes"}, 422),
    ],
)
def test_a_wrong_page_is_refused_and_nothing_moves(client, photos, body, status):
    before = sorted(p.relative_to(photos) for p in photos.rglob("*.jpg"))
    answer = client.post("/api/inbox/accept", json=body)
    assert answer.status_code == status, answer.text
    assert isinstance(answer.json()["detail"], str) and "\n" not in answer.json()["detail"]  # one line
    assert sorted(p.relative_to(photos) for p in photos.rglob("*.jpg")) == before


def test_no_pile_is_an_empty_inbox(tmp_path):
    photos = make_folder(tmp_path / "photos", {"red": 6, "green": 6}, split=False)
    with studio_client(photos, tmp_path / "runs") as client:
        assert client.get("/api/inbox").json() == {
            "status": "idle", "error": "", "how": "", "sharpening": False, "unsorted": 0, "pages": [], "first": []
        }  # fmt: skip
        assert _pages(client) == {}


def test_label_these_first_names_the_least_sure_photos(client):
    _pages(client)
    inbox = client.get("/api/inbox").json()
    first = inbox["first"]
    assert 0 < len(first) <= 12 and all(p["path"].startswith("_unsorted/") for p in first)
    sure = {p["path"]: p["probability"] for page in inbox["pages"] for p in page["photos"]}
    assert sure[first[0]["path"]] <= sorted(sure.values())[len(sure) // 2]  # among the less sure half


def test_a_new_class_is_made_from_a_selection_of_the_pile(client, photos):
    pages = _pages(client)
    chosen = pages["red"][:2]
    answer = client.post("/api/inbox/accept", json={"cls": "crimson", "accept": chosen, "new": True})
    assert answer.status_code == 200, answer.text
    assert sorted(p.name for p in (photos / "crimson").iterdir()) == sorted(p.split("/")[-1] for p in chosen)
    assert "crimson" in [c["name"] for c in client.get("/api/state").json()["classes"]]
    again = client.post("/api/inbox/accept", json={"cls": "crimson", "accept": pages["red"][2:3], "new": True})
    assert again.status_code == 400 and "exists already" in again.json()["detail"]
    empty = client.post("/api/inbox/accept", json={"cls": "scarlet", "accept": [], "new": True})
    assert empty.status_code == 400 and not (photos / "scarlet").exists()


def test_the_first_suggestions_come_from_one_network_and_later_ones_from_three(client):
    """The first round uses the live model's network (its features are the studio's); the other two networks'
    features are computed in the background meanwhile, and the rounds after that use all three."""
    _pages(client)
    first = client.get("/api/inbox").json()["how"]
    assert first.startswith("from 1 network")
    deadline = time.monotonic() + WITHIN
    while "computing" in client.get("/api/inbox").json()["how"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    _pages(client)
    assert client.get("/api/inbox").json()["how"] == "from 3 networks"


def test_closing_the_studio_ends_its_background_work(photos, tmp_path):
    """The Inbox's feature pass for the other networks runs in a thread; closing the studio waits for it (a feature
    pass restores torch's random state when it ends, under whatever this process runs next)."""
    with studio_client(photos, tmp_path / "runs") as client:
        _pages(client)
        studio = client.app.state.studio
        assert studio.inbox.sharpen.thread is not None  # started by the first round
    assert not studio.inbox.sharpen.thread.is_alive() and not studio.inbox.job.thread.is_alive()
