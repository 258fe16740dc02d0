"""Acting on decisions: move rejects out, or copy keepers out. Never delete, never overwrite.

Every move is journaled in DEST/.refinery/journal.jsonl, flushed to disk before the file
moves, so `refinery undo DEST` can put everything back even after a crash:

    {"op": "move", "id": N, "src": ABS, "dst": ABS, "sha256": ..., "bytes": ...}   before the move
    {"op": "done", "id": N}                                                       after it
    {"op": "cancelled", "id": N}      a crash came before the file moved; found by the next run
    {"op": "undone", "id": N}                                                     after undo

A move of a symbolic link moves the link (its text is journaled as "link"), never its target.
A name already taken at the destination is never overwritten: the file gets a suffix,
`name.1.jpg`, `name.2.jpg`, ...
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from refinery.errors import RefineryError
from refinery.fileio import file_sha256

log = logging.getLogger(__name__)

JOURNAL = Path(".refinery") / "journal.jsonl"


@dataclass
class ActionResult:
    done: int = 0
    skipped: int = 0  # nothing to do (already there, or gone), each logged
    failed: int = 0  # could not be moved (each logged as an error); left where it was


def free_name(path: Path) -> Path:
    """`path` if nothing is there, else the first `stem.N.suffix` that is free."""
    candidate, n = path, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    return candidate


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


class Journal:
    """Append-only JSON lines, each flushed and fsynced before the caller goes on."""

    def __init__(self, dest: Path):
        self.path = Path(dest) / JOURNAL
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash: the move never started
                log.warning("%s: skipping a damaged journal line", self.path)
        return out

    def next_id(self) -> int:
        return 1 + max((e.get("id", 0) for e in self.entries()), default=0)

    def moves(self) -> dict[int, dict]:
        """Every journaled move by id, its "dst" where it really went, its last "op" as "state"."""
        moves: dict[int, dict] = {}
        for e in self.entries():
            if e.get("op") == "move":
                moves[e["id"]] = {**e, "state": "move"}
            elif e.get("id") in moves:
                if e.get("op") == "renamed":
                    moves[e["id"]]["dst"] = e["dst"]
                else:
                    moves[e["id"]]["state"] = e.get("op")
        return moves

    def unfinished(self) -> list[dict]:
        """Moves journaled but never marked done or cancelled: a run was stopped during them."""
        return [m for m in self.moves().values() if m["state"] == "move"]

    def pending(self) -> list[dict]:
        """Moves done and not yet undone, newest first."""
        return sorted((m for m in self.moves().values() if m["state"] == "done"), key=lambda m: -m["id"])

    def append(self, entry: dict) -> None:
        with open(self.path, "ab+") as f:
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")  # the last line was cut short by a crash: start a fresh one
            f.write((json.dumps(entry) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())


def move_file(src: Path, dst: Path) -> None:
    """Move without overwriting (FileExistsError if `dst` is taken); a symbolic link moves as a
    link. Across filesystems: copy, flush to disk, verify, and only then remove the source."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst, follow_symlinks=False)  # atomic, and fails if dst is taken
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        _copy_verified(src, dst)
    try:
        os.unlink(src)
    except OSError:
        os.unlink(dst)  # the source cannot go (a read-only folder): take the new name back
        raise


