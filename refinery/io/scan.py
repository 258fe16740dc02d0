"""Finding the image files in a folder by what they contain, not only by their names."""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from refinery.reasons import ReasonCode

# Leading bytes of each format refinery reads: JPEG (and MPO, a camera's multi-picture JPEG),
# PNG, GIF, BMP, TIFF (both byte orders), WebP (RIFF....WEBP), PNM (P1-P6), and the ISO media
# formats (....ftypBRAND): HEIC/HEIF from phones (through pillow-heif) and AVIF.
_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_ISO_BRANDS = {
    b"heic": "heif",
    b"heix": "heif",
    b"hevc": "heif",
    b"heim": "heif",
    b"heis": "heif",
    b"hevm": "heif",
    b"hevs": "heif",
    b"mif1": "heif",
    b"msf1": "heif",
    b"avif": "avif",
    b"avis": "avif",
}
# Videos are not pictures: a dedup run names them (`refinery frames` thins them).
VIDEO_SUFFIXES = frozenset(
    {".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp"}
)
# Names worth a look even when their content is not recognised: so that a broken
# photo.jpg is reported as an error instead of being silently skipped.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".webp",
        ".bmp",
        ".tif",
        ".tiff",
        ".gif",
        ".mpo",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".heic",
        ".heif",
        ".hif",
        ".avif",
    }
)


