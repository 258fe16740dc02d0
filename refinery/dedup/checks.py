"""Checking a file against what the run judged of it, reached as that run reached it - the
checks every move and copy of refinery/dedup/actions.py passes first (see its text): the same
size, modification time and SHA-256 as when it was read; for a duplicate, its keeper still
there and unchanged too; the path walked with the scan's rules (`Reach`)."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from refinery.errors import Unreachable
from refinery.io.fileio import descend, fd_sha256, is_regular
from refinery.io.names import is_sha256_hex


@dataclass(frozen=True)
class Judged:
    """A file as the run judged it; what must still hold before refinery acts on it. A
    report line's `file`, a decisions file's and the review page's are this, as JSON."""

    size: int
    mtime_ns: int
    sha256: str  # hex

    def to_json(self) -> dict[str, int | str]:
        return {"bytes": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}

    @classmethod
    def from_json(cls, value: object) -> Judged:
        """`value` as dedup writes it, checked: whole numbers (a size not below 0) and a
        lower-case hex SHA-256 (ValueError otherwise: it was read back from disk)."""
        if not isinstance(value, dict):
            raise ValueError("file must be an object")
        size, mtime, sha = value.get("bytes"), value.get("mtime_ns"), value.get("sha256")
        if not (_whole(size) and _whole(mtime) and isinstance(sha, str) and is_sha256_hex(sha) and size >= 0):
            raise ValueError("file must hold bytes, mtime_ns and a sha256")
        return cls(size, mtime, sha)


UNKNOWN = Judged(-1, -1, "")  # nothing was judged of it: no file matches


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Planned:
    """One file to act on: where it is (relative to the scanned folder), what was judged of
    it, and for a duplicate the keeper that stays in its place."""

    rel: str
    judged: Judged
    keeper: str | None = None
    keeper_judged: Judged | None = None


@dataclass
class Entry:
    """One directory entry to move: its folder (a descriptor) and its name."""

    folder: int
    name: str


FOLDER = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


