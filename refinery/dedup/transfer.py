"""One entry moved or copied between two folders, never over anything (refinery/dedup/actions.py
says what is checked first, and why): a hard link where both are on one filesystem, else a
copy into a scratch folder, flushed and compared, then linked into place. And DEST's folders,
opened without following links, that moves and copies go into."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from refinery.dedup.checks import Entry
from refinery.dedup.journal import STATE
from refinery.io.fileio import TEMP_SUFFIX, open_folder, write_all, write_new

log = logging.getLogger(__name__)

SCRATCH = "tmp"  # in DEST/.refinery: partial copies across filesystems, written only under the lock


@dataclass
class ActionResult:
    done: int = 0
    skipped: int = 0  # nothing to do (already there, or gone), each logged
    failed: int = 0  # could not be moved or was not what was judged (each logged as an error); left where it was


def transfer(
    src: Entry, dst: Entry, scratch: int | None, is_link: bool, pinned: os.stat_result | None, expect_sha: str | None
) -> None:
    """Move `src` to `dst` (whose name must be free), never overwriting. A link moves as a link.

    `pinned` is the status of the file that was checked: the move goes through only if that
    very file (same inode, size and modification time) reaches `dst`, and the source name is
    removed only while it still names that file. Across filesystems the file is copied into
    `scratch`, flushed, compared with `expect_sha`, linked into place, and only then is the
    source removed.
    """
    try:
        os.link(src.name, dst.name, src_dir_fd=src.folder, dst_dir_fd=dst.folder, follow_symlinks=False)
        linked = True
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        _copy_across(src, dst, scratch, is_link, expect_sha)
        linked = False
    if pinned is None:
        os.unlink(src.name, dir_fd=src.folder)
        return
    try:
        if linked and not _same(os.lstat(dst.name, dir_fd=dst.folder), pinned):
            raise Changed("was replaced while it was being moved")
        now = os.lstat(src.name, dir_fd=src.folder)
        if (now.st_dev, now.st_ino) != (pinned.st_dev, pinned.st_ino):
            # Another file took the name after the checked one reached `dst`: that one is
            # not refinery's to move, and the checked one has moved.
            log.warning("%s: a new file took its name while it was being moved; the new one stays", src.name)
            return
        if not _same(now, pinned):
            raise Changed("was written to while it was being moved")
        os.unlink(src.name, dir_fd=src.folder)
    except BaseException:
        os.unlink(dst.name, dir_fd=dst.folder)  # our new name only: the checked file is still at the source
        raise


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """One file, unchanged: same inode, size and modification time."""
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


class Changed(OSError):
    """The file changed between its check and its move."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _copy_across(src: Entry, dst: Entry, scratch: int | None, is_link: bool, expect_sha: str | None) -> None:
    """Copy to a new file in `scratch` (or beside `dst` when that is on another filesystem, or
    None), make sure it is on disk and equal, then link it to its name in `dst` (failing if
    taken). The scratch copy is always removed."""
    if scratch is None or os.fstat(scratch).st_dev != os.fstat(dst.folder).st_dev:
        scratch = dst.folder
    if is_link:
        target = os.readlink(src.name, dir_fd=src.folder)
        while True:
            tmp = f".link.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"
            try:
                os.symlink(target, tmp, dir_fd=scratch)
                break
            except FileExistsError:
                continue
    else:
        fd_in = os.open(src.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=src.folder)
        try:
            tmp, digest = copy_new(fd_in, os.fstat(fd_in), scratch, src.name)
        finally:
            os.close(fd_in)
    try:
        if not is_link and expect_sha is not None and digest != expect_sha:
            raise Changed("changed while it was being copied")
        os.link(tmp, dst.name, src_dir_fd=scratch, dst_dir_fd=dst.folder, follow_symlinks=False)
    finally:
        os.unlink(tmp, dir_fd=scratch)


def copy_new(fd_in: int, st: os.stat_result, folder: int, name: str) -> tuple[str, str]:
    """A copy of the open file `fd_in`, whose status is `st` (its mode, writable by its owner,
    and its times go with it), as a new file under a random name made from `name` in `folder`
    (fileio.write_new): (that name, the SHA-256 of what was copied)."""

    def copy(fd_out: int) -> str:
        digest = copy_fd(fd_in, fd_out)
        os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
        return digest

    return write_new(folder, name, copy, stat.S_IMODE(st.st_mode) | 0o200)


def copy_fd(fd_in: int, fd_out: int) -> str:
    """Copy all of `fd_in` to `fd_out`; the SHA-256 of what was copied."""
    h = hashlib.sha256()
    offset = 0
    while block := os.pread(fd_in, 1 << 20, offset):
        h.update(block)
        write_all(fd_out, block)
        offset += len(block)
    return h.hexdigest()


def reason(e: BaseException) -> str:
    if isinstance(e, Changed):
        return f"it {e.why}"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


class Folders:
    """Descriptors of DEST's folders (made as needed, never through a link), and its scratch
    folder for copies across filesystems."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.open: dict[tuple[str, ...], int] = {}
        self._root = open_folder(dest, [])
        self._scratch: int | None = None

    @property
    def scratch(self) -> int:
        if self._scratch is None:
            self._scratch = open_folder(self._root, [STATE, SCRATCH], create=True)
        return self._scratch

    def get(self, parts: list[str]) -> int:
        key = tuple(parts)
        if key not in self.open:
            if len(self.open) > 256:  # a deep tree: do not hold a descriptor per folder
                for fd in self.open.values():
                    os.close(fd)
                self.open.clear()
            self.open[key] = open_folder(self._root, parts, create=True)
        return self.open[key]

    def __enter__(self) -> Folders:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in [*self.open.values(), self._root, *([self._scratch] if self._scratch is not None else [])]:
            os.close(fd)