def sniff(head: bytes) -> str | None:
    """The image format that these leading bytes announce, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BRANDS:
        return _ISO_BRANDS[head[8:12]]
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n":
        return "pnm"
    for magic, fmt in _SIGNATURES:
        if head.startswith(magic):
            return fmt
    return None


@dataclass(frozen=True)
class Skipped:
    """An entry that is not judged, and why: a report line of its own."""

    path: str  # relative to the scanned folder, forward slashes
    decision: str  # "skip" (on purpose) or "error" (a broken link)
    reason: str
    code: ReasonCode = ReasonCode.UNREADABLE


@dataclass
class Scan:
    files: list[Path]  # to judge, sorted
    skipped: list[Skipped]
    others: Counter[str] = field(default_factory=Counter)  # other files, by suffix ("" for none)

    def without_pictures(self) -> str:
        """What was found instead of pictures, in a few words: "the folder is empty", or e.g.
        "12 files, none a picture (8 .txt, 4 .md); 2 videos (refinery frames reads them)"."""
        kinds = Counter(s.code for s in self.skipped)
        parts = []
        if self.others:
            shown = ", ".join(f"{n} {suffix or 'without a suffix'}" for suffix, n in self.others.most_common(3))
            count = sum(self.others.values())
            parts.append(
                f"{_count(count, 'file', 'files')}, none a picture ({shown}{', ...' * (len(self.others) > 3)})"
            )
        for code, one, many in _LEFT_OUT:
            if kinds[code]:
                parts.append(_count(kinds[code], one, many))
        return "; ".join(parts) or "the folder is empty"


_LEFT_OUT = (
    (ReasonCode.VIDEO, "video (refinery frames reads it)", "videos (refinery frames reads them)"),
    (ReasonCode.HIDDEN, "hidden entry not read", "hidden entries not read"),
    (ReasonCode.LINK, "symbolic link not followed", "symbolic links not followed"),
    (ReasonCode.UNREADABLE, "entry that could not be read", "entries that could not be read"),
)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def find_images(root: Path) -> list[Path]:
    """Every image file under `root` that `scan` would judge, sorted."""
    return scan(root).files


def holds_a_picture(root: Path) -> bool:
    """Whether `scan` would find a picture under `root`, stopping at the first (links are not
    followed: enough to word a message without reading a large folder through)."""
    folders = [str(root)]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir():
                folders.append(entry.path)
            elif entry.is_file() and _is_image(entry.path, entry.name):
                return True
    return False


def scan(root: Path, follow_symlinks: bool = False) -> Scan:
    """Every file under `root` that is an image by content or by suffix, and what was left out.

    Hidden files and folders are not entered (one `skip` line each). A symbolic link to a
    file inside `root` is judged once, under the target's own name; a link out of `root` is
    judged only with `follow_symlinks`, and a broken link (dangling, a loop) is an error.
    Directory entries carry their type, so a folder of plain files costs no stat call per file.
    """
    root = Path(root)
    real_root = Path(os.path.realpath(root))
    files: list[Path] = []
    skipped: list[Skipped] = []
    others: Counter[str] = Counter()
    entered = {real_root}
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)  # the same choices every run
        except OSError as e:
            if folder != root:
                skipped.append(Skipped(_rel(folder, root), "error", f"cannot list folder: {e.strerror or e}"))
            continue
        for entry in entries:
            path = folder / entry.name
            if entry.name.startswith("."):
                is_dir = entry.is_dir(follow_symlinks=False)
                if is_dir or _has_image_suffix(entry.name):
                    kind = "folder" if is_dir else "file"
                    skipped.append(Skipped(_rel(path, root), "skip", f"hidden {kind}, not read", ReasonCode.HIDDEN))
            elif entry.is_symlink():
                target = _follow(path, root, real_root, follow_symlinks, entered, skipped)
                if target == "folder":
                    folders.append(path)
                elif target == "file":
                    files.append(path)
            elif entry.is_dir():
                folders.append(path)
            elif entry.is_file():
                if _is_image(entry.path, entry.name):
                    files.append(path)
                elif os.path.splitext(entry.name)[1].lower() in VIDEO_SUFFIXES:
                    skipped.append(
                        Skipped(_rel(path, root), "skip", "a video: use `refinery frames`", ReasonCode.VIDEO)
                    )
                else:
                    others[os.path.splitext(entry.name)[1].lower()] += 1
            elif _has_image_suffix(entry.name):  # a FIFO, socket or device named like a picture
                skipped.append(Skipped(_rel(path, root), "error", "not a regular file"))
    return Scan(sorted(files), sorted(skipped, key=lambda s: s.path), others)


def _follow(
    path: Path, root: Path, real_root: Path, follow: bool, entered: set[Path], skipped: list[Skipped]
) -> str | None:
    """What to do with the symbolic link `path`: "file" (judge it), "folder" (enter it) or
    None (a `skip` or `error` line has been added, or it is no image)."""
    rel = _rel(path, root)
    try:
        target = Path(os.path.realpath(path, strict=True))
        is_dir = target.is_dir()
    except OSError as e:
        if _has_image_suffix(path.name):
            why = (
                "a symbolic link loop"
                if e.errno == errno.ELOOP
                else f"broken symbolic link: its target {os.readlink(path)} does not exist"
                if e.errno == errno.ENOENT
                else f"broken symbolic link: {e.strerror or e}"
            )
            skipped.append(Skipped(rel, "error", why))
        return None
    if not is_dir and not _is_image(str(target), path.name):
        return None
    kind = "folder" if is_dir else "file"
    inside = target == real_root or real_root in target.parents
    if inside and not is_dir and not any(part.startswith(".") for part in target.relative_to(real_root).parts):
        skipped.append(
            Skipped(
                rel,
                "skip",
                f"symbolic link to {target.relative_to(real_root).as_posix()}, which is judged under its own name",
                ReasonCode.LINK,
            )
        )
        return None
    if inside:
        skipped.append(
            Skipped(rel, "skip", f"symbolic link to a {kind} inside the folder; not followed", ReasonCode.LINK)
        )
        return None
    if not follow:
        skipped.append(
            Skipped(
                rel,
                "skip",
                f"symbolic link to a {kind} outside the folder ({target}); not followed (--follow-symlinks judges it)",
                ReasonCode.LINK,
            )
        )
        return None
    if is_dir:
        if target in entered:
            skipped.append(Skipped(rel, "skip", f"symbolic link to a folder already read ({target})", ReasonCode.LINK))
            return None
        entered.add(target)
    return kind


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _has_image_suffix(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _is_image(path: str, name: str) -> bool:
    return _has_image_suffix(name) or _looks_like_image(path)


def _looks_like_image(path: str) -> bool:
    try:  # without blocking: a FIFO behind a followed link must not hang the scan
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            return stat.S_ISREG(os.fstat(f.fileno()).st_mode) and sniff(f.read(16)) is not None
    except OSError:
        return False
