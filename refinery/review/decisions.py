"""A decisions file: what to keep and what to remove, as a review left it.

Version 1, JSON (written by the review page's "Save decisions"; docs/review.md):

    {"refinery_decisions": 1,
     "root": "/absolute/folder/the/run/judged",
     "follow_symlinks": false,                   whether that run reached files through links
     "files": [{"path": "sub/a.jpg",            relative to root
                "decision": "keep" | "remove",
                "kept_as": "b.jpg" | null,       the file that stays in its place (a duplicate)
                "file": {"bytes": N, "mtime_ns": N, "sha256": HEX} | null,   as judged
                "against": "/absolute/reference",   only where kept_as is a reference's picture
                "kept_as_sha256": HEX}, ...]}        (dedup --against): its absolute path, and
                                                  that picture's SHA-256 as judged

A dedup report (`--report`) is read the same way: its summary's root and follow_symlinks,
its keep and remove lines. A file without follow_symlinks (saved before it was recorded)
reads as false: nothing is reached through a link. Nothing read here is trusted beyond what
is checked: every line's types, paths that stay below the root, and a removed duplicate's
keeper kept in the same file; the files themselves are reached as that run reached them and
checked against `file` again before anything moves (refinery/dedup/actions.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from refinery.dedup.checks import Judged, Planned
from refinery.errors import RefineryError
from refinery.io.fileio import file_sha256, read_json
from refinery.io.names import is_plain_path, is_sha256_hex

VERSION = 1
DECIDED = ("keep", "remove")


@dataclass(frozen=True)
class Decision:
    path: str
    decision: str  # keep | remove
    kept_as: str | None
    file: Judged | None  # what was judged of it; None: nothing (it cannot be acted on)
    against: str | None = None  # the reference holding kept_as (an absolute path), if it is one's
    kept_as_sha256: str | None = None  # that reference picture's SHA-256 as judged


@dataclass(frozen=True)
class DecisionsFile:
    """A decisions file (or a dedup report) as read and checked: the folder its run judged and
    each file's decision (dedup/decisions.py's Decisions is a run's own columns)."""

    root: Path
    files: list[Decision]
    follow_symlinks: bool = False  # the run that judged the files went through symbolic links

    def plan(self, decision: str) -> tuple[list[Planned], list[tuple[str, str]]]:
        """The files with `decision` as the actions take them, and (path, why) for those that
        cannot be acted on: nothing judged of them, or a keeper the file does not keep."""
        kept = {d.path: d for d in self.files if d.decision == "keep"}
        planned, refused = [], []
        for d in self.files:
            if d.decision != decision:
                continue
            keeper = kept.get(d.kept_as) if d.kept_as else None
            if d.file is None:
                refused.append((d.path, "nothing was judged of it (an error line?)"))
            elif d.against and d.kept_as:  # a reference's picture: never moved, but it must be there, as judged
                if why := _reference_keeper_problem(d.kept_as, d.kept_as_sha256):
                    refused.append((d.path, f"its keeper {d.kept_as} (in the reference {d.against}) {why}; left"))
                else:
                    planned.append(Planned(d.path, d.file))
            elif d.kept_as and (keeper is None or keeper.file is None):
                refused.append(
                    (d.path, f"its keeper {d.kept_as} is not kept in the decisions; left, so the picture is not lost")
                )
            else:
                planned.append(Planned(d.path, d.file, d.kept_as, keeper.file if keeper else None))
        return planned, refused


def _reference_keeper_problem(path: str, sha256: str | None) -> str:
    """Why a reference's picture is no longer the keeper that was judged, or ""."""
    try:
        if not os.path.isfile(path):
            return "is gone"
        if sha256 is not None and file_sha256(Path(path)) != sha256:
            return "changed since it was judged"
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    return ""


def load(path: Path) -> DecisionsFile:
    """A decisions file (or a dedup report), checked line by line; RefineryError naming the
    file, the line and what is wrong."""
    path = Path(path)
    data = read_json(path, "a decisions file or a dedup report")
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise RefineryError(f"{path}: not a decisions file nor a dedup report (no list of files)")
    if "refinery_decisions" in data:
        version = data["refinery_decisions"]
        if type(version) is not int or version != VERSION:  # true == 1 in Python: not a version
            raise RefineryError(f"{path}: decisions version {version!r}; this refinery reads {VERSION}")
        head = data
    else:
        summary = data.get("summary")
        head = summary if isinstance(summary, dict) else {}
    root, follow = head.get("root"), head.get("follow_symlinks", False)
    if not isinstance(root, str) or not Path(root).is_absolute():
        raise RefineryError(f"{path}: no absolute root folder in it")
    if not isinstance(follow, bool):
        raise RefineryError(f"{path}: follow_symlinks is {follow!r}, not true or false")
    files = []
    seen: set[str] = set()
    for number, line in enumerate(data["files"], start=1):
        try:
            decision = _line(line)
        except KeyError as e:
            raise RefineryError(f"{path}: file entry {number}: lacks {e}") from None
        except (TypeError, ValueError) as e:
            raise RefineryError(f"{path}: file entry {number}: {e}") from None
        if decision is None:
            continue
        if decision.path in seen:
            raise RefineryError(f"{path}: file entry {number}: {decision.path} is listed twice")
        seen.add(decision.path)
        files.append(decision)
    return DecisionsFile(Path(root), files, follow)


def _line(line: object) -> Decision | None:
    if not isinstance(line, dict):
        raise TypeError("not a JSON object")
    decision = line["decision"]
    if decision in ("error", "skip"):  # a report's lines for files no stage judged
        return None
    if decision not in DECIDED:
        raise ValueError(f"decision {decision!r} is not keep or remove")
    kept_as, against, kept_sha256 = line.get("kept_as"), line.get("against"), line.get("kept_as_sha256")
    if against is not None:  # kept as a reference's picture (dedup --against): both absolute
        if not (_absolute(against) and _absolute(kept_as)):
            raise ValueError("against and kept_as are not absolute paths")
        if kept_sha256 is not None and not is_sha256_hex(kept_sha256):
            raise ValueError("kept_as_sha256 is not a SHA-256 in hex")
    elif kept_as is not None:
        kept_as = _relative(kept_as)
    file = line.get("file")
    judged = None if file is None else Judged.from_json(file)
    return Decision(_relative(line["path"]), decision, kept_as, judged, against, kept_sha256 if against else None)


def _absolute(value: object) -> bool:
    return isinstance(value, str) and os.path.isabs(value) and "\x00" not in value


def _relative(value: object) -> str:
    if not is_plain_path(value):
        shown = repr(value)
        raise ValueError(f"{shown[:80] + '...' if len(shown) > 80 else shown} is not a plain path below the root")
    return value
