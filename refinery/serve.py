"""`refinery serve`: a small web page to try image retrieval on one or more indexes.

The page (plain HTML and a little JavaScript, no external assets, so it works offline) lets
one choose an index (one per model), a method and k, upload a picture - or take one with a
phone's camera - or, on an index whose model is a CLIP (it has a text tower), type words, and
see the best matches as thumbnails with rank, score and path.

    GET  /                        the page
    POST /api/search              multipart: file (a picture) or text (words, method embedding
                                  only), index, method, k, metric -> JSON
    GET  /image/{index}/{row}     a JPEG thumbnail of the picture at that row of that index

Security rules, and why:
- Pictures are addressed by (index, row), never by a path from the request, and a row's
  path must resolve inside its index's folder: nothing else on the machine can be read.
- Uploads are read in chunks and refused (413) as soon as they pass the limit; they stay
  in memory and are never written to disk (Starlette's own form parser spools large files
  to a temporary file, so the multipart body is parsed here).
- A slow or stalled client costs its own request only: nothing that other requests wait on
  (a lock, a count of uploads in flight) is held while a body is read. A body must keep
  coming (no byte for UPLOAD_IDLE_SECONDS: 408) and end in time (UPLOAD_SECONDS: 408), and
  memory is bounded by a byte budget shared by all requests, taken as bytes arrive: one that
  would pass it is refused at once (503), never queued, and a stalled client holds only the
  bytes it sent. The search lock is held around the search alone.
- Bound to 127.0.0.1 by default, and then only Host headers naming this machine are
  answered, so a web page in the user's browser cannot reach the index by DNS rebinding.

fastapi, uvicorn and python-multipart are the [serve] extra: they are imported inside the
functions that need them, so `refinery --help` neither needs nor loads them.
"""

from __future__ import annotations

import html
import io
import ipaddress
import logging
import threading
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refinery.errors import BadUpload, ModelError, NoFace, NoTextTower, UnreadableImage
from refinery.pages import asset, csp_hash, render

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable

    from fastapi import FastAPI, Request
    from starlette.responses import Response

    from refinery.retrieval.index import Hit, RetrievalIndex
    from refinery.spec import ModelSpec

log = logging.getLogger(__name__)

MB = 1024 * 1024
MAX_UPLOAD_BYTES = 20 * MB  # a phone camera's JPEG is 2-8 MB; a RAW file is not a query
THUMB = 256  # longest side of the thumbnails, in pixels
MAX_K = 100
# A search resizes, measures and embeds what is left of a query picture once decode has reduced it
# (halving each side up to three times, while both stay large enough for the model): a 12000 x 9000
# photo leaves 1.7 Mpx. Only a picture too long and thin to halve leaves more: a PNG of 14.5 KB
# declaring 119,000,000 x 1 pixels, under the limit of 120 Mpx, kept all of them and took 9 s,
# holding up every search behind it. The most this lets through (40,000 x 400) takes 0.5 s.
MAX_QUERY_PIXELS = 16_000_000
# Request bodies in memory, all requests together, are kept under this many of the largest
# (the byte budget): with the search itself one at a time, a few are enough to keep the page
# responsive. A budget of bytes, not a count of uploads: a count is a queue, and four clients
# that stop sending would hold it, and every search behind it, for as long as they liked.
UPLOADS_AT_ONCE = 4
# A body that stops coming for this long is refused (408): a phone on a weak network still
# sends something every few seconds, and this is how long a stalled client holds its bytes.
UPLOAD_IDLE_SECONDS = 10
# The whole body must come within this long (408), so a trickle of a byte every few seconds
# cannot hold its bytes of the budget forever: 20 MB over a 2 Mbit/s uplink takes 80 s.
UPLOAD_SECONDS = 120
# The multipart body around the picture: boundaries, part headers, the four small fields and
# the words (MAX_TEXT_BYTES).
FORM_OVERHEAD = 16 * 1024
MAX_FIELD_BYTES = 256
# Words to search by: a CLIP text tower reads 77 tokens (about 300 characters of English; the
# tokenizer cuts the rest), so 1000 bytes is room for any query in any script (2 or 3 bytes a
# character in UTF-8 outside Latin), and anything longer is a paste, not a query.
MAX_TEXT_BYTES = 1000
MAX_PARTS = 8
# After a 413, the rest of the body is read and dropped (up to this much, for up to this
# long) before answering: a client that sends the whole body before reading the answer
# (urllib, requests) would otherwise see a reset connection, not the 413.
DRAIN_BYTES = 256 * MB
DRAIN_SECONDS = 30
NEEDS_EXTRA = "serve needs the [serve] extra: pip install 'refinery[serve]'"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]
FIELDS = {"index": "0", "method": "embedding", "k": "10", "metric": "cosine"}