class Reach:
    """The scanned folder as the run that judged it reached its files, the scan's rules: no
    hidden name on the way; a symbolic link to a folder only when the run followed links, and
    only to a folder outside the scanned one; a file that is itself a link only when the run
    followed links (a link moves as a link: its target is never touched)."""

    def __init__(self, root: Path, follow_symlinks: bool):
        self.root = Path(root)
        self.real_root = Path(os.path.realpath(root))
        self.follow = follow_symlinks

    def parent(self, rel: str) -> int:
        """A descriptor of the folder that holds root/rel, reached as the run could reach it.
        Raises Unreachable naming the step it could not take, other OSErrors as they come."""
        head = rel.rpartition("/")[0]
        return self.folder(head.split("/") if head else [])

    def folder(self, parts: list[str]) -> int:
        """A descriptor of root/parts[0]/parts[1]/..., each step taken as the run could take it."""
        return descend(os.open(self.root, FOLDER), len(parts), lambda fd, k: self._step(fd, parts[: k + 1]))

    def _step(self, fd: int, parts: list[str]) -> int:
        where = "/".join(parts)
        if not stat.S_ISLNK(os.lstat(self.entry(where), dir_fd=fd).st_mode):
            try:
                return os.open(parts[-1], FOLDER | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Unreachable(f"{where} is not a folder") from None
                raise
        self.link(where)
        try:
            target = Path(os.path.realpath(self.root / where, strict=True))
        except OSError:
            raise Unreachable(f"{where} is a broken symbolic link") from None
        if target == self.real_root or self.real_root in target.parents:
            raise Unreachable(f"{where} is a symbolic link to a folder inside the scanned folder, which no run follows")
        step = os.open(parts[-1], FOLDER, dir_fd=fd)
        try:
            st, expected = os.fstat(step), os.stat(target)
            if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
                raise Unreachable(f"{where} changed while it was followed")
        except BaseException:
            os.close(step)
            raise
        return step

    def file(self, folder: int, where: str) -> bool:
        """Whether root/where (in `folder`, from `parent`) is a symbolic link, when the run could
        have judged it; else Unreachable (FileNotFoundError when it is gone)."""
        is_link = stat.S_ISLNK(os.lstat(self.entry(where), dir_fd=folder).st_mode)
        if is_link:
            self.link(where)
        return is_link

    def entry(self, where: str) -> str:
        """The last name of `where`, unless it is hidden (Unreachable)."""
        name = where.rpartition("/")[2]
        if name.startswith("."):
            raise Unreachable(f"{where} is hidden, and no run reads hidden files or folders")
        return name

    def link(self, where: str) -> None:
        """Unreachable unless the run followed links (root/where is one)."""
        if not self.follow:
            raise Unreachable(f"{where} is a symbolic link, and the run that judged these files did not follow links")


class Checker:
    """Checks files against what the run judged of them; a keeper verified once is re-checked
    by its status alone (a changed keeper changes its size or modification time)."""

    def __init__(self, reach: Reach):
        self.reach = reach
        self.keepers: dict[str, tuple[int, int, int, int]] = {}

    def source_problem(self, src: Entry, item: Planned) -> tuple[str, os.stat_result | None, bool]:
        """('', the status of the checked file (None for a link, checked through it), whether it
        is a link) when `item` may move now, else (what its error line says, None, False)."""
        try:
            is_link = self.reach.file(src.folder, item.rel)
        except FileNotFoundError:
            return "gone before it could be moved; nothing to do", None, False
        except Unreachable as e:
            return f"not moved: {e}; left where it is", None, False
        # A followed link: its target's bytes were judged, the link itself moves.
        why, st = judged_problem(src, item.judged, follow=is_link)
        why = f"it {why}" if why else self.keeper_problem(item)
        if why:
            return f"not moved: {why}; left where it is", None, False
        return "", None if is_link else st, is_link

    def keeper_problem(self, item: Planned) -> str:
        if item.keeper is None or item.keeper_judged is None:
            return ""
        try:
            folder = self.reach.parent(item.keeper)
        except Unreachable as e:
            return f"its keeper {item.keeper} is out of reach: {e}"
        except FileNotFoundError:
            return f"its keeper {item.keeper} is gone"
        except OSError as e:
            return f"its keeper {item.keeper} cannot be read: {e.strerror or e}"
        try:
            try:
                is_link = self.reach.file(folder, item.keeper)
            except FileNotFoundError:
                return f"its keeper {item.keeper} is gone"
            except Unreachable as e:
                return f"its keeper {item.keeper} is out of reach: {e}"
            fd, why = open_source(item.keeper.rpartition("/")[2], folder, follow=is_link)
            if fd is None:
                return f"its keeper {item.keeper} {why}"
            try:
                st = os.fstat(fd)
                seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                if self.keepers.get(item.keeper) == seen:
                    return ""
                why = content_problem(fd, item.keeper_judged)
            finally:
                os.close(fd)
            if why:
                return f"its keeper {item.keeper} {why}"
            self.keepers[item.keeper] = seen
            return ""
        finally:
            os.close(folder)


def open_source(path: Path | str, folder: int | None = None, follow: bool = True) -> tuple[int | None, str]:
    """(a read-only descriptor, '') of a file to check or copy, or (None, why it cannot be
    opened). Never blocks on a FIFO put in a file's place."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        return os.open(path, flags, dir_fd=folder), ""
    except FileNotFoundError:
        return None, "is gone"
    except OSError as e:
        return None, f"cannot be read: {e.strerror or e}"


def judged_problem(src: Entry, judged: Judged, follow: bool) -> tuple[str, os.stat_result | None]:
    """('', its status) if the file `src` (through a link if `follow`, else the entry itself)
    is what was judged, else (what differs, None)."""
    fd, why = open_source(src.name, src.folder, follow=follow)
    if fd is None:
        return why, None
    try:
        why = content_problem(fd, judged)
        return why, None if why else os.fstat(fd)
    finally:
        os.close(fd)


def content_problem(fd: int, judged: Judged) -> str:
    st = os.fstat(fd)
    if not is_regular(st):
        return "is no longer a regular file"
    if (st.st_size, st.st_mtime_ns) != (judged.size, judged.mtime_ns):
        return "changed since it was judged (size or modification time)"
    if fd_sha256(fd) != judged.sha256:
        return "changed since it was judged (its bytes)"
    return ""
