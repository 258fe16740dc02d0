"""A contact sheet: each query beside its results, as one self-contained HTML file (the
thumbnails are inlined, so it can be mailed or opened anywhere; each links to its file). The
page and its style are files, refinery/pages/sheet.html and sheet.css.

Names are shown as a terminal line shows them (refinery/io/names.py: a byte that is not UTF-8
as \\xNN), and linked by their bytes, percent-encoded, so every link opens the file it names.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

from refinery.errors import UnreadableImage
from refinery.io.images import SHEET_THUMB, read_bytes, thumbnail_jpeg
from refinery.io.names import printable
from refinery.io.outputs import PAGE_MARK, Kind, write_output
from refinery.pages import asset, render

if TYPE_CHECKING:
    from refinery.retrieval.index import Hit


def thumbnail(path: Path) -> str:
    """A data: URI of a small JPEG of the picture (SHEET_THUMB), or "" if it cannot be read."""
    try:
        jpeg = thumbnail_jpeg(read_bytes(path), path, SHEET_THUMB)
    except UnreadableImage:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def _text(text: str) -> str:
    """`text` as the page shows it: escaped as a terminal line is, then as HTML."""
    return html.escape(printable(text))


def _figure(path: Path, caption: str, css: str = "") -> str:
    """A picture's cell: its thumbnail, linked to the file (a file: URL made from the name's
    bytes, so a name that is not UTF-8 links to itself), and `caption`."""
    link = html.escape(path.absolute().as_uri())
    return (
        f'<figure class="{css}"><a href="{link}"><img src="{thumbnail(path)}" alt="{_text(path.name)}"></a>'
        f"<figcaption>{_text(caption)}</figcaption></figure>"
    )


def _query(query: Path | str) -> str:
    """The query's cell: its picture, or its words."""
    if isinstance(query, Path):
        return _figure(query, f"query: {query.name}", "query")
    return f'<figure class="query"><figcaption>query: {_text(query)}</figcaption></figure>'


def write_sheet(out: Path, root: Path, answers: list[tuple[Path | str, list[Hit]]]) -> None:
    """`answers`: (query file or words, its hits) per query; hit paths are relative to `root`."""
    rows = []
    for query, hits in answers:
        cells = [_query(query)]
        cells += [_figure(root / h.path, f"{h.rank}. {h.score:.4f} {h.path}") for h in hits]
        rows.append(f'<div class="row">{"".join(cells)}</div>')
    page = render("sheet.html", mark=PAGE_MARK, style=asset("sheet.css"), rows="".join(rows))
    write_output(out, Kind.PAGE, page.removesuffix("\n"))  # the sheet has always ended with its last row