def too_large(limit: int, unread: bool = False) -> BadUpload:
    return BadUpload(f"the picture is larger than the upload limit of {limit / MB:g} MB", 413, unread)


def busy(unread: bool = False) -> BadUpload:
    return BadUpload("the server is busy with other uploads; try again", 503, unread)


@dataclass
class ByteBudget:
    """Bytes of request bodies that all requests together may hold in memory.

    Not a queue: a request that would pass `total` is refused at once (BadUpload 503), so no
    request ever waits on another one's client. Used from the event loop only (never from the
    thread pool), so it needs no lock.
    """

    total: int
    held: int = 0

    def claim(self) -> Claim:
        return Claim(self)


@dataclass
class Claim:
    """One request's share of a ByteBudget, taken as its body arrives; `release` returns it."""

    budget: ByteBudget
    held: int = 0

    def fits(self, size: int) -> bool:
        return self.budget.held + size <= self.budget.total

    def take(self, size: int) -> None:
        if not self.fits(size):
            raise busy()
        self.budget.held += size
        self.held += size

    def release(self) -> None:
        """Give back all this request holds; again is harmless."""
        self.budget.held -= self.held
        self.held = 0


@dataclass
class Upload:
    """One search request, parsed in memory: a picture (`name`, `data`) or words (`text`)."""

    name: str
    data: bytes
    fields: dict[str, str]
    text: str | None = None

    @property
    def query(self) -> str:
        """What the answer calls the query: the picture's file name, or the words."""
        return self.name if self.text is None else self.text


@dataclass
class Served:
    """An index as the app serves it: its pictures' rows by path, for the result URLs."""

    index: RetrievalIndex
    rows: dict[str, int]
    label: str

    @classmethod
    def of(cls, index: RetrievalIndex) -> Served:
        label = f"{index.meta['model']['name']} - {index.root.name} ({len(index.paths)} pictures)"
        return cls(index, {path: row for row, path in enumerate(index.paths)}, label)


@dataclass
class _FormReader:
    """python-multipart callbacks that keep every part in memory, within the limits."""

    limit: int
    parts: list[tuple[dict[bytes, bytes], bytearray]] = field(default_factory=list)
    _header: tuple[bytes, bytes] = (b"", b"")

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._begin, "on_header_field": self._name, "on_header_value": self._value,
                "on_header_end": self._header_end, "on_part_data": self._data}

    def _begin(self) -> None:
        if len(self.parts) == MAX_PARTS:
            raise BadUpload(f"more than {MAX_PARTS} form fields")
        self.parts.append(({}, bytearray()))

    def _name(self, data: bytes, start: int, end: int) -> None:
        self._header = (self._header[0] + data[start:end], self._header[1])

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header = (self._header[0], self._header[1] + data[start:end])

    def _header_end(self) -> None:
        headers, _ = self.parts[-1]
        headers[self._header[0].lower()] = self._header[1]
        self._header = (b"", b"")

    def _data(self, data: bytes, start: int, end: int) -> None:
        _, body = self.parts[-1]
        body += data[start:end]
        if len(body) > self.limit:
            raise too_large(self.limit)

    def upload(self) -> Upload:
        from python_multipart.multipart import parse_options_header

        name, data, fields, text = "", b"", {}, ""
        for headers, body in self.parts:
            _, options = parse_options_header(headers.get(b"content-disposition", b""))
            key = options.get(b"name", b"").decode("utf-8", "replace")
            if b"filename" in options:
                if key != "file" or data:
                    raise BadUpload("send exactly one picture, as the form field 'file'")
                name, data = options[b"filename"].decode("utf-8", "replace")[-200:], bytes(body)
            elif key == "text":
                if len(body) > MAX_TEXT_BYTES:
                    raise BadUpload(f"the words (form field 'text') are longer than {MAX_TEXT_BYTES} bytes")
                text = body.decode("utf-8", "replace").strip()
            elif key in FIELDS:
                if len(body) > MAX_FIELD_BYTES:
                    raise BadUpload(f"the form field {key!r} is longer than {MAX_FIELD_BYTES} bytes")
                fields[key] = body.decode("utf-8", "replace").strip()
        # A browser's FormData sends the file input with no file as an empty part, and the text
        # box with no words as an empty field: neither counts as given.
        if data and text:
            raise BadUpload("send a picture (form field 'file') or words (form field 'text'), not both")
        if text:
            return Upload("", b"", fields, text)
        if not data:
            raise BadUpload("no picture (form field 'file') and no words (form field 'text') in the request")
        return Upload(name or "upload", data, fields)


