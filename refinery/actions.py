"""Acting on decisions: move rejects out, or copy keepers out. Never delete, never overwrite.

Every move is journaled in DEST/.refinery/journal.jsonl, flushed to disk before the file
moves, so `refinery undo DEST` can put everything back even after a crash:

    {"op": "move", "id": N, "src": ABS, "dst": ABS, "sha256": ..., "bytes": ...}   before the move
    {"op": "done", "id": N}                                                       after it
    {"op": "undone", "id": N}                                                     after undo

A name already taken at the destination is never overwritten: the file gets a suffix,
`name.1.jpg`, `name.2.jpg`, ...
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
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
    """Move without overwriting; across filesystems copy, verify, then remove the source."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        raise FileExistsError(dst)
    try:
        os.link(src, dst)  # atomic, and fails if dst appeared meanwhile
        os.unlink(src)
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
    tmp = dst.with_name(f".{dst.name}.refinery-tmp")
    shutil.copy2(src, tmp)
    if file_sha256(tmp) != file_sha256(src):
        tmp.unlink()
        raise OSError(f"copy of {src} to {dst} does not match the original; source kept")
    os.rename(tmp, dst)
    os.unlink(src)


def move_out(root: Path, rel_paths: list[str], dest: Path,
             advance: Callable[[int], None] = lambda n: None) -> ActionResult:
    """Move root/REL to dest/REL for each path, journaling each move first."""
    root, dest = Path(root), Path(dest)
    if _inside(dest, root):
        raise RefineryError(f"{dest} is inside {root}; choose a destination outside the scanned folder")
    journal = Journal(dest)
    next_id = journal.next_id()
    result = ActionResult()
    for rel in rel_paths:
        src = root / rel
        if not src.is_file():
            log.warning("%s: gone before it could be moved; skipped", src)
            result.skipped += 1
        else:
            dst = free_name(dest / rel)
            entry = {"op": "move", "id": next_id, "src": str(src.resolve()), "dst": str(dst.resolve()),
                     "bytes": src.stat().st_size, "sha256": file_sha256(src)}
            journal.append(entry)
            move_file(src, dst)
            journal.append({"op": "done", "id": next_id})
            next_id += 1
            result.done += 1
        advance(1)
    return result


def copy_out(root: Path, rel_paths: list[str], dest: Path,
             advance: Callable[[int], None] = lambda n: None) -> ActionResult:
    """Copy root/REL to dest/REL (never over an existing file)."""
    root, dest = Path(root), Path(dest)
    result = ActionResult()
    for rel in rel_paths:
        dst = free_name(dest / rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.refinery-tmp")
        shutil.copy2(root / rel, tmp)
        os.rename(tmp, dst)
        result.done += 1
        advance(1)
    return result


def _pending_moves(journal: Journal) -> Iterator[dict]:
    """Journaled moves not yet undone, newest first."""
    moves: dict[int, dict] = {}
    for e in journal.entries():
        if e.get("op") == "move":
            moves[e["id"]] = e
        elif e.get("op") == "undone":
            moves.pop(e["id"], None)
    return iter(sorted(moves.values(), key=lambda e: -e["id"]))


def undo(dest: Path, advance: Callable[[int], None] = lambda n: None) -> ActionResult:
    """Put back every file the journal in `dest` says was moved and not yet put back."""
    journal = Journal(dest)
    if not journal.path.exists():
        raise RefineryError(f"{dest}: no refinery journal ({JOURNAL}); nothing was moved there")
    result = ActionResult()
    for entry in _pending_moves(journal):
        src, dst = Path(entry["src"]), Path(entry["dst"])
        if dst.is_file() and not src.exists():
            move_file(dst, src)
            journal.append({"op": "undone", "id": entry["id"]})
            result.done += 1
        elif src.is_file() and dst.is_file() and os.path.samefile(src, dst):
            os.unlink(dst)  # crashed between the hard link and the unlink: one file, two names
            journal.append({"op": "undone", "id": entry["id"]})
            result.done += 1
        elif src.is_file() and not dst.exists():  # crashed between journal and move, or undone by hand
            journal.append({"op": "undone", "id": entry["id"]})
            result.skipped += 1
        else:
            log.warning("%s: cannot put back to %s (%s); left where it is", dst, src,
                        "the original path is taken again" if src.exists() else "it is no longer there")
            result.skipped += 1
        advance(1)
    return result
