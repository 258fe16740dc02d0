"""`refinery serve`: the real server in a subprocess, asked over HTTP (urllib, http.client)
and driven in a real headless Chromium (selenium)."""

from __future__ import annotations

import http.client
import io
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import REPO, draw_picture
from refinery.errors import UnreadableImage

pytest.importorskip("fastapi", reason="serve needs the [serve] extra")
pytest.importorskip("uvicorn", reason="serve needs the [serve] extra")
pytest.importorskip("python_multipart", reason="serve needs the [serve] extra")

PICTURES = 12
QUERY = "pic_5.jpg"  # the query is a copy of it, from outside the indexed folder
LIMIT_MB = 1
# `strict_server`: create_app with short timeouts and a small limit, so that its byte budget
# (UPLOADS_AT_ONCE x (limit + FORM_OVERHEAD) = 4 x 80 KiB) fills with a few uploads.
IDLE_S, DEADLINE_S = 2, 5
SMALL_LIMIT = 64 * 1024
STRICT_SERVER = """
import sys, uvicorn
from refinery.retrieval.index import RetrievalIndex
from refinery.serve.app import create_app
index_dir, limit, idle, seconds, port = sys.argv[1:]
index = RetrievalIndex.load(index_dir, device="cpu")
index.embedder.load()
app = create_app([index], int(limit), upload_idle_seconds=float(idle), upload_seconds=float(seconds))
uvicorn.run(app, host="127.0.0.1", port=int(port), server_header=False)
"""
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Server:
    url: str
    port: int
    pid: int
    log: Path
    paths: list[str]  # the index's pictures, by row
    query: Path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PICTURES distinct small JPEGs, one in a sub-folder, and the query: a copy of QUERY kept
    outside the folder, so that the index holds it once and it must come first."""
    root = tmp_path_factory.mktemp("serve") / "pictures"
    (root / "sub").mkdir(parents=True)
    for i in range(PICTURES):
        draw_picture(i).save(root / ("sub" if i == PICTURES - 1 else "") / f"pic_{i}.jpg", quality=90)
    (root.parent / "query.jpg").write_bytes((root / QUERY).read_bytes())
    return root


@pytest.fixture(scope="module")
def index_dirs(pictures: Path) -> list[Path]:
    """The pictures' index, and a second, empty one (the page serves several): of a folder
    whose one picture cannot be read (a folder without pictures is refused)."""
    from refinery.config import Config
    from refinery.retrieval.index import build_index
    from refinery.runner.session import Embedder

    embedder = Embedder("default", device="cpu", threads=1)
    (pictures.parent / "empty").mkdir()
    (pictures.parent / "empty" / "broken.jpg").write_bytes(b"\xff\xd8 not a picture")
    outs = []
    for folder in (pictures, pictures.parent / "empty"):
        outs.append(folder.parent / f"{folder.name}.index")
        build_index(folder, Config(), embedder, with_sift=False).save(outs[-1])
    return outs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        with e:
            return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def raw_get(port: int, path: str, host: str | None = None) -> Reply:
    """GET `path` exactly as written: http.client does not remove dot segments, as a browser would."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def form(data: bytes | None, filename: str = "query.jpg", **fields: str) -> tuple[bytes, str]:
    """A search's body as a browser's FormData would send it, and its Content-Type; no file
    part when `data` is None (a search by words)."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    if data is not None:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def search(server: Server, data: bytes | None, filename: str = "query.jpg", **fields: str) -> Reply:
    """POST /api/search as a browser's FormData would: the file (if any) and the fields, multipart."""
    body, kind = form(data, filename, **fields)
    return fetch(server.url + "/api/search", body, {"Content-Type": kind})