async def body_chunks(stream: AsyncIterator[bytes], idle_seconds: float, seconds: float) -> AsyncGenerator[bytes]:
    """What is left of a request's body (`stream`: its `request.stream()`), chunk by chunk as
    it arrives; BadUpload (408) when no byte comes for `idle_seconds`, or this takes longer
    than `seconds`. `stream` is left open: a refused body's drain goes on where the form's
    reader stopped (a second `request.stream()` would fail once the last chunk was read)."""
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        left = end - loop.time()
        try:
            # anext(..., None): no StopAsyncIteration crosses wait_for's task.
            chunk = await asyncio.wait_for(anext(stream, None), max(0.0, min(idle_seconds, left)))
        except asyncio.TimeoutError:
            if left <= idle_seconds:
                raise BadUpload(f"the upload took longer than {seconds:g} s", 408) from None
            raise BadUpload(f"the upload stalled: no data for {idle_seconds:g} s", 408) from None
        if chunk is None:
            return
        yield chunk


async def read_upload(request: Request, body: AsyncGenerator[bytes], limit: int, claim: Claim) -> Upload:
    """The picture and fields of a multipart request, read from `body` (its body_chunks) and
    refused as soon as the picture (or the whole body) is larger than it may be (413), would
    pass the byte budget (503), or stops coming (408); the bytes read are taken from `claim`."""
    from python_multipart import MultipartParser
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise BadUpload("send the picture as multipart/form-data")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise too_large(limit, unread=True)  # refused before keeping a byte of it
    if declared.isdigit() and not claim.fits(int(declared)):
        # Refused before the client sends it. Not reserved: a client that declares a length and
        # then stalls holds no more than it sent. A chunked body is checked as it arrives.
        raise busy(unread=True)
    reader = _FormReader(limit)
    parser = MultipartParser(options[b"boundary"], reader.callbacks())  # type: ignore[arg-type]
    read = 0
    try:
        async with aclosing(body) as chunks:
            async for chunk in chunks:
                read += len(chunk)
                if read > limit + FORM_OVERHEAD:
                    raise too_large(limit)
                claim.take(len(chunk))  # what the parser keeps of it
                parser.write(chunk)
        parser.finalize()
    except FormParserError as e:
        raise BadUpload(f"not a well-formed multipart form: {e}") from None
    return reader.upload()


async def drain(request: Request, refused: BadUpload, rest: AsyncGenerator[bytes]) -> None:
    """Read and drop what is left of a refused body (`rest`: its body_chunks, within
    DRAIN_SECONDS), up to DRAIN_BYTES. It holds no memory, so no share of the budget.

    Nothing to read when the client asked `Expect: 100-continue` and was refused on its
    headers: it has not sent the body, and will not.
    """
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length", "")
    if (declared.isdigit() and int(declared) > DRAIN_BYTES) or (
            refused.unread and request.headers.get("expect", "").lower() == "100-continue"):
        return
    read = 0
    try:
        async with aclosing(rest) as chunks:
            async for chunk in chunks:
                read += len(chunk)
                if read > DRAIN_BYTES:
                    return
    except (BadUpload, ClientDisconnect):
        pass


def choose(upload: Upload, served: list[Served]) -> tuple[int, str, int, str]:
    """(index number, method, k, metric) from the form, or BadUpload saying what is wrong."""
    fields = {**FIELDS, **upload.fields}
    try:
        number, k = int(fields["index"]), int(fields["k"])
    except ValueError:
        raise BadUpload("index and k must be whole numbers") from None
    if not 0 <= number < len(served):
        raise BadUpload(f"no index number {number}; there are {len(served)}")
    if not 1 <= k <= MAX_K:
        raise BadUpload(f"k must be between 1 and {MAX_K}")
    methods = served[number].index.gallery.methods()
    if upload.text is not None and fields["method"] != "embedding":
        raise BadUpload(f"words search by embedding only, not {fields['method']!r}")
    if fields["method"] not in methods:
        raise BadUpload(f"unknown method {fields['method']!r}; this index has {', '.join(methods)}")
    if fields["metric"] not in ("cosine", "l2"):
        raise BadUpload("metric must be cosine or l2")
    return number, fields["method"], k, fields["metric"]


