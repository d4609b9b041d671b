"""`transferlab collect` against a local HTTP server on 127.0.0.1 (started here; no other address is touched): photos
are saved and recorded, and every failure - 404, slow, truncated, HTML, oversize, redirect loop, redirect out of
http, flaky - is rejected by name without leaving a file; copies are skipped; reruns fetch only what is missing;
an interruption keeps what finished."""

from __future__ import annotations

import csv
import io
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

from conftest import photo_like
from transferlab.cli import main
from transferlab.curate.collect import collect
from transferlab.curate.fetching import FetchFailed, Limits, encode_url


def _jpeg(seed: int, size=(320, 240)) -> bytes:
    buffer = io.BytesIO()
    photo_like(seed, size).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Photos(BaseHTTPRequestHandler):
    """Photos at /photo/<n>.jpg, and one route per failure."""

    hits: Counter = Counter()

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, body: bytes, kind: str = "image/jpeg", status: int = 200, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, where: str) -> None:
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path
        Photos.hits[path] += 1
        if path == "/my%20cat%C3%A9.jpg":  # what a browser sends for "my caté.jpg"
            self._send(_jpeg(70))
        elif path.startswith("/photo/"):
            self._send(_jpeg(int(path.split("/")[-1].split(".")[0])))
        elif path == "/resized.jpg":  # photo 2, smaller and re-encoded
            buffer = io.BytesIO()
            photo_like(2).resize((160, 120)).save(buffer, "JPEG", quality=60)
            self._send(buffer.getvalue())
        elif path == "/phone.heic":
            import pillow_heif

            buffer = io.BytesIO()
            pillow_heif.from_pillow(photo_like(40)).save(buffer, quality=90)
            self._send(buffer.getvalue(), "image/heic")
        elif path == "/slow.jpg":
            time.sleep(6)
            self._send(_jpeg(50))
        elif path == "/truncated.jpg":
            body = _jpeg(51)
            self._send(body[: len(body) // 2], length=len(body))  # promises more than it sends, then closes
            self.close_connection = True
        elif path == "/cut.jpg":  # no length promised; the JPEG simply stops
            body = _jpeg(52)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif path == "/error.jpg":
            self._send(b"<!DOCTYPE html><html><body>Access denied</body></html>", "text/html")
        elif path == "/huge.jpg":
            self._send(b"", length=50_000_000)
        elif path == "/endless.jpg":  # no Content-Length, more bytes than the cap
            self.send_response(200)
            self.end_headers()
            self.wfile.write(_jpeg(53) + bytes(3_000_000))
            self.close_connection = True
        elif path == "/loop":
            self._redirect("/loop")
        elif path.startswith("/chain/"):
            left = int(path.split("/")[-1])
            self._redirect(f"/chain/{left - 1}" if left else "/photo/60.jpg")
        elif path == "/to-file":
            self._redirect("file:///etc/passwd")
        elif path == "/flaky.jpg":
            if Photos.hits[path] == 1:
                self._send(b"busy", "text/plain", status=503)
            else:
                self._send(_jpeg(61))
        else:
            self._send(b"not found", "text/plain", status=404)


class QuietServer(ThreadingHTTPServer):
    """A client that gives up (a timeout, a size cap, the end of the test) closes its end: the route's late writes
    then fail, which is expected here and must not print a traceback into a later test's captured stderr."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture
def server():
    Photos.hits = Counter()
    httpd = QuietServer(("127.0.0.1", 0), Photos)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


FAST = Limits(concurrency=4, timeout=1.5, deadline=4.0, retries=1, backoff=0.01, max_bytes=2_000_000)  # busy CPUs


def _lists(folder: Path, base: str, **classes: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for label, paths in classes.items():
        (folder / f"{label}.txt").write_text("# saved from an image search\n" + "\n".join(base + p for p in paths))
    return folder


def _rows(out: Path) -> dict[str, dict]:
    with (out / "sources.csv").open(newline="") as handle:
        return {urlsplit(row["url"]).path: row for row in csv.DictReader(handle)}


def test_photos_are_saved_and_every_failure_is_rejected_by_name(server, tmp_path):
    urls = _lists(
        tmp_path / "urls",
        server,
        cat=["/photo/1.jpg", "/my caté.jpg", "/phone.heic", "/slow.jpg", "/truncated.jpg", "/cut.jpg", "/error.jpg"],
        dog=["/photo/3.jpg", "/missing.jpg", "/huge.jpg", "/endless.jpg", "/loop", "/to-file", "/chain/3", "/chain/9"],
    )
    out = tmp_path / "photos"
    result = collect(urls, out, FAST, quiet=True)
    rows = _rows(out)
    reasons = {name: row["reason"] for name, row in rows.items() if row["status"] == "failed"}
    assert set(reasons) == {
        "/slow.jpg",
        "/truncated.jpg",
        "/cut.jpg",
        "/error.jpg",
        "/missing.jpg",
        "/huge.jpg",
        "/endless.jpg",
        "/loop",
        "/to-file",
        "/chain/9",
    }, reasons
    assert result.saved == {"cat": 3, "dog": 2}  # 1, the name with a space and an accent, the HEIC; 3, the chain
    assert "HTTP 404" in reasons["/missing.jpg"]
    assert "timed out" in reasons["/slow.jpg"] and "after 2 tries" in reasons["/slow.jpg"]
    assert "truncated" in reasons["/truncated.jpg"] and "truncated" in reasons["/cut.jpg"]
    assert "HTML page" in reasons["/error.jpg"]
    assert "too large" in reasons["/huge.jpg"] and "too large" in reasons["/endless.jpg"]
    assert "redirect" in reasons["/loop"] and "redirect" in reasons["/chain/9"]
    assert "non-http" in reasons["/to-file"]
    saved = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "sources.csv")
    assert len(saved) == 5 and all(Image.open(p).size for p in saved)
    assert {row["file"] for row in rows.values() if row["status"] == "saved"} == {
        str(p.relative_to(out)) for p in saved
    }  # sources.csv names each file's URL
    assert any(p.suffix == ".heic" for p in saved) and not list(out.rglob("*.part"))
    assert sorted(p.name.rsplit("-", 1)[0] for p in saved) == ["1", "3", "3", "my_cat", "phone"]  # as in the URLs


def test_a_rerun_fetches_only_what_is_missing(server, tmp_path):
    urls = _lists(tmp_path / "urls", server, cat=["/photo/1.jpg", "/missing.jpg"], dog=["/photo/3.jpg"])
    out = tmp_path / "photos"
    collect(urls, out, FAST, quiet=True)
    (urls / "dog.txt").write_text(f"{server}/photo/3.jpg\n{server}/photo/4.jpg\n")  # the list grew
    before = Counter(Photos.hits)
    again = collect(urls, out, FAST, quiet=True)
    fetched = {path for path, n in Photos.hits.items() if n > before[path]}
    assert fetched == {"/missing.jpg", "/photo/4.jpg"} and again.already == 2 and again.saved == {"dog": 1}


def test_copies_of_pictures_the_folder_holds_are_skipped(server, tmp_path):
    out = tmp_path / "photos"
    (out / "cat").mkdir(parents=True)
    (out / "cat" / "mine.jpg").write_bytes(_jpeg(1))  # the same bytes as /photo/1.jpg
    photo_like(2).save(out / "cat" / "original.jpg", quality=95)
    urls = _lists(tmp_path / "urls", server, cat=["/photo/1.jpg", "/resized.jpg", "/photo/5.jpg", "/photo/5.jpg"])
    result = collect(urls, out, FAST, quiet=True)
    assert result.duplicates == 2 and result.saved == {"cat": 1}  # /photo/5.jpg once: repeated URLs are read once
    assert len(list((out / "cat").iterdir())) == 3


def test_a_flaky_server_is_retried_with_back_off(server, tmp_path):
    urls = _lists(tmp_path / "urls", server, cat=["/flaky.jpg"])
    result = collect(urls, tmp_path / "photos", FAST, quiet=True)
    assert result.saved == {"cat": 1} and Photos.hits["/flaky.jpg"] == 2
    no_retry = collect(_lists(tmp_path / "urls2", server, dog=["/missing.jpg"]), tmp_path / "photos", FAST, quiet=True)
    assert no_retry.failed and Photos.hits["/missing.jpg"] == 1  # a 404 is not retried


def test_csv_lists_and_bad_lists(server, tmp_path, capsys):
    listing = tmp_path / "urls.csv"
    listing.write_text(f"\ufeffurl,label\n{server}/photo/7.jpg,cat\n{server}/photo/8.jpg,dog\n")  # as Excel saves
    assert main(["collect", str(listing), "--out", str(tmp_path / "photos"), "--timeout", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "cat: 1 photo(s) saved" in out and "2 saved" in out
    (tmp_path / "bad.csv").write_text("address,class\nhttp://127.0.0.1:1/x.jpg,cat\n")
    assert main(["collect", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "p2"), "-q"]) == 2
    assert "url,label" in capsys.readouterr().err
    (tmp_path / "strange.csv").write_text(f"url,label\n{server}/photo/9.jpg,unknown\n")
    assert main(["collect", str(tmp_path / "strange.csv"), "--out", str(tmp_path / "p3"), "-q"]) == 2
    assert "'unknown'" in capsys.readouterr().err
    assert main(["collect", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p4"), "-q"]) == 2
    (tmp_path / "header.csv").write_text("url,label\n")  # a header and no rows: an error, not "0 saved"
    assert main(["collect", str(tmp_path / "header.csv"), "--out", str(tmp_path / "p5"), "-q"]) == 2
    assert "no URLs" in capsys.readouterr().err and not (tmp_path / "p5").exists()
    (tmp_path / "short.csv").write_text("url,label\nhttp://127.0.0.1:1/x.jpg\n")  # a row without its label
    assert main(["collect", str(tmp_path / "short.csv"), "--out", str(tmp_path / "p6"), "-q"]) == 2
    assert main(["collect", str(listing), "--out", str(listing), "-q"]) == 2  # a file, not a folder
    assert "is a file" in capsys.readouterr().err


def test_an_interrupted_collect_keeps_what_finished_and_resumes(server, tmp_path, monkeypatch):
    import transferlab.curate.collect as module

    urls = _lists(tmp_path / "urls", server, cat=[f"/photo/{n}.jpg" for n in range(10, 16)])
    out = tmp_path / "photos"
    real, kept = module._keep, []

    def interrupted(download, *args):
        if len(kept) == 3:
            raise KeyboardInterrupt
        kept.append(download.url)
        return real(download, *args)

    monkeypatch.setattr(module, "_keep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        collect(urls, out, FAST, quiet=True)
    monkeypatch.setattr(module, "_keep", real)
    assert len(list((out / "cat").glob("*.jpg"))) == 3 and len(_rows(out)) == 3
    assert not list(out.rglob("*.part"))
    result = collect(urls, out, FAST, quiet=True)
    assert result.already == 3 and result.saved == {"cat": 3} and len(list((out / "cat").glob("*.jpg"))) == 6


def test_addresses_are_sent_as_a_browser_sends_them():
    assert (
        encode_url("http://bücher.example/a b/ü.jpg?q=ä#top")
        == "http://xn--bcher-kva.example/a%20b/%C3%BC.jpg?q=%C3%A4"
    )  # IDNA host, UTF-8 path, no fragment
    assert encode_url("http://[::1]:8080/x%20y.jpg") == "http://[::1]:8080/x%20y.jpg"  # encoded stays encoded
    with pytest.raises(FetchFailed, match="not a valid address"):
        encode_url("http://example.com:99999/a.jpg")
