"""refinery's HTML pages as files: the review page (review.html, .css, .js; made by
review/page.py), the search page (search.*; served by serve/app.py) and the contact sheet
(sheet.html, .css; written by retrieval/sheet.py). Each is written out as one self-contained
page, its style and script inlined; the review and search pages allow them - nothing else -
by their hashes in their Content-Security-Policy (the sheet runs no script).

A template holds ${name} where a value goes (string.Template: a literal dollar is $$)."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files
from string import Template


@cache
def _text(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def asset(name: str) -> str:
    """A script or style of this package as a page inlines it (and hashes it): without the
    newline that ends its file."""
    return _text(name).removesuffix("\n")


def render(template: str, **values: object) -> str:
    """The page `template` (a file here, as it is) with each ${name} replaced by str(values[name])."""
    return Template(_text(template)).substitute({name: str(value) for name, value in values.items()})


def csp_hash(text: str) -> str:
    """The Content-Security-Policy source that allows exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