def check_header(data: bytes, name: str, spec: ModelSpec) -> None:
    """Refuse (UnreadableImage) from its header alone, before a pixel is decoded, a query picture
    over the pixel limit, or one that would leave more than MAX_QUERY_PIXELS for a search on a
    model of `spec` once reduced. A header Pillow cannot read is left to the search, which says why.
    """
    from PIL import Image

    from refinery.io.images import check_pixels, reduction, stage_minimums  # before Pillow opens anything

    try:
        with Image.open(io.BytesIO(data)) as im:  # the header only
            width, height = im.size
    except (OSError, SyntaxError, ValueError, EOFError):
        return
    check_pixels(width, height, name)
    left = width * height // reduction(width, height, *stage_minimums(spec)) ** 2
    if left > MAX_QUERY_PIXELS:
        raise UnreadableImage(name, f"declares {width}x{height} pixels, too long and thin to reduce: "
                                    f"{left / 1e6:.3g} Mpx to work on, over the limit of "
                                    f"{MAX_QUERY_PIXELS / 1e6:.0f} Mpx for a query; not decoded")


def thumbnail_jpeg(root: Path, rel: str) -> bytes:
    """A JPEG of the picture at `root/rel`, longest side THUMB; only inside `root`.

    Raises:
        UnreadableImage: the file is gone, unreadable, or (a link, an edited index.json)
            outside `root`.
    """
    from PIL import Image

    from refinery.io.images import decode, read_bytes

    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base):
        raise UnreadableImage(rel, "outside the indexed folder")
    image = decode(read_bytes(path), rel, min_long=THUMB).image
    image.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


class _Searcher:
    """One search on one of the served indexes, at a time: the embedder's session and the SIFT
    gallery open lazily, and a page for trying things out gains nothing from searching in parallel."""

    def __init__(self, served: list[Served]):
        self.served, self.lock = served, threading.Lock()

    def __call__(self, number: int, upload: Upload, method: str, k: int, metric: str) -> list[Hit]:
        index = self.served[number].index
        if not index.paths and (upload.text is None or index.searchable_by_text):
            return []  # FAISS refuses to search for 0 neighbours, which is all an empty index has
        if upload.text is None:
            check_header(upload.data, upload.name, index.embedder.spec)  # before the lock: it reads a header
        with self.lock:
            if upload.text is not None:  # NoTextTower at once, opening nothing, on a model with none
                return index.search_text(upload.text, k, metric)
            return index.search(upload.data, upload.name, k, method, metric)


def _image_route(served: list[Served]) -> Callable[[Request], Response]:
    """GET /image/N/ROW: a thumbnail of picture ROW of index N (404 for any other)."""
    from starlette.exceptions import HTTPException
    from starlette.responses import Response

    def image(request: Request) -> Response:
        number, row = request.path_params["index_no"], request.path_params["row"]
        if not (number < len(served) and row < len(served[number].index.paths)):
            raise HTTPException(404, "no such picture")
        index = served[number].index
        try:
            jpeg = thumbnail_jpeg(index.root, index.paths[row])
        except UnreadableImage as e:
            raise HTTPException(404, f"picture {row} cannot be shown: {e.reason}") from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    return image


def _answer(served: list[Served], number: int, upload: Upload, method: str, metric: str,
            hits: list[Hit]) -> dict[str, Any]:
    """A search's JSON answer: what was asked, and each hit with the URL of its thumbnail."""
    rows = served[number].rows
    return {"query": upload.query, "index": number, "model": served[number].index.meta["model"]["name"],
            "method": method, "metric": metric,
            "results": [{"rank": h.rank, "score": h.score, "path": h.path, "url": f"/image/{number}/{rows[h.path]}"}
                        for h in hits]}