@contextmanager
def running(argv: list[str], port: int, log: Path, paths: list[str], query: Path) -> Iterator[Server]:
    """The server `argv` starts, in its own process, once it answers on `port`; stopped after."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server stopped (exit code {proc.returncode}):\n{log.read_text()}")
            try:
                if fetch(url + "/").status == 200:
                    break
            except OSError:  # not listening yet
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not answer within 60 s:\n{log.read_text()}")
                time.sleep(0.1)
        yield Server(url, port, proc.pid, log, paths, query)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(index_dirs: list[Path], pictures: Path) -> Iterator[Server]:
    """`refinery serve` on a free port, in its own process; stopped when the module is done."""
    from refinery.retrieval.index import RetrievalIndex

    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "refinery",
        "serve",
        *map(str, index_dirs),
        "--port",
        str(port),
        "--device",
        "cpu",
        "--max-upload-mb",
        str(LIMIT_MB),
    ]
    with running(
        argv,
        port,
        pictures.parent / "server.log",
        RetrievalIndex.load(index_dirs[0], device="cpu").paths,
        pictures.parent / "query.jpg",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def strict_server(index_dirs: list[Path], pictures: Path, server: Server) -> Iterator[Server]:
    """create_app on the pictures' index with SMALL_LIMIT, IDLE_S and DEADLINE_S, under uvicorn in
    its own process."""
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        STRICT_SERVER,
        str(index_dirs[0]),
        str(SMALL_LIMIT),
        str(IDLE_S),
        str(DEADLINE_S),
        str(port),
    ]
    with running(argv, port, pictures.parent / "strict.log", server.paths, server.query) as strict:
        yield strict


@pytest.fixture(scope="module")
def clip_server(clip_model: Path, index_dirs: list[Path], pictures: Path) -> Iterator[Server]:
    """`refinery serve` on the pictures indexed with the tiny CLIP's image tower (index 0, which
    can be searched by words) and with the default model (index 1, which cannot)."""
    from refinery.config import Config
    from refinery.retrieval.index import RetrievalIndex, build_index
    from refinery.runner.session import Embedder

    out = pictures.parent / "clip.index"
    build_index(pictures, Config(), Embedder(clip_model, device="cpu", threads=1), with_sift=False).save(out)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "refinery",
        "serve",
        str(out),
        str(index_dirs[0]),
        "--port",
        str(port),
        "--device",
        "cpu",
    ]
    with running(
        argv,
        port,
        pictures.parent / "clip.log",
        RetrievalIndex.load(out, device="cpu").paths,
        pictures.parent / "query.jpg",
    ) as clip:
        yield clip


def stall(server: Server, body: bytes, kind: str, sent: int) -> socket.socket:
    """A client that sends a search's headers and the first `sent` bytes of its body, then
    nothing, and keeps the connection open."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(
        f"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:sent]
    )
    return sock


def answer(sock: socket.socket) -> Reply:
    """The answer the server sends on `sock` (within the socket's timeout); the socket is closed."""
    try:
        r = http.client.HTTPResponse(sock)
        r.begin()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        sock.close()


