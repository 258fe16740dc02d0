"""Names as a terminal may show them, and names read back from disk as refinery trusts them.

A file name is data, never a command to the terminal.

A name can hold anything but '/' and NUL: escape sequences that retitle or clear a terminal,
a carriage return that hides what came before it, right-to-left overrides that reverse what
follows, bytes that are not UTF-8. Every line refinery prints goes through `printable`.
"""

from __future__ import annotations

import re
from typing import TypeGuard

_KEEP = frozenset("\n")  # a message's own line breaks (a table); names never reach here raw


def printable(text: object, keep_newlines: bool = False) -> str:
    """`text` with every character a terminal would act on written as an escape.

    Control characters (C0, DEL, C1), Unicode format characters (bidi overrides, zero-width
    joiners), line and paragraph separators and undecodable bytes (surrogate escapes of a
    non-UTF-8 name) become \\xNN, \\uNNNN; everything printable, any script, stays as it is.
    With `keep_newlines`, '\\n' stays (a multi-line message whose names were escaped already).

    >>> printable("a\\x1b]0;owned\\x07.jpg")
    'a\\\\x1b]0;owned\\\\x07.jpg'
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(_escape(c, keep_newlines) for c in text)


def _escape(c: str, keep_newlines: bool) -> str:
    if c.isprintable() or (keep_newlines and c in _KEEP):
        return c
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if c == "\t":
        return "\\t"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # as hashlib's hexdigest writes it


def is_sha256_hex(value: object) -> TypeGuard[str]:
    """A SHA-256 as refinery writes it (64 lowercase hex digits) in a journal, a decisions file,
    a report or the cache read back from disk."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def is_plain_path(value: object) -> TypeGuard[str]:
    """A relative path, read back from disk, that stays below its folder: every step a name
    (no leading '/', no '..', '.' or empty step, no NUL)."""
    return (
        isinstance(value, str)
        and bool(value)
        and "\x00" not in value
        and all(part not in ("", ".", "..") for part in value.split("/"))
    )
