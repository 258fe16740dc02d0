"""Where a video's kept frames go: their names (video stem and time, cut to fit the folder's
file system) and each frame written as a new file, never over anything, into a folder that is
checked to still be the one it was."""

from __future__ import annotations

import errno
import hashlib
import os
from contextlib import suppress
from pathlib import Path

from refinery.errors import CannotWrite, NameRefused, OutGone
from refinery.io.fileio import link_as_new, write_all, write_new

NAME_MAX = 255  # bytes in a file name (ext4, XFS, Btrfs, APFS); less where the folder's file system says so
# Bytes of a frame's name besides its stem: "_t" and the time to 115 days, ".jpg", and room
# for the ".N" that free_name_at adds when the name is taken.
_NAME_TAIL = 32


def frame_name(stem: str, t: float) -> str:
    """`STEM_t000123.400.jpg`: the video's stem (frame_stem) and the frame's time in seconds."""
    return f"{stem}_t{t:010.3f}.jpg"


def frame_stem(video: Path, name_max: int = NAME_MAX) -> str:
    """What a video's frame names start with: its stem, in UTF-8, short enough that every frame
    name fits in `name_max` bytes. Bytes that are not UTF-8 become U+FFFD; a stem that had to
    change (cut, or bytes replaced) ends with "~" and 8 hex digits of the stem it was, so two
    videos whose names differ only there keep apart."""
    raw = os.fsencode(Path(video).stem)
    stem = raw.decode("utf-8", "replace")
    room = max(name_max - _NAME_TAIL, 16)
    if stem.encode() == raw and len(raw) <= room:
        return stem
    tag = "~" + hashlib.sha256(raw).hexdigest()[:8]
    return fit_bytes(stem, room - len(tag)) + tag


def fit_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, never inside a character."""
    return text.encode()[:limit].decode("utf-8", "ignore")


class FramesFolder:
    """`out`, opened (`fd`, the caller's to close), where the frames of one video go; their
    names begin with `stem` (frame_stem)."""

    def __init__(self, out: Path, fd: int, stem: str):
        self.out, self.fd, self.stem = out, fd, stem
        self.identity = _identity(os.fstat(fd))

    def write(self, name: str, jpeg: bytes, t: float) -> str:
        """Write the frame at `t` as `name` or, if that is taken, the first free `NAME.N.jpg`
        (a new file: never over anything); the name it went to.
        Raises OutGone if `out` is no longer where it was, NameRefused or CannotWrite."""
        self.check(t)
        try:
            tmp, _ = write_new(self.fd, fit_bytes(name, 100), lambda fd: write_all(fd, jpeg), 0o644)
            try:
                return link_as_new(self.fd, tmp, name)
            finally:
                with suppress(FileNotFoundError):  # gone with the folder
                    os.unlink(tmp, dir_fd=self.fd)
        except OSError as e:
            self.check(t)
            why = f"cannot write {self.out / name}: {e.strerror or e}"
            if e.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
                raise NameRefused(why, t) from None
            raise CannotWrite(why, t) from None

    def check(self, t: float) -> None:
        """Raise OutGone unless `out` still names the folder the frames go to."""
        try:
            same = _identity(os.stat(self.out)) == self.identity and os.fstat(self.fd).st_nlink > 0
        except OSError:
            same = False
        if not same:
            raise OutGone(gone(self.out), t)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def gone(out: Path) -> str:
    return f"the output folder {out} went away (renamed or removed)"


def name_max(folder: int) -> int:
    """The longest file name, in bytes, the folder's file system takes (at most NAME_MAX)."""
    try:
        return min(NAME_MAX, os.fpathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX
