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

The work is in four modules: this one checks and moves (move_out, check_moves); copies.py
copies keepers out (copy_out); undo.py settles a killed run's moves and puts moves back
(recover, undo); transfer.py moves or copies one entry between two folders.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from refinery.dedup.checks import Checker, Entry, Planned, Reach
from refinery.dedup.journal import Journal, Moved
from refinery.dedup.transfer import ActionResult, Folders, reason, transfer
from refinery.dedup.undo import recover
from refinery.errors import DeviceFull, RefineryError, Unreachable, UnsafePath
from refinery.io.fileio import DEVICE_ERRORS, free_name_at

log = logging.getLogger(__name__)


def check_destination(root: Path, dest: Path, flag: str) -> None:
    """Refuse a destination that is the scanned folder, lies inside it, or holds it."""
    real_root, real_dest = Path(os.path.realpath(root)), Path(os.path.realpath(dest))
    if real_dest == real_root or real_root in real_dest.parents:
        raise RefineryError(f"{flag} {dest} is inside the scanned folder {root}; choose a folder outside it")
    if real_dest in real_root.parents:
        raise RefineryError(f"{flag} {dest} holds the scanned folder {root}; choose a folder outside it")


def move_out(
    root: Path,
    plan: list[Planned],
    journal: Journal,
    *,
    follow_symlinks: bool = False,
    advance: Callable[[int], None] = lambda n: None,
    stop: threading.Event | None = None,
) -> ActionResult:
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
    with Folders(journal.dest) as folders:
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


def check_moves(root: Path, plan: list[Planned], *, follow_symlinks: bool = False) -> ActionResult:
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


def _move_checked(source: _Source, item: Planned, journal: Journal, folders: Folders) -> bool:
    """Journal and move one checked file; False (with an error line) if it stays where it is."""
    src, src_path = source.entry, source.path
    try:
        dst_folder = folders.get(item.rel.split("/")[:-1])
        dst_name = free_name_at(dst_folder, src.name)
    except (OSError, UnsafePath) as e:
        log.error("%s: cannot move it into %s: %s; left where it is", src_path, journal.dest, reason(e))
        return _device_check(e, journal)
    dst_rel = "/".join([*item.rel.split("/")[:-1], dst_name])
    move_id = journal.new_id()
    moved = Moved(link=os.readlink(src.name, dir_fd=src.folder)) if source.is_link else Moved.file(item.judged)
    journal.append(
        {"op": "move", "run": journal.run_id, "id": move_id, "src": item.rel, "dst": dst_rel, **moved.to_json()}
    )
    try:
        went = _place(src, dst_folder, dst_name, folders.scratch, source.is_link, source.pinned, item.judged.sha256)
    except OSError as e:
        journal.append({"op": "cancelled", "run": journal.run_id, "id": move_id})
        log.error("%s: not moved to %s: %s; left where it is", src_path, journal.dest / dst_rel, reason(e))
        return _device_check(e, journal)
    if went != dst_name:
        journal.append(
            {"op": "renamed", "run": journal.run_id, "id": move_id, "dst": "/".join([*item.rel.split("/")[:-1], went])}
        )
    journal.append({"op": "done", "run": journal.run_id, "id": move_id})
    return True


def _place(
    src: Entry,
    dst_folder: int,
    name: str,
    scratch: int,
    is_link: bool,
    pinned: os.stat_result | None,
    expect_sha: str | None,
) -> str:
    """Move `src` to `name` in `dst_folder`, or to the first free `name.N` if that is taken
    (even if taken between looking and moving); the name it went to."""
    while True:
        try:
            transfer(src, Entry(dst_folder, name), scratch, is_link, pinned, expect_sha)
            return name
        except FileExistsError:
            name = free_name_at(dst_folder, name)


def _device_check(e: BaseException, journal: Journal) -> bool:
    """Stop the run when the destination as a whole cannot take more; else go on (False)."""
    if isinstance(e, OSError) and e.errno in DEVICE_ERRORS:
        raise DeviceFull(
            f"{journal.dest}: {e.strerror}; stopped moving (the journal is whole: "
            f"`refinery undo {journal.dest}` puts back what moved)"
        )
    return False
