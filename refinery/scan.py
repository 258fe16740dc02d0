"""Finding the image files in a folder by what they contain, not only by their names."""

from __future__ import annotations

import os
from pathlib import Path

# Leading bytes of each format refinery reads: JPEG, PNG, GIF, BMP, TIFF (both byte orders),
# WebP (RIFF....WEBP).
_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
# Names worth a look even when their content is not recognised: so that a broken
# photo.jpg is reported as an error instead of being silently skipped.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def sniff(head: bytes) -> str | None:
    """The image format that these leading bytes announce, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, fmt in _SIGNATURES:
        if head.startswith(magic):
            return fmt
    return None


def find_images(root: Path) -> list[Path]:
    """Every file under `root` that is an image by content or by suffix, sorted.

    Hidden files and folders are skipped; symbolic links are not followed. Directory
    entries carry their type, so a folder of plain files costs no stat call per file.
    """
    found: list[Path] = []
    folders = [Path(root)]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir():
                folders.append(folder / entry.name)
            elif entry.is_file() and (os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES
                                      or _looks_like_image(entry.path)):
                found.append(folder / entry.name)
    return sorted(found)


def _looks_like_image(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return sniff(f.read(16)) is not None
    except OSError:
        return False