def post_chunked(server: Server, body: bytes, kind: str) -> Reply:
    """POST /api/search with no Content-Length: the body in chunks (Transfer-Encoding: chunked)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/api/search", body=iter([body[:10_000], body[10_000:]]), headers={"Content-Type": kind})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def test_the_page_is_served_whole_with_no_outside_assets(server: Server) -> None:
    reply = fetch(server.url + "/")
    page = reply.body.decode()
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    assert '<input type="file" name="file" accept="image/*" capture="environment"' in page
    assert "://" not in page  # no CDN, no external script, style, font or image: it works offline
    assert "default-src 'none'" in reply.headers["content-security-policy"]
    assert reply.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("method", ["embedding", "pixel-cosine"])
def test_a_picture_of_the_index_comes_first_with_its_thumbnail(server: Server, method: str) -> None:
    reply = search(
        server, server.query.read_bytes(), "camera shot.jpg", index="0", method=method, k="4", metric="cosine"
    )
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["query"] == "camera shot.jpg" and answer["model"] == "default.onnx" and answer["method"] == method
    results = answer["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4]
    assert set(results[0]) == {"rank", "score", "path", "url"}
    assert results[0]["path"] == QUERY and results[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for r in results:  # each URL names the row of its path, and serves a thumbnail of it
        assert r["url"] == f"/image/0/{server.paths.index(r['path'])}"
    thumb = fetch(server.url + results[0]["url"])
    assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.body)) as im:
        assert im.format == "JPEG" and max(im.size) <= 256


def test_a_picture_in_a_sub_folder_has_a_thumbnail(server: Server) -> None:
    reply = fetch(f"{server.url}/image/0/{server.paths.index(f'sub/pic_{PICTURES - 1}.jpg')}")
    assert reply.status == 200 and reply.body[:3] == b"\xff\xd8\xff"


def test_an_empty_index_answers_with_no_results(server: Server) -> None:
    reply = search(server, server.query.read_bytes(), index="1")
    assert reply.status == 200 and reply.json()["results"] == []
    assert raw_get(server.port, "/image/1/0").status == 404


def test_the_index_is_browsed_a_page_at_a_time(server: Server) -> None:
    reply = fetch(f"{server.url}/api/pictures?index=0&page=1")
    assert reply.status == 200
    answer = reply.json()
    assert (answer["page"], answer["pages"], answer["total"]) == (1, 1, PICTURES)
    assert [p["path"] for p in answer["pictures"]] == server.paths
    assert fetch(server.url + answer["pictures"][3]["url"]).body[:3] == b"\xff\xd8\xff"
    for query, says in (
        ("index=0&page=2", "page must be between 1 and 1"),
        ("index=7", "no index number 7"),
        ("index=0&page=x", "whole numbers"),
        ("index=-1", "no index number -1"),
    ):
        reply = fetch(f"{server.url}/api/pictures?{query}")
        assert reply.status == 400 and says in reply.json()["detail"], query


def test_an_upload_over_the_limit_gets_413_and_a_clear_message(server: Server) -> None:
    reply = search(server, os.urandom(LIMIT_MB * 1024 * 1024 + 200_000))
    assert reply.status == 413
    assert reply.json()["detail"] == f"the picture is larger than the upload limit of {LIMIT_MB} MB"
    assert search(server, server.query.read_bytes()).status == 200  # and the server goes on


def test_stalled_uploads_hold_up_no_other_search(strict_server: Server) -> None:
    """Six clients send a search's headers and half its body, then nothing, their connections
    open: another search is answered while they still wait, and each of them gets a 408 once
    no byte came for IDLE_S."""
    server, data = strict_server, strict_server.query.read_bytes()
    assert search(server, data).status == 200  # the first search may be slower
    body, kind = form(data)
    stalled = [stall(server, body, kind, len(body) // 2) for _ in range(6)]
    try:
        sent = time.monotonic()
        time.sleep(0.2)  # they are being read
        reply = search(server, data)
        took = time.monotonic() - sent
        assert reply.status == 200, reply.body
        assert not select.select(stalled, [], [], 0)[0], f"the search took {took:.1f} s: it waited for a stalled one"
        for sock in stalled:
            refused = answer(sock)
            assert refused.status == 408 and refused.json()["detail"] == f"the upload stalled: no data for {IDLE_S} s"
        assert IDLE_S * 0.9 < time.monotonic() - sent < 30
    finally:
        for sock in stalled:
            sock.close()


def test_an_upload_that_only_trickles_in_gets_408_at_the_deadline(strict_server: Server) -> None:
    """A byte every 0.5 s keeps the idle timeout away, not the deadline for the whole body."""
    body, kind = form(strict_server.query.read_bytes())
    sock = stall(strict_server, body, kind, 100)
    start = time.monotonic()
    for byte in range(100, len(body) - 1):  # never the last one: the body is never whole
        if select.select([sock], [], [], 0.5)[0] or time.monotonic() - start > 30:
            break  # answered
        sock.sendall(body[byte : byte + 1])
    reply = answer(sock)
    assert reply.status == 408 and reply.json()["detail"] == f"the upload took longer than {DEADLINE_S} s"
    assert DEADLINE_S * 0.9 < time.monotonic() - start < 30


@pytest.mark.parametrize("chunked", [False, True], ids=["declared-length", "chunked"])
def test_uploads_past_the_byte_budget_get_503_at_once(strict_server: Server, chunked: bool) -> None:
    """Five stalled uploads that sent 60 KiB each hold 300 of the 320 KiB budget: a 40 KB search
    is refused at once - on its headers when it declares its length, as it passes the budget
    when it is sent chunked - and searches work again once the stalled ones are gone."""
    server = strict_server
    body, kind = form(os.urandom(62 * 1024))
    stalled = [stall(server, body, kind, 60 * 1024) for _ in range(5)]
    try:
        probe, probe_kind = form(os.urandom(40_000))
        start = time.monotonic()
        while True:  # until the server has read what the stalled ones sent
            reply = (
                post_chunked(server, probe, probe_kind)
                if chunked
                else fetch(server.url + "/api/search", probe, {"Content-Type": probe_kind})
            )
            if reply.status == 503 or time.monotonic() - start > IDLE_S / 2:
                break
            time.sleep(0.05)
        assert reply.status == 503, reply.body
        assert reply.json()["detail"] == "the server is busy with other uploads; try again"
        assert time.monotonic() - start < IDLE_S  # not queued behind the stalled ones
        assert [answer(sock).status for sock in stalled] == [408] * 5
        assert search(server, server.query.read_bytes()).status == 200  # their bytes were given back
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize(
    ("data", "fields", "detail"),
    [
        (b"not a picture at all", {}, "not an image Pillow can read"),
        (b"\xff\xd8\xff\xe0 a broken JPEG", {}, "cannot decode"),
        (None, {"method": "magic"}, "unknown method 'magic'; this index has embedding, pixel-l1"),
        (None, {"k": "0"}, "k must be between 1 and 100"),
        (None, {"index": "3"}, "no index number 3; there are 2"),
        (None, {"metric": "manhattan"}, "metric must be cosine or l2"),
    ],
)
def test_a_bad_request_gets_400_and_a_one_line_reason(
    server: Server, data: bytes | None, fields: dict[str, str], detail: str
) -> None:
    reply = search(server, server.query.read_bytes() if data is None else data, **fields)
    assert reply.status == 400
    assert reply.json()["detail"].startswith(detail) and "\n" not in reply.json()["detail"]


def declared_png(width: int, height: int) -> bytes:
    """A black 1-bit PNG of width x height pixels: a few KB however many pixels it declares."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # the filter byte, then the row's bits
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def long_thin_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("L", (65500, 256), 128).save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "size"),
    [
        (lambda: declared_png(119_000_000, 1), "119000000x1 pixels, too long and thin to reduce: 119 Mpx"),
        (long_thin_jpeg, "65500x256 pixels, too long and thin to reduce: 16.8 Mpx"),
    ],
    ids=["png-119000000x1", "jpeg-65500x256"],
)
def test_a_picture_too_long_and_thin_to_reduce_is_refused_from_its_header(server: Server, make: Any, size: str) -> None:
    """A 14.5 KB PNG of 119,000,000 x 1 pixels is under the 120 Mpx limit, but no side can be
    halved: it took 9 s to search, holding every other search up."""
    data = make()
    start = time.monotonic()
    reply = search(server, data, "thin.png")
    took = time.monotonic() - start
    assert reply.status == 400, reply.body
    assert reply.json()["detail"] == f"declares {size} to work on, over the limit of 16 Mpx for a query; not decoded"
    assert took < 1, f"{took:.1f} s: it was decoded"


