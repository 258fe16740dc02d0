"""A search request's body, read in memory within limits: the bytes all requests together
may hold (ByteBudget), a body that must keep coming and end in time (body_chunks), the
multipart form parsed here (read_upload) and a refused body's rest drained (drain). Why each
limit is what it is: refinery/serve/__init__.py."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from refinery.errors import BadUpload

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from fastapi import Request


MB = 1024 * 1024
MAX_UPLOAD_BYTES = 20 * MB  # a phone camera's JPEG is 2-8 MB; a RAW file is not a query
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
class _FormReader:
    """python-multipart callbacks that keep every part in memory, within the limits."""

    limit: int
    parts: list[tuple[dict[bytes, bytes], bytearray]] = field(default_factory=list)
    _header: tuple[bytes, bytes] = (b"", b"")

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._name,
            "on_header_value": self._value,
            "on_header_end": self._header_end,
            "on_part_data": self._data,
        }

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
        refused.unread and request.headers.get("expect", "").lower() == "100-continue"
    ):
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
