"""File helpers: writes that a crash never leaves half-done (temp name, then rename), hashes,
and folder walks that never go through a symbolic link someone may have planted.

The rules every write of refinery's follows:
- a new file is created under a random name that nothing else has (O_CREAT | O_EXCL |
  O_NOFOLLOW), written, flushed, and only then given its name;
- a name is given with link(2), which fails if the name is taken, unless the caller owns
  the name (its own report, its own index file) and asked to replace it;
- inside a destination folder, every folder on the way is opened without following links,
  so a planted link cannot send a write outside it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from refinery.errors import RefineryError, UnsafePath

# Errors that say the destination as a whole cannot take more: going on file by file would
# only print the same line again, so a run stops at the first one.
DEVICE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
TEMP_SUFFIX = ".refinery-tmp"
T = TypeVar("T")
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


@contextmanager
def atomic_path(
    path: Path, replace_folder: bool = False, place: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    Works for files and for directories (a Core ML .mlpackage is a directory). An existing
    folder at `path` is replaced only with `replace_folder` (the caller has checked that it
    is its own output); otherwise it is an error, and nothing is removed. `place(tmp)`, if
    given, gives the finished file its name instead of a plain rename (refinery/io/outputs.py:
    never over a file refinery did not write).
    On error the temporary is removed and `path` is left as it was.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink() and not replace_folder:
        raise RefineryError(f"{path} is a folder; give the name of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if place is not None:
            place(tmp)
            return
        if path.is_dir() and not path.is_symlink():
            # os.replace cannot put a directory over a non-empty one: move the old aside first.
            os.replace(path, tmp_dir / (path.name + ".old"))
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_bytes_atomic(path: Path, data: bytes, place: Callable[[Path], None] | None = None) -> None:
    """Write `data` to `path` atomically; RefineryError in one line if it cannot be (a full
    disk): then `path` is as it was. `place` as atomic_path's."""
    try:
        with atomic_path(path, place=place) as tmp:
            tmp.write_bytes(data)
    except RefineryError:
        raise
    except OSError as e:
        raise RefineryError(f"cannot write {path}: {e.strerror or e}; it is as it was") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes_atomic(path, text.encode())


