"""What refinery's HTML pages share (the review page, review/page.py; the search page,
serve.py): each is one self-contained page that runs only its own inline script and style,
allowed by their hashes in its Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib


def csp_hash(text: str) -> str:
    """The Content-Security-Policy source that allows exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