def test_a_search_is_not_held_up_by_four_pictures_too_thin_to_reduce(server: Server) -> None:
    thin, data = declared_png(119_000_000, 1), server.query.read_bytes()
    assert search(server, data).status == 200
    with ThreadPoolExecutor(4) as pool:
        refused = [pool.submit(search, server, thin, "thin.png") for _ in range(4)]
        time.sleep(0.2)  # sent first: each held the search lock for seconds
        start = time.monotonic()
        reply = search(server, data)
        took = time.monotonic() - start
        assert [r.result().status for r in refused] == [400] * 4
    assert reply.status == 200 and took < 3, f"the search took {took:.1f} s"


WORDS = "a red circle on a blue background"


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_words_find_pictures_on_a_clip_index(clip_server: Server, metric: str) -> None:
    reply = search(clip_server, None, text=f"  {WORDS} ", index="0", k="5", metric=metric)
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["query"] == WORDS and answer["model"] == "tiny.onnx" and answer["method"] == "embedding"
    assert answer["metric"] == metric and answer["closer"] == ("higher" if metric == "cosine" else "lower")
    results = answer["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=metric == "cosine")  # cosine: higher is closer; l2: lower
    assert len({r["path"] for r in results}) == 5
    for r in results:
        assert r["url"] == f"/image/0/{clip_server.paths.index(r['path'])}"
    assert fetch(clip_server.url + results[0]["url"]).status == 200
    # The same words, again: the same answer.
    assert search(clip_server, None, text=WORDS, index="0", k="5", metric=metric).json() == answer


def test_words_rank_as_cosine_and_l2_agree(clip_server: Server) -> None:
    """On unit vectors squared L2 is 2 - 2 cos: the same pictures, in the same order."""
    by = {
        metric: search(clip_server, None, text=WORDS, index="0", k=str(PICTURES), metric=metric).json()["results"]
        for metric in ("cosine", "l2")
    }
    assert [r["path"] for r in by["cosine"]] == [r["path"] for r in by["l2"]]
    for cos, l2 in zip(by["cosine"], by["l2"], strict=True):
        assert l2["score"] == pytest.approx(2 - 2 * cos["score"], abs=1e-4)


def test_words_as_a_browser_sends_them_with_an_empty_file_part(clip_server: Server) -> None:
    """A page's FormData sends the file input with no file chosen as an empty part."""
    reply = search(clip_server, b"", "", text=WORDS, index="0", k="3")
    assert reply.status == 200, reply.body
    assert len(reply.json()["results"]) == 3


@pytest.mark.parametrize("index", ["0", "1"], ids=["pictures", "empty"])
def test_words_on_an_index_with_no_text_tower_get_400_naming_the_model(server: Server, index: str) -> None:
    reply = search(server, None, text=WORDS, index=index)
    assert reply.status == 400
    detail = reply.json()["detail"]
    assert detail.startswith("default.onnx") and "has no text tower" in detail and "\n" not in detail


@pytest.mark.parametrize(
    ("data", "fields", "detail"),
    [
        ("query", {"text": WORDS}, "send a picture (form field 'file') or words (form field 'text'), not both"),
        (None, {}, "no picture (form field 'file') and no words (form field 'text') in the request"),
        (b"", {"text": "   "}, "no picture (form field 'file') and no words (form field 'text') in the request"),
        (None, {"text": WORDS, "method": "pixel-l1"}, "words search by embedding only, not 'pixel-l1'"),
        (None, {"text": "x" * 1001}, "the words (form field 'text') are longer than 1000 bytes"),
        (
            None,
            {"text": "é" * 501},
            "the words (form field 'text') are longer than 1000 bytes",
        ),  # bytes, not characters
    ],
)
def test_a_bad_search_by_words_gets_400(
    clip_server: Server, data: bytes | str | None, fields: dict[str, str], detail: str
) -> None:
    picture = clip_server.query.read_bytes() if data == "query" else data
    assert not isinstance(picture, str)
    reply = search(clip_server, picture, index="0", **fields)
    assert reply.status == 400, reply.body
    assert reply.json()["detail"] == detail


def test_words_of_1000_bytes_are_searched(clip_server: Server) -> None:
    reply = search(clip_server, None, text="é" * 500, index="0", k="2")  # 1000 bytes in UTF-8
    assert reply.status == 200, reply.body
    assert reply.json()["query"] == "é" * 500


def test_the_page_offers_words_only_on_a_clip_index(server: Server, clip_server: Server) -> None:
    for page in (fetch(server.url + "/").body.decode(), fetch(clip_server.url + "/").body.decode()):
        assert '<input type="search" name="text" placeholder="search by words" maxlength="1000"' in page
        assert "this index's model has no text tower (not CLIP)" in page
        assert "://" not in page
    assert 'data-text="true"' not in fetch(server.url + "/").body.decode()
    options = fetch(clip_server.url + "/").body.decode().split("<option ")
    assert [o for o in options if 'data-text="true"' in o][0].startswith('value="0"')
    assert [o for o in options if 'data-text="false"' in o][0].startswith('value="1"')


def test_a_text_tower_gone_from_beside_its_model_gets_500_and_its_path_stays_on_the_server(
    clip_model: Path, pictures: Path, tmp_path: Path
) -> None:
    """The image tower copied without its text tower: the index is searchable by words by its
    model's spec, and the words search fails on the server, which logs why."""
    import shutil

    from refinery.config import Config
    from refinery.retrieval.index import RetrievalIndex, build_index
    from refinery.runner.session import Embedder

    alone = tmp_path / "alone"
    alone.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(clip_model.with_suffix(suffix), alone / clip_model.with_suffix(suffix).name)
    out = tmp_path / "alone.index"
    build_index(pictures, Config(), Embedder(alone / clip_model.name, device="cpu", threads=1), with_sift=False).save(
        out
    )
    port = free_port()
    argv = [sys.executable, "-m", "refinery", "serve", str(out), "--port", str(port), "--device", "cpu"]
    with running(
        argv, port, tmp_path / "alone.log", RetrievalIndex.load(out, device="cpu").paths, pictures.parent / "query.jpg"
    ) as alone_server:
        assert 'data-text="true"' in fetch(alone_server.url + "/").body.decode()
        reply = search(alone_server, None, text=WORDS)
        assert reply.status == 500
        assert reply.json()["detail"] == "the search failed on the server; its log says why"
        assert search(alone_server, alone_server.query.read_bytes()).status == 200  # pictures still work
    assert "the text tower of tiny.onnx is not beside it" in (tmp_path / "alone.log").read_text()


def test_a_search_by_words_loads_no_torch(clip_server: Server) -> None:
    maps = Path(f"/proc/{clip_server.pid}/maps")
    if not maps.exists():
        pytest.skip("needs /proc (Linux) to see the server's loaded libraries")
    assert search(clip_server, None, text=WORDS, index="0").status == 200  # the text tower is open now
    loaded = maps.read_text()
    assert "onnxruntime" in loaded and "torch" not in loaded


@pytest.mark.parametrize(
    "path",
    [
        "/image/0/../../etc/passwd",
        "/image/0/%2e%2e/%2e%2e/etc/passwd",
        "/image/%2e%2e/0",
        "/image/0/999999",
        "/image/5/0",
        "/image/0/-1",
        "/image/0/1/../../../../../../etc/passwd",
        "/../../../../etc/passwd",
        "/image/0/pic_5.jpg",
        "/image/0/%2fetc%2fpasswd",
    ],
)
def test_nothing_outside_the_index_can_be_read(server: Server, path: str) -> None:
    reply = raw_get(server.port, path)
    assert reply.status in (404, 422), reply.body
    assert reply.headers["content-type"] == "application/json" and b"root:" not in reply.body


def test_a_path_that_leaves_the_folder_is_never_shown(tmp_path: Path) -> None:
    """An edited index.json, or a link in the folder to a picture elsewhere."""
    from refinery.serve.search import thumbnail_jpeg

    root = tmp_path / "root"
    root.mkdir()
    draw_picture(1).save(tmp_path / "elsewhere.jpg")
    (root / "link.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    for rel in ("../elsewhere.jpg", "link.jpg", str(tmp_path / "elsewhere.jpg")):
        with pytest.raises(UnreadableImage, match="outside the indexed folder"):
            thumbnail_jpeg(root, rel)


def test_it_listens_on_loopback_only_and_answers_only_local_names(server: Server) -> None:
    assert f"Uvicorn running on http://127.0.0.1:{server.port}" in server.log.read_text()
    if sys.platform.startswith("linux"):  # all of 127/8 is this machine; the server is on .1 only
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", server.port), 5):
            pass
    # A page whose name was rebound to 127.0.0.1 (DNS rebinding) sends its own name.
    assert raw_get(server.port, "/", host="attacker.example").status == 400
    assert raw_get(server.port, "/", host=f"localhost:{server.port}").status == 200


def test_the_server_never_loads_torch(server: Server) -> None:
    maps = Path(f"/proc/{server.pid}/maps")
    if not maps.exists():
        pytest.skip("needs /proc (Linux) to see the server's loaded libraries")
    assert search(server, server.query.read_bytes()).status == 200
    loaded = maps.read_text()
    assert "onnxruntime" in loaded and "torch" not in loaded


def test_importing_serve_loads_no_web_framework() -> None:
    """`refinery --help` imports serve_command: it must stay instant, and work without the extra."""
    code = (
        "import sys, refinery.serve.app; heavy = {'fastapi', 'uvicorn', 'starlette', 'asyncio', 'faiss', "
        "'onnxruntime', 'torch'} & set(sys.modules); assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_folder_that_is_not_an_index_fails_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "refinery", "serve", str(tmp_path), "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ") and "not a refinery index" in proc.stderr


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven through its chromedriver."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"no {' or '.join(missing)}: install Debian's chromium and chromium-driver "
            "(tests/run.sh does, when it runs as root)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Root in a container: no sandbox; /dev/shm may be tiny; there is no GPU to use.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def test_a_person_searches_in_a_browser(server: Server, browser: Any, tmp_path: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(server.url + "/")
    find = driver.find_element
    methods = [o.text for o in find(By.NAME, "method").find_elements(By.TAG_NAME, "option")]
    assert methods == ["embedding", "pixel-l1", "pixel-l2", "pixel-cosine", "pixel-pearson"]
    find(By.NAME, "k").clear()
    find(By.NAME, "k").send_keys("3")
    find(By.NAME, "file").send_keys(str(server.query))
    find(By.NAME, "go").click()
    wait = WebDriverWait(driver, 30)
    hits = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid figure.hit"))
    assert len(hits) == 3
    assert hits[0].find_element(By.CLASS_NAME, "path").text == QUERY
    assert hits[0].find_element(By.CLASS_NAME, "rank").text == "#1"
    assert find(By.CSS_SELECTOR, "#grid figure.query .path").text == "query.jpg"
    # Every thumbnail, and the query shown from the browser's own copy, really loaded.
    wait.until(
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
        )
    )
    shot = tmp_path / "serve.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
    status = find(By.ID, "status").text
    assert status.endswith("each score is a similarity: higher is closer. Click a picture for more like it.")

    # More like a result: clicking it searches by it (its own thumbnail as the query).
    third = hits[2].find_element(By.CLASS_NAME, "path").text
    hits[2].click()
    settled = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))  # the grid is redrawn
    settled.until(lambda d: d.find_element(By.CSS_SELECTOR, "#grid figure.query .label").text == "more like")
    assert find(By.CSS_SELECTOR, "#grid figure.query .path").text == third
    assert find(By.CSS_SELECTOR, "#grid figure.hit .path").text == third  # itself, first
    assert driver.save_screenshot(str(tmp_path / "more-like.png"))

    # The index page by page, every picture clickable too.
    find(By.NAME, "browse").click()
    settled.until(lambda d: d.find_element(By.ID, "page").text == "page 1 of 1")
    shown = find(By.ID, "grid").find_elements(By.CSS_SELECTOR, "figure.clickable")
    assert driver.save_screenshot(str(tmp_path / "browse.png"))
    assert [f.find_element(By.CLASS_NAME, "path").text for f in shown] == server.paths[:48]
    assert find(By.ID, "page").text == "page 1 of 1" and find(By.ID, "status").text.startswith(f"{PICTURES} pictures")

    big = tmp_path / "big.jpg"  # refused by the page itself, before any upload
    big.write_bytes(os.urandom(LIMIT_MB * 1024 * 1024 + 1))
    find(By.NAME, "file").send_keys(str(big))
    find(By.NAME, "go").click()
    assert "larger than the upload limit of 1 MB" in find(By.ID, "status").text
    assert not find(By.ID, "grid").find_elements(By.TAG_NAME, "figure")  # no results under an error
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems  # no script error, no Content-Security-Policy violation, no failed load


