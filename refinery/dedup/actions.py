"""Acting on decisions: move rejects out, or copy keepers out. Never delete, never overwrite.

Before a file moves (or is copied) it is checked to be what the run judged: the same size,
modification time and SHA-256 as when it was read, and, for a duplicate, its keeper still
there and unchanged too; otherwise it stays where it is, with an error line saying why. A
file to move and its keeper are reached only as the run that judged them reached them
(`checks.Reach`): through a symbolic link only if that run followed links, so the journal says
what was done and undo retraces it.

Every move is journaled first (refinery/dedup/journal.py) under DEST's lock, so `refinery undo
DEST` can put everything back even after a crash; undo moves a file only from inside DEST
(no link on the way) to inside the folder its run scanned, only if its bytes are those
journaled. Nothing is written through a link someone could have planted: DEST's folders are
opened one by one without following links, and copies go to new files with random names.
A move of a symbolic link moves the link, never its target. A name already taken at the
destination is never overwritten: the file gets a suffix, `name.1.jpg`, `name.2.jpg`, ...
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from refinery.dedup.checks import Checker, Entry, Planned, Reach, open_source
from refinery.dedup.journal import STATE, Journal, Move
from refinery.errors import DeviceFull, RefineryError, Unreachable, UnsafePath
from refinery.io.fileio import (
    DEVICE_ERRORS,
    TEMP_SUFFIX,
    create_exclusive,
    fd_sha256,
    free_name_at,
    is_regular,
    link_as_new,
    open_folder,
)

log = logging.getLogger(__name__)

SCRATCH = "tmp"  # in DEST/.refinery: partial copies across filesystems, written only under the lock


@dataclass
class ActionResult:
    done: int = 0
    skipped: int = 0  # nothing to do (already there, or gone), each logged
    failed: int = 0  # could not be moved or was not what was judged (each logged as an error); left where it was


def check_destination(root: Path, dest: Path, flag: str) -> None:
    """Refuse a destination that is the scanned folder, lies inside it, or holds it."""
    real_root, real_dest = Path(os.path.realpath(root)), Path(os.path.realpath(dest))
    if real_dest == real_root or real_root in real_dest.parents:
        raise RefineryError(f"{flag} {dest} is inside the scanned folder {root}; choose a folder outside it")
    if real_dest in real_root.parents:
        raise RefineryError(f"{flag} {dest} holds the scanned folder {root}; choose a folder outside it")


# ---------------------------------------------------------------------------------------
# Moving one entry between two folders


def _transfer(src: Entry, dst: Entry, scratch: int | None, is_link: bool, pinned: os.stat_result | None,
              expect_sha: str | None) -> None:
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
            raise _Changed("was replaced while it was being moved")
        now = os.lstat(src.name, dir_fd=src.folder)
        if (now.st_dev, now.st_ino) != (pinned.st_dev, pinned.st_ino):
            # Another file took the name after the checked one reached `dst`: that one is
            # not refinery's to move, and the checked one has moved.
            log.warning("%s: a new file took its name while it was being moved; the new one stays", src.name)
            return
        if not _same(now, pinned):
            raise _Changed("was written to while it was being moved")
        os.unlink(src.name, dir_fd=src.folder)
    except BaseException:
        os.unlink(dst.name, dir_fd=dst.folder)  # our new name only: the checked file is still at the source
        raise


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """One file, unchanged: same inode, size and modification time."""
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


class _Changed(OSError):
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
            st = os.fstat(fd_in)
            fd_out, tmp = create_exclusive(scratch, src.name, stat.S_IMODE(st.st_mode) | 0o200)
            try:
                digest = _copy_fd(fd_in, fd_out)
                os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.fsync(fd_out)
            except BaseException:
                os.close(fd_out)
                os.unlink(tmp, dir_fd=scratch)
                raise
            os.close(fd_out)
        finally:
            os.close(fd_in)
    try:
        if not is_link and expect_sha is not None and digest != expect_sha:
            raise _Changed("changed while it was being copied")
        os.link(tmp, dst.name, src_dir_fd=scratch, dst_dir_fd=dst.folder, follow_symlinks=False)
    finally:
        os.unlink(tmp, dir_fd=scratch)


def _copy_fd(fd_in: int, fd_out: int) -> str:
    """Copy all of `fd_in` to `fd_out`; the SHA-256 of what was copied."""
    h = hashlib.sha256()
    offset = 0
    while block := os.pread(fd_in, 1 << 20, offset):
        h.update(block)
        view = memoryview(block)
        while view:
            view = view[os.write(fd_out, view):]
        offset += len(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# move_out, recover, undo, copy_out


def move_out(root: Path, plan: list[Planned], journal: Journal, follow_symlinks: bool = False,
             advance: Callable[[int], None] = lambda n: None, stop: threading.Event | None = None) -> ActionResult:
    """Move root/REL to DEST/REL for each planned file that is still what was judged,
    journaling each move first. Files are reached as the run that judged them reached them:
    through symbolic links only with `follow_symlinks` (what the journal's header then says).
    Stops between two files when `stop` is set.

    Raises DeviceFull (after the files moved so far are journaled) when DEST cannot take more,
    JournalError when the journal cannot be written.
    """
    root = Path(root)
    recover(journal)
    journal.start_run(root, follow_symlinks)
    result = ActionResult()
    checker = Checker(Reach(root, follow_symlinks))
    with _Folders(journal.dest) as folders:
        for item in plan:
            if stop is not None and stop.is_set():
                break
            with _checked(checker, item) as source:
                if isinstance(source, str):
                    log.error("%s: %s", root / item.rel, source)
                ok = not isinstance(source, str) and _move_checked(source, item, journal, folders)
            result.done += ok
            result.failed += not ok
            advance(1)
    return result


def check_moves(root: Path, plan: list[Planned], follow_symlinks: bool = False) -> ActionResult:
    """What move_out would do now, moving nothing: each file checked as it would be, and each
    one that would stay logged as move_out logs it; `done` counts the files that would move."""
    root = Path(root)
    result = ActionResult()
    checker = Checker(Reach(root, follow_symlinks))
    for item in plan:
        with _checked(checker, item) as source:
            if isinstance(source, str):
                log.error("%s: %s", root / item.rel, source)
                result.failed += 1
            else:
                result.done += 1
    return result


@dataclass
class _Source:
    """A file that may move, checked; its folder stays open while its `_checked` block lasts."""

    path: Path
    entry: Entry
    pinned: os.stat_result | None  # the checked file's status (None for a link, checked through it)
    is_link: bool


@contextmanager
def _checked(checker: Checker, item: Planned) -> Iterator[_Source | str]:
    """The file `item` names, reached and checked as the run that judged it would: a _Source
    if it may move, else what its error line says."""
    try:
        folder = checker.reach.parent(item.rel)
    except Unreachable as e:
        yield f"not moved: {e}; left where it is"
        return
    except OSError as e:
        yield f"cannot move it: its folder cannot be opened ({e.strerror or e}); left where it is"
        return
    try:
        entry = Entry(folder, item.rel.rpartition("/")[2])
        why, pinned, is_link = checker.source_problem(entry, item)
        yield why or _Source(checker.reach.root / item.rel, entry, pinned, is_link)
    finally:
        os.close(folder)


def _move_checked(source: _Source, item: Planned, journal: Journal, folders: _Folders) -> bool:
    """Journal and move one checked file; False (with an error line) if it stays where it is."""
    src, src_path = source.entry, source.path
    try:
        dst_folder = folders.get(item.rel.split("/")[:-1])
        dst_name = free_name_at(dst_folder, src.name)
    except (OSError, UnsafePath) as e:
        log.error("%s: cannot move it into %s: %s; left where it is", src_path, journal.dest, _reason(e))
        return _device_check(e, journal)
    dst_rel = "/".join([*item.rel.split("/")[:-1], dst_name])
    move_id = journal.new_id()
    fingerprint = {"link": os.readlink(src.name, dir_fd=src.folder)} if source.is_link else {
        "sha256": item.judged.sha256, "bytes": item.judged.size}
    journal.append({"op": "move", "run": journal.run_id, "id": move_id, "src": item.rel, "dst": dst_rel,
                    **fingerprint})
    try:
        went = _place(src, dst_folder, dst_name, folders.scratch, source.is_link, source.pinned, item.judged.sha256)
    except OSError as e:
        journal.append({"op": "cancelled", "run": journal.run_id, "id": move_id})
        log.error("%s: not moved to %s: %s; left where it is", src_path, journal.dest / dst_rel, _reason(e))
        return _device_check(e, journal)
    if went != dst_name:
        journal.append({"op": "renamed", "run": journal.run_id, "id": move_id,
                        "dst": "/".join([*item.rel.split("/")[:-1], went])})
    journal.append({"op": "done", "run": journal.run_id, "id": move_id})
    return True


def _place(src: Entry, dst_folder: int, name: str, scratch: int, is_link: bool,
           pinned: os.stat_result | None, expect_sha: str | None) -> str:
    """Move `src` to `name` in `dst_folder`, or to the first free `name.N` if that is taken
    (even if taken between looking and moving); the name it went to."""
    while True:
        try:
            _transfer(src, Entry(dst_folder, name), scratch, is_link, pinned, expect_sha)
            return name
        except FileExistsError:
            name = free_name_at(dst_folder, name)


def _reason(e: BaseException) -> str:
    if isinstance(e, _Changed):
        return f"it {e.why}"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


def _device_check(e: BaseException, journal: Journal) -> bool:
    """Stop the run when the destination as a whole cannot take more; else go on (False)."""
    if isinstance(e, OSError) and e.errno in DEVICE_ERRORS:
        raise DeviceFull(f"{journal.dest}: {e.strerror}; stopped moving (the journal is whole: "
                         f"`refinery undo {journal.dest}` puts back what moved)")
    return False


class _Folders:
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

    def __enter__(self) -> _Folders:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in [*self.open.values(), self._root, *([self._scratch] if self._scratch is not None else [])]:
            os.close(fd)


def recover(journal: Journal) -> int:
    """Settle the moves a killed run left unfinished, and clear its partial copies; how many
    moves there were.

    Recovery rolls back, never forward, and never removes a file from the scanned folder:
    killed after the journal line, before the move, the source is in place ("cancelled");
    killed after the hard link, before the source was removed, the new name in DEST is
    taken back (the same file keeps its name in the folder: "cancelled"); killed after a
    copy across filesystems reached its name, both stay (the copy is equal; "cancelled");
    killed after the move, before "done", it is marked done.
    """
    _clear_scratch(journal)
    state = journal.read()
    settled = 0
    for move in state.unfinished():
        outcome = _settle(move, journal.dest)
        journal.append({"op": outcome, "run": move.run, "id": move.id})
        settled += 1
    if settled:
        log.warning("%s: settled %d moves a stopped run left unfinished", journal.path, settled)
    return settled


def _settle(move: Move, dest: Path) -> str:
    try:
        with _opened(move, dest, create=False) as (src, dst):
            src_st, dst_st = _lstat(src), _lstat(dst)
            if _one_entry(src, dst) or dst_st is None:
                return "cancelled"
            if src_st is None:
                return "done" if _matches(dst, move.fingerprint) else "cancelled"
            if (src_st.st_dev, src_st.st_ino) == (dst_st.st_dev, dst_st.st_ino):
                os.unlink(dst.name, dir_fd=dst.folder)  # one file, two names: the one in DEST goes
            elif _matches(dst, move.fingerprint):
                log.warning("%s: a stopped run left this copy of %s, which stays where it was",
                            dest / move.dst, move.root / move.src)
    except (OSError, UnsafePath):
        pass
    return "cancelled"


def _clear_scratch(journal: Journal) -> None:
    """Partial copies a killed run left in DEST/.refinery/tmp (only refinery writes there)."""
    try:
        scratch = open_folder(journal.dest, [STATE, SCRATCH])
    except (OSError, UnsafePath):
        return
    try:
        for name in os.listdir(scratch):
            if name.endswith(TEMP_SUFFIX):
                try:
                    if not stat.S_ISDIR(os.lstat(name, dir_fd=scratch).st_mode):
                        os.unlink(name, dir_fd=scratch)
                except OSError:
                    pass
    finally:
        os.close(scratch)


@contextmanager
def _opened(move: Move, dest: Path, create: bool) -> Iterator[tuple[Entry, Entry]]:
    """(the entry in the scanned folder, the entry in DEST) of a move. DEST's side is reached
    without following links; the scanned side only as its run did."""
    src_parts, dst_parts = move.src.split("/"), move.dst.split("/")
    fds: list[int] = []
    try:
        fds.append(open_folder(move.root, src_parts[:-1], create=create, follow=move.follow_symlinks))
        fds.append(open_folder(dest, dst_parts[:-1]))
        yield Entry(fds[0], src_parts[-1]), Entry(fds[1], dst_parts[-1])
    finally:
        for fd in fds:
            os.close(fd)


def _one_entry(a: Entry, b: Entry) -> bool:
    """Whether two entries are one: the same name in the same folder (reached two ways)."""
    fa, fb = os.fstat(a.folder), os.fstat(b.folder)
    return a.name == b.name and (fa.st_dev, fa.st_ino) == (fb.st_dev, fb.st_ino)


def _lstat(entry: Entry) -> os.stat_result | None:
    try:
        return os.lstat(entry.name, dir_fd=entry.folder)
    except FileNotFoundError:
        return None


def _matches(entry: Entry, fingerprint: dict) -> bool:
    """Whether the entry is what the journal says was moved (a link's text, or a file's bytes)."""
    if "link" in fingerprint:
        try:
            return os.readlink(entry.name, dir_fd=entry.folder) == fingerprint["link"]
        except OSError:
            return False
    try:
        fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=entry.folder)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        return is_regular(st) and st.st_size == fingerprint["bytes"] and fd_sha256(fd) == fingerprint["sha256"]
    finally:
        os.close(fd)


def undo(journal: Journal, advance: Callable[[int], None] = lambda n: None,
         stop: threading.Event | None = None) -> ActionResult:
    """Put back every file the journal says was moved and not yet put back, newest first.

    A file that is no longer in DEST, or whose bytes changed there, or whose original path is
    taken again, is reported and left where it is; the rest go on. Raises DeviceFull when
    the scanned folder's disk cannot take more.
    """
    recover(journal)
    result = ActionResult()
    for move in journal.read().pending():
        if stop is not None and stop.is_set():
            break
        problem = _put_back(move, journal.dest)
        if problem:
            log.error("%s: cannot put back to %s: %s; left where it is", journal.dest / move.dst,
                      move.root / move.src, problem)
            result.skipped += 1
        else:
            journal.append({"op": "undone", "run": move.run, "id": move.id})
            result.done += 1
        advance(1)
    return result


def _put_back(move: Move, dest: Path) -> str:
    """Move one file back; '' if it went, else why not."""
    if not move.root.is_dir():
        return f"the folder {move.root} that its run scanned is not there"
    try:
        with _opened(move, dest, create=True) as (src, dst):
            if _lstat(dst) is None:
                return "it is no longer there; was it moved by hand?"
            if _lstat(src) is not None:
                return "the original path is taken again"
            if _one_entry(src, dst) or not _matches(dst, move.fingerprint):
                return "it changed since it was moved"
            is_link = "link" in move.fingerprint
            pinned = None if is_link else os.lstat(dst.name, dir_fd=dst.folder)
            # Across filesystems the copy is made beside its target, in the scanned folder.
            _transfer(dst, src, None, is_link, pinned, move.fingerprint.get("sha256"))
    except FileNotFoundError:
        return "it is no longer there; was it moved by hand?"
    except FileExistsError:
        return "the original path is taken again"
    except UnsafePath as e:
        return str(e)
    except OSError as e:
        if e.errno in DEVICE_ERRORS:
            raise DeviceFull(f"{move.root}: {e.strerror}; stopped putting back (run undo again when there "
                             "is room)") from None
        return _reason(e)
    return ""


def copy_out(root: Path, plan: list[Planned], dest: Path, advance: Callable[[int], None] = lambda n: None,
             stop: threading.Event | None = None, follow_symlinks: bool = False) -> ActionResult:
    """Copy root/REL to dest/REL for each planned file that is still what was judged (never
    over an existing file; the bytes copied are the bytes judged), each reached as the run
    that judged it did (through symbolic links only with `follow_symlinks`). Stops between
    two files when `stop` is set; raises DeviceFull when DEST cannot take more."""
    root, dest = Path(root), Path(dest)
    result = ActionResult()
    dest.mkdir(parents=True, exist_ok=True)
    reach = Reach(root, follow_symlinks)
    with _Folders(dest) as folders:
        for item in plan:
            if stop is not None and stop.is_set():
                break
            why = _copy_one(reach, item, folders)
            if why:
                log.error("%s: not copied: %s", root / item.rel, why)
                result.failed += 1
            else:
                result.done += 1
            advance(1)
    return result


def _copy_one(reach: Reach, item: Planned, folders: _Folders) -> str:
    """Copy one file; '' if it was copied, else why not."""
    try:
        folder = reach.parent(item.rel)
    except (Unreachable, OSError) as e:
        return _reason(e)
    try:
        reach.file(folder, item.rel)
        fd_in, why = open_source(item.rel.rpartition("/")[2], folder)
    except FileNotFoundError:
        fd_in, why = None, "is gone"
    except (Unreachable, OSError) as e:
        return _reason(e)
    finally:
        os.close(folder)
    if fd_in is None:
        return f"it {why}"
    try:
        st = os.fstat(fd_in)
        if not is_regular(st) or (st.st_size, st.st_mtime_ns) != (item.judged.size, item.judged.mtime_ns):
            return "it changed since it was judged (size or modification time)"
        parts = item.rel.split("/")
        folder = folders.get(parts[:-1])
        fd_out, tmp = create_exclusive(folder, parts[-1], stat.S_IMODE(st.st_mode) | 0o200)
        try:
            try:
                digest = _copy_fd(fd_in, fd_out)
                os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.fsync(fd_out)
            finally:
                os.close(fd_out)
            if digest != item.judged.sha256:
                return "it changed since it was judged (its bytes)"
            link_as_new(folder, tmp, parts[-1])
            return ""
        finally:
            os.unlink(tmp, dir_fd=folder)
    except (OSError, UnsafePath) as e:
        if isinstance(e, OSError) and e.errno in DEVICE_ERRORS:
            raise DeviceFull(f"{folders.dest}: {e.strerror}; stopped copying (nothing half-written is left)") from None
        return _reason(e)
    finally:
        os.close(fd_in)
