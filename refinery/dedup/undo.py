"""Putting moves back: `recover` settles the moves a killed run left unfinished (rolling back,
never forward), `undo` puts back every file a journal says was moved. What is checked, and
why: refinery/dedup/actions.py."""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from refinery.dedup.checks import Entry
from refinery.dedup.journal import STATE, Journal, Move, Moved
from refinery.dedup.transfer import SCRATCH, ActionResult, reason, transfer
from refinery.errors import DeviceFull, UnsafePath
from refinery.io.fileio import DEVICE_ERRORS, TEMP_SUFFIX, fd_sha256, is_regular, open_folder

log = logging.getLogger(__name__)


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
                return "done" if _matches(dst, move.moved) else "cancelled"
            if (src_st.st_dev, src_st.st_ino) == (dst_st.st_dev, dst_st.st_ino):
                os.unlink(dst.name, dir_fd=dst.folder)  # one file, two names: the one in DEST goes
            elif _matches(dst, move.moved):
                log.warning(
                    "%s: a stopped run left this copy of %s, which stays where it was",
                    dest / move.dst,
                    move.root / move.src,
                )
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


def _matches(entry: Entry, moved: Moved) -> bool:
    """Whether the entry is what the journal says was moved (a link's text, or a file's bytes)."""
    if moved.link is not None:
        try:
            return os.readlink(entry.name, dir_fd=entry.folder) == moved.link
        except OSError:
            return False
    try:
        fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=entry.folder)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        return is_regular(st) and st.st_size == moved.size and fd_sha256(fd) == moved.sha256
    finally:
        os.close(fd)


def undo(
    journal: Journal, *, advance: Callable[[int], None] = lambda n: None, stop: threading.Event | None = None
) -> ActionResult:
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
            log.error(
                "%s: cannot put back to %s: %s; left where it is",
                journal.dest / move.dst,
                move.root / move.src,
                problem,
            )
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
            if _one_entry(src, dst) or not _matches(dst, move.moved):
                return "it changed since it was moved"
            is_link = move.moved.is_link
            pinned = None if is_link else os.lstat(dst.name, dir_fd=dst.folder)
            # Across filesystems the copy is made beside its target, in the scanned folder.
            transfer(dst, src, None, is_link, pinned, None if move.moved.is_link else move.moved.sha256)
    except FileNotFoundError:
        return "it is no longer there; was it moved by hand?"
    except FileExistsError:
        return "the original path is taken again"
    except UnsafePath as e:
        return str(e)
    except OSError as e:
        if e.errno in DEVICE_ERRORS:
            raise DeviceFull(
                f"{move.root}: {e.strerror}; stopped putting back (run undo again when there is room)"
            ) from None
        return reason(e)
    return ""