def test_a_person_searches_by_words_in_a_browser(clip_server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    driver.get(clip_server.url + "/")
    find = driver.find_element
    box, hint = find(By.NAME, "text"), find(By.ID, "text-hint")
    assert box.is_enabled() and not hint.is_displayed()
    find(By.NAME, "k").clear()
    find(By.NAME, "k").send_keys("3")
    box.send_keys(WORDS, Keys.ENTER)
    wait = WebDriverWait(driver, 30)
    hits = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid figure.hit"))
    assert len(hits) == 3 and hits[0].find_element(By.CLASS_NAME, "rank").text == "#1"
    assert find(By.CSS_SELECTOR, "#grid figure.query .words").text == WORDS
    assert not find(By.CSS_SELECTOR, "#grid figure.query").find_elements(By.TAG_NAME, "img")  # words, no picture
    status = (
        "3 results from tiny.onnx, embedding (cosine); each score is a similarity: higher is closer. "
        "Click a picture for more like it."
    )
    assert find(By.ID, "status").text == status
    wait.until(
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
        )
    )

    # The query is whichever was given last: a picture empties the box, words drop the picture.
    find(By.NAME, "file").send_keys(str(clip_server.query))
    assert box.get_attribute("value") == ""
    box.send_keys("a cat")
    assert find(By.NAME, "file").get_attribute("value") == ""
    method = find(By.NAME, "method")  # words search by embedding only
    assert not method.is_enabled() and Select(method).first_selected_option.text == "embedding"

    Select(find(By.NAME, "index")).select_by_value("1")  # the default model: no text tower
    assert not box.is_enabled() and hint.is_displayed()
    find(By.NAME, "go").click()
    assert find(By.ID, "status").text == "Choose or take a picture first."
    assert not find(By.ID, "grid").find_elements(By.TAG_NAME, "figure")  # the old results went with the error
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems  # no script error, no Content-Security-Policy violation, no failed load


@pytest.mark.parametrize(
    ("host", "names"),
    [
        ("127.0.0.1", ["127.0.0.1", "localhost"]),
        ("localhost", ["127.0.0.1", "localhost"]),
        ("127.0.0.2", ["127.0.0.1", "127.0.0.2", "localhost"]),
        ("0.0.0.0", ["*"]),
        ("192.168.1.5", ["*"]),
    ],
)
def test_on_loopback_only_this_machines_names_are_answered(host: str, names: list[str]) -> None:
    from refinery.serve.app import hosts_to_answer

    assert hosts_to_answer(host) == names