async def _security_headers(request: Request, call_next: Any) -> Response:
    response = await call_next(request)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def create_app(indexes: list[RetrievalIndex], max_upload_bytes: int = MAX_UPLOAD_BYTES,
               allowed_hosts: list[str] | None = None, *, upload_idle_seconds: float = UPLOAD_IDLE_SECONDS,
               upload_seconds: float = UPLOAD_SECONDS) -> FastAPI:
    """The web app over `indexes` (one per model). `allowed_hosts`: the Host names answered
    (default: this machine's loopback names; ["*"] for any). `upload_idle_seconds`,
    `upload_seconds`: how long a body may stop coming, and take in all, before a 408."""
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import ClientDisconnect
    from starlette.responses import HTMLResponse, JSONResponse, Response

    served = [Served.of(index) for index in indexes]
    page = render_page(served, max_upload_bytes)
    search_one = _Searcher(served)
    budget = ByteBudget(UPLOADS_AT_ONCE * (max_upload_bytes + FORM_OVERHEAD))

    async def index_page(request: Request) -> Response:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    async def search(request: Request) -> Response:
        # The body is read holding nothing other requests wait on: only its own bytes of the
        # budget, given back when the request ends (its picture is no longer held).
        claim, stream = budget.claim(), request.stream()
        try:
            upload = await read_upload(request, body_chunks(stream, upload_idle_seconds, upload_seconds),
                                       max_upload_bytes, claim)
            number, method, k, metric = choose(upload, served)
            hits = await run_in_threadpool(search_one, number, upload, method, k, metric)
        except BadUpload as e:
            claim.release()  # before draining: dropping the rest of a body holds no memory
            if e.status in (413, 503):  # 408: the client is not sending, nothing to drain
                await drain(request, e, body_chunks(stream, upload_idle_seconds, DRAIN_SECONDS))
            return JSONResponse({"detail": str(e)}, e.status, headers={"Connection": "close"})
        except UnreadableImage as e:
            return JSONResponse({"detail": e.reason}, 400)
        except (NoFace, NoTextTower) as e:
            return JSONResponse({"detail": str(e)}, 400)
        except ModelError as e:  # e.g. a text tower gone or changed since the index was made
            log.error("search on index %d failed: %s", number, e)  # its paths stay on the server
            return JSONResponse({"detail": "the search failed on the server; its log says why"}, 500)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening
        finally:
            claim.release()
            await stream.aclose()
        return JSONResponse(_answer(served, number, upload, method, metric, hits))

    # No /docs: Swagger UI comes from a CDN, and this page is the documentation.
    app = FastAPI(title="refinery serve", docs_url=None, redoc_url=None, openapi_url=None)
    # Plain Starlette routes: FastAPI would resolve these functions' annotations, which are
    # strings here (`from __future__ import annotations`) naming imports local to this
    # function; and the form is parsed by hand anyway. `:int` matches digits only, so a
    # row like `-1` or `../x` matches no route: 404.
    app.add_route("/", index_page, methods=["GET"])
    app.add_route("/api/search", search, methods=["POST"])
    app.add_route("/image/{index_no:int}/{row:int}", _image_route(served), methods=["GET"])
    app.middleware("http")(_security_headers)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOOPBACK_HOSTS)
    return app


# The page runs only its own inline script and style (by hash), talks only to this server,
# shows only this server's images, the query picture (a blob: URL) and no favicon (data:,),
# and is not framed.
CSP = (f"default-src 'none'; script-src {csp_hash(asset('search.js'))}; "
       f"style-src {csp_hash(asset('search.css'))}; "
       "img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def render_page(served: list[Served], max_upload_bytes: int) -> str:
    """The search page; every name from an index is HTML-escaped."""
    options = "".join(
        f'<option value="{i}" data-methods="{html.escape(",".join(s.index.gallery.methods()))}" '
        f'data-text="{str(s.index.searchable_by_text).lower()}">{html.escape(s.label)}</option>'
        for i, s in enumerate(served))
    return render("search.html", style=asset("search.css"), script=asset("search.js"), options=options,
                  max_bytes=max_upload_bytes, max_text_bytes=MAX_TEXT_BYTES, max_k=MAX_K)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hosts_to_answer(host: str) -> list[str]:
    """The Host header names to answer when listening on `host`: on IPv4 loopback, this
    machine's names only (a page rebound to 127.0.0.1 by DNS sends its own name); elsewhere
    any, as the names people use to reach the machine cannot be known here."""
    # IPv6 loopback would deserve it too, but Starlette's TrustedHostMiddleware cuts the Host
    # "[::1]:8000" at its first ":".
    if is_loopback(host) and ":" not in host:
        return sorted({*LOOPBACK_HOSTS, host})
    return ["*"]
