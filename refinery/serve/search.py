"""The search behind the page: the indexes as served, the form's choice checked, a query
picture refused from its header when it would cost too much, one search at a time, and the
thumbnails of the results (read only from inside their index's folder)."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from refinery.errors import BadUpload, UnreadableImage
from refinery.serve.upload import FIELDS, Upload

if TYPE_CHECKING:
    from refinery.retrieval.index import Hit, RetrievalIndex
    from refinery.spec import ModelSpec


MAX_K = 100
# A search resizes, measures and embeds what is left of a query picture once decode has reduced it
# (halving each side up to three times, while both stay large enough for the model): a 12000 x 9000
# photo leaves 1.7 Mpx. Only a picture too long and thin to halve leaves more: a PNG of 14.5 KB
# declaring 119,000,000 x 1 pixels, under the limit of 120 Mpx, kept all of them and took 9 s,
# holding up every search behind it. The most this lets through (40,000 x 400) takes 0.5 s.
MAX_QUERY_PIXELS = 16_000_000


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
        raise UnreadableImage(
            name,
            f"declares {width}x{height} pixels, too long and thin to reduce: "
            f"{left / 1e6:.3g} Mpx to work on, over the limit of "
            f"{MAX_QUERY_PIXELS / 1e6:.0f} Mpx for a query; not decoded",
        )


def thumbnail_jpeg(root: Path, rel: str) -> bytes:
    """A JPEG of the picture at `root/rel` (SEARCH_THUMB); only inside `root`.

    Raises:
        UnreadableImage: the file is gone, unreadable, or (a link, an edited index.json)
            outside `root`.
    """
    from refinery.io import images

    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base):
        raise UnreadableImage(rel, "outside the indexed folder")
    return images.thumbnail_jpeg(images.read_bytes(path), rel, images.SEARCH_THUMB)


class Searcher:
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
