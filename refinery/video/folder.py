"""Where a video's kept frames go: their names (video stem and time, cut to fit the folder's
file system) and each frame written as a new file, never over anything, into a folder that is
checked to still be the one it was."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from contextlib import suppress
from pathlib import Path

from refinery.errors import CannotWrite, NameRefused, OutGone
from refinery.io.fileio import link_as_new, read_all, write_all, write_new

NAME_MAX = 255  # bytes in a file name (ext4, XFS, Btrfs, APFS); less where the folder's file system says so
# Bytes of a frame's name besides its stem: "_t" and the time to 115 days, ".jpg", and room
# for the ".N" that free_name_at adds when the name is taken.
_NAME_TAIL = 32


def frame_name(stem: str, t: float) -> str:
    """`STEM_t000123.400.jpg`: the video's stem (frame_stem) and the frame's time in seconds."""
    return f"{stem}_t{t:010.3f}.jpg"


def video_names(videos: list[Path]) -> list[str]:
    """Each video's name in a run (what its frames' names begin with): its stem, or where two
    videos of the run share a stem, the stem after as many of its folders as tell them apart
    (`camA/clip.avi`, `camB/clip.avi`: `camA_clip`, `camB_clip`). The same file given twice
    keeps one name."""
    real = [Path(os.path.realpath(v)) for v in videos]
    depth = {path: 0 for path in real}

    def name(path: Path) -> str:
        folders = path.parent.parts[len(path.parent.parts) - depth[path] :] if depth[path] else ()
        return "_".join([*(f for f in folders if f != "/"), path.stem])

    while True:
        by_name: dict[str, set[Path]] = {}
        for path in real:
            by_name.setdefault(name(path), set()).add(path)
        clashes = {path for paths in by_name.values() if len(paths) > 1 for path in paths}
        deeper = {path for path in clashes if depth[path] < len(path.parent.parts)}
        if not deeper:
            return [name(path) for path in real]
        for path in deeper:
            depth[path] += 1


def frame_stem(name: str, name_max: int = NAME_MAX) -> str:
    """What a video's frame names start with: its run's name (video_names), in UTF-8, short
    enough that every frame name fits in `name_max` bytes. Bytes that are not UTF-8 become
    U+FFFD; a stem that had to change (cut, or bytes replaced) ends with "~" and 8 hex digits
    of the name it was, so two videos whose names differ only there keep apart."""
    raw = os.fsencode(name)
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

    def write(self, name: str, jpeg: bytes, t: float) -> tuple[str, bool]:
        """Write the frame at `t` as `name` or, if that is taken, the first free `NAME.N.jpg`
        (a new file: never over anything); the name it went to, and whether it was there
        already - `name` holding these very bytes (an earlier run's frame): then nothing is
        written. Raises OutGone if `out` is no longer where it was, NameRefused or CannotWrite."""
        self.check(t)
        if self.holds(name, jpeg):
            return name, True
        try:
            tmp, _ = write_new(self.fd, fit_bytes(name, 100), lambda fd: write_all(fd, jpeg), 0o644)
            try:
                return link_as_new(self.fd, tmp, name), False
            finally:
                with suppress(FileNotFoundError):  # gone with the folder
                    os.unlink(tmp, dir_fd=self.fd)
        except OSError as e:
            self.check(t)
            why = f"cannot write {self.out / name}: {e.strerror or e}"
            if e.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
                raise NameRefused(why, t) from None
            raise CannotWrite(why, t) from None

    def holds(self, name: str, jpeg: bytes) -> bool:
        """Whether `name` is a regular file of exactly these bytes (never a link followed)."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            return stat.S_ISREG(st.st_mode) and st.st_size == len(jpeg) and read_all(fd, len(jpeg) + 1) == jpeg
        except OSError:
            return False
        finally:
            os.close(fd)

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