def check_writable(path: Path) -> None:
    """Fail now, with one line, if a file cannot be written at `path` later (before a long run).

    Creates and removes a file of its own in the folder `path` would go to.
    """
    path = Path(path)
    if path.is_dir():
        raise RefineryError(f"{path} is a folder; give the name of a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RefineryError(f"{path}: cannot write there: {e.strerror or e}") from None


def check_writable_folder(folder: Path) -> None:
    """Fail now, with one line, if files cannot be created in `folder` (made if missing)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".refinery-probe.", suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RefineryError(f"{folder}: cannot write there: {e.strerror or e}") from None


def read_regular(path: Path) -> bytes:
    """The bytes of the regular file at `path`; RefineryError in one line if it cannot be read
    or is not a regular file (a FIFO is never waited on, /dev/zero never read to its end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise RefineryError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RefineryError(f"{path}: not a regular file (a FIFO, a device or a folder); give a file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    except OSError as e:
        raise RefineryError(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def read_json(path: Path, what: str) -> object:
    """The JSON value in `path`, or RefineryError in one line naming the file and why: it cannot
    be read, is not UTF-8, is not JSON, or nests deeper than Python's parser goes (a hand-made
    file). `what` says what the file should have been ("a dedup report")."""
    raw = read_regular(path)
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise RefineryError(f"{path}: nested too deeply to be {what}") from None
    except ValueError as e:  # UnicodeDecodeError and json.JSONDecodeError both are
        raise RefineryError(f"{path}: not {what} (not JSON: {e})") from None


def cache_home() -> Path:
    """Where refinery keeps what it can always make again (features, compiled models):
    $XDG_CACHE_HOME/refinery, else ~/.cache/refinery."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "refinery"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    with open(path, "rb") as f:
        return fd_sha256(f.fileno())


def fd_sha256(fd: int) -> str:
    """SHA-256 of everything an open file holds, read from its start (the offset is not moved)."""
    h = hashlib.sha256()
    offset = 0
    while block := os.pread(fd, 1 << 20, offset):
        h.update(block)
        offset += len(block)
    return h.hexdigest()


def open_folder(
    base: Path | int, parts: list[str] | tuple[str, ...], create: bool = False, follow: bool = False
) -> int:
    """A descriptor of the folder base/parts[0]/parts[1]/..., opened one step at a time.

    `base` (a path, or a descriptor that stays the caller's) is taken as it is; below it no
    step may be a symbolic link unless `follow`. With `create`, missing folders are made.
    Raises UnsafePath for a link or a non-folder on the way, FileNotFoundError for a missing
    step without `create`, other OSErrors as they come. The caller closes the result.
    """
    nofollow = 0 if follow else os.O_NOFOLLOW

    def step(fd: int, k: int) -> int:
        if create:
            try:
                os.mkdir(parts[k], 0o777, dir_fd=fd)
            except FileExistsError:
                pass
        try:
            return os.open(parts[k], _OPEN_FOLDER | nofollow, dir_fd=fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(
                    f"{'/'.join(parts[: k + 1])} is a symbolic link or not a folder; refinery goes "
                    "only through real folders there"
                ) from None
            raise

    start = os.open(base, _OPEN_FOLDER) if not isinstance(base, int) else os.dup(base)
    return descend(start, len(parts), step)


def descend(fd: int, steps: int, step: Callable[[int, int], int]) -> int:
    """The folder descriptor reached from `fd` (which this takes over) in `steps` steps,
    `step(fd, k)` opening the k-th from the one before. Every descriptor left behind is
    closed, and the one reached so far when a step raises."""
    try:
        for k in range(steps):
            next_fd = step(fd, k)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_exclusive(folder_fd: int, name: str, mode: int = 0o600) -> tuple[int, str]:
    """A new, empty file under a random name made from `name`, in the folder `folder_fd`:
    (its descriptor, open for writing, and its name). Never opens anything that was there."""
    # Room for the random part within the 255 bytes of a name (bytes, not characters: a cut
    # character is a few bytes that are no UTF-8, which a temporary name may hold).
    stem = os.fsdecode(os.fsencode(name)[:120])
    while True:
        tmp = f".{stem}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                mode,
                dir_fd=folder_fd,
            )
            return fd, tmp
        except FileExistsError:
            continue


def write_new(folder_fd: int, name: str, write: Callable[[int], T], mode: int = 0o600) -> tuple[str, T]:
    """The first half of every new file's write: a file under a random name made from `name`
    (create_exclusive), filled by `write(fd)`, flushed to disk and closed; (its name, what
    `write` returned). If anything fails, the file is removed and the error raised. Giving it
    its name (link_as_new, os.link, os.replace) and removing `tmp` after are the caller's: they
    differ in what may be taken and where the name goes."""
    fd, tmp = create_exclusive(folder_fd, name, mode)
    try:
        written = write(fd)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with suppress(FileNotFoundError):  # gone with its folder: the first error is the one to tell
            os.unlink(tmp, dir_fd=folder_fd)
        raise
    os.close(fd)
    return tmp, written


def read_all(fd: int, most: int) -> bytes:
    """Up to `most` bytes of `fd` from where it stands (os.read may read less than asked)."""
    chunks, left = [], most
    while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """All of `data` to `fd` (os.write may write less than it was given)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def link_as_new(folder_fd: int, tmp: str, name: str) -> str:
    """Give the finished file `tmp` (create_exclusive's) the name `name` in the folder, or the
    first free `stem.N.suffix` if something has that one: a hard link, so never over anything,
    even a file made a moment ago. The name it got; `tmp` is left for the caller to remove."""
    target = name
    while True:
        try:
            os.link(tmp, target, src_dir_fd=folder_fd, dst_dir_fd=folder_fd, follow_symlinks=False)
            return target
        except FileExistsError:  # someone's file (or one of another run): never touched
            target = free_name_at(folder_fd, name)


def exists_at(folder_fd: int, name: str) -> bool:
    """Whether anything (a file, a folder, a link, broken or not) has `name` in the folder."""
    try:
        os.lstat(name, dir_fd=folder_fd)
        return True
    except FileNotFoundError:
        return False


def free_name_at(folder_fd: int, name: str) -> str:
    """`name` if nothing has it in the folder, else the first free `stem.N.suffix`."""
    stem, dot, suffix = name.rpartition(".")
    if not stem:  # no suffix (or a name like ".x")
        stem, dot, suffix = name, "", ""
    candidate, n = name, 0
    while exists_at(folder_fd, candidate):
        n += 1
        candidate = f"{stem}.{n}{dot}{suffix}"
    return candidate


def is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