def _copy_verified(src: Path, dst: Path) -> None:
    """Copy `src` to a temporary name beside `dst`, make sure it is on disk and equal, then
    give it its name (without overwriting)."""
    tmp = dst.with_name(f".{dst.name}.refinery-tmp")
    tmp.unlink(missing_ok=True)  # left by a run that was killed while copying
    if src.is_symlink():
        target = os.readlink(src)
        os.symlink(target, tmp)
        same = os.readlink(tmp) == target
    else:
        shutil.copy2(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        same = file_sha256(tmp) == file_sha256(src)
    try:
        if not same:
            raise OSError(f"the copy of {src} at {dst} does not match the original; source kept")
        os.link(tmp, dst, follow_symlinks=False)  # fails if dst was taken meanwhile
    finally:
        os.unlink(tmp)


def place(src: Path, dst: Path) -> Path:
    """Move `src` to `dst`, or to the first free `dst.N.suffix` if that is taken (even if it
    is taken between looking and moving); the path it went to."""
    while True:
        target = free_name(dst)
        try:
            move_file(src, target)
            return target
        except FileExistsError:
            continue


def fingerprint(path: Path) -> dict:
    """What undo checks before putting a file back: its bytes' hash, or a link's text."""
    if path.is_symlink():
        return {"link": os.readlink(path)}
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def unchanged(path: Path, entry: dict) -> bool:
    """Whether `path` is still what the journal `entry` says was moved."""
    if "link" in entry:
        return path.is_symlink() and os.readlink(path) == entry["link"]
    return not path.is_symlink() and file_sha256(path) == entry.get("sha256")


def absolute(path: Path) -> Path:
    """An absolute path to `path` itself: its folder resolved, a final symbolic link not followed."""
    return Path(path).parent.resolve() / Path(path).name


def recover(journal: Journal) -> int:
    """Settle the moves a killed run left unfinished; how many there were.

    Killed after the journal line, before the move: the source is still in place
    ("cancelled"). Killed after the hard link (or a verified copy across filesystems), before
    the source was unlinked: finish the move. Killed after the move, before "done": mark it done.
    """
    settled = 0
    for entry in journal.unfinished():
        src, dst = Path(entry["src"]), Path(entry["dst"])
        if _same_file(src, dst) or (_exists(src) and _exists(dst) and unchanged(dst, entry)
                                    and unchanged(src, entry)):
            os.unlink(src)
            journal.append({"op": "done", "id": entry["id"]})
        elif _exists(dst) and not _exists(src):
            journal.append({"op": "done", "id": entry["id"]})
        else:
            journal.append({"op": "cancelled", "id": entry["id"]})
        settled += 1
    if settled:
        log.warning("%s: settled %d moves a stopped run left unfinished", journal.path, settled)
    return settled


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are two names of one file (a symbolic link counts as itself)."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def move_out(root: Path, rel_paths: list[str], dest: Path,
             advance: Callable[[int], None] = lambda n: None, stop: threading.Event | None = None) -> ActionResult:
    """Move root/REL to dest/REL for each path, journaling each move first. Stops between two
    files when `stop` is set."""
    root, dest = Path(root), Path(dest)
    if _inside(dest, root):
        raise RefineryError(f"{dest} is inside {root}; choose a destination outside the scanned folder")
    journal = Journal(dest)
    recover(journal)
    next_id = journal.next_id()
    result = ActionResult()
    for rel in rel_paths:
        if stop is not None and stop.is_set():
            break
        src = root / rel
        if not _exists(src):
            log.warning("%s: gone before it could be moved; skipped", src)
            result.skipped += 1
        else:
            dst = free_name(dest / rel)
            journal.append({"op": "move", "id": next_id, "src": str(absolute(src)), "dst": str(absolute(dst)),
                            **fingerprint(src)})
            try:
                went = place(src, dst)
            except OSError as e:
                log.error("%s: cannot move to %s: %s; left where it is", src, dst, e.strerror or e)
                journal.append({"op": "cancelled", "id": next_id})
                result.failed += 1
            else:
                if went != dst:  # taken between the journal line and the move
                    journal.append({"op": "renamed", "id": next_id, "dst": str(absolute(went))})
                journal.append({"op": "done", "id": next_id})
                result.done += 1
            next_id += 1
        advance(1)
    return result


def copy_out(root: Path, rel_paths: list[str], dest: Path,
             advance: Callable[[int], None] = lambda n: None, stop: threading.Event | None = None) -> ActionResult:
    """Copy root/REL to dest/REL (never over an existing file). Stops between two files when
    `stop` is set."""
    root, dest = Path(root), Path(dest)
    result = ActionResult()
    for rel in rel_paths:
        if stop is not None and stop.is_set():
            break
        dst = free_name(dest / rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.refinery-tmp")
        shutil.copy2(root / rel, tmp)
        while True:
            try:
                os.link(tmp, dst)  # never over a file that appeared meanwhile
                break
            except FileExistsError:
                dst = free_name(dst)
        os.unlink(tmp)
        result.done += 1
        advance(1)
    return result


def undo(dest: Path, advance: Callable[[int], None] = lambda n: None,
         stop: threading.Event | None = None) -> ActionResult:
    """Put back every file the journal in `dest` says was moved and not yet put back.

    A file that is no longer in `dest`, or whose bytes changed there, or whose original path
    is taken again, is reported and left where it is; the rest go on.
    """
    journal = Journal(dest)
    if not journal.path.exists():
        raise RefineryError(f"{dest}: no refinery journal ({JOURNAL}); nothing was moved there")
    recover(journal)
    result = ActionResult()
    for entry in journal.pending():
        if stop is not None and stop.is_set():
            break
        src, dst = Path(entry["src"]), Path(entry["dst"])
        problem = _undo_problem(src, dst, entry)
        if problem:
            log.error("%s: cannot put back to %s: %s; left where it is", dst, src, problem)
            result.skipped += 1
        else:
            try:
                move_file(dst, src)
                journal.append({"op": "undone", "id": entry["id"]})
                result.done += 1
            except OSError as e:
                log.error("%s: cannot put back to %s: %s; left where it is", dst, src, e.strerror or e)
                result.skipped += 1
        advance(1)
    return result


def _undo_problem(src: Path, dst: Path, entry: dict) -> str:
    """Why the file journaled in `entry` cannot go back, or "" if it can."""
    if not _exists(dst):
        return "it is no longer there; was it moved by hand?"
    if _exists(src):
        return "the original path is taken again"
    if not unchanged(dst, entry):
        return "it changed since it was moved"
    return ""
