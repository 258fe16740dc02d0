"""A dedup report as the review page reads it: checked to be one the page can show and save,
line by line, every value it uses of the type dedup writes (docs/review.md, "A report edited
by hand"); what it cannot be is one line naming the file and what is wrong."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from refinery.dedup.checks import Judged
from refinery.errors import RefineryError
from refinery.io.fileio import read_json
from refinery.io.names import is_plain_path, is_sha256_hex, printable

DECISIONS = ("keep", "remove", "error", "skip")


def load_report(path: Path) -> dict[str, Any]:
    """A dedup report (`refinery dedup --report`), checked to be one the page can show and
    save; else RefineryError in one line naming the file and what is wrong."""
    report = read_json(path, "a dedup report")  # its own line names the file
    if isinstance(report, dict) and "refinery_decisions" in report:
        raise RefineryError(
            f"{path} is a decisions file (saved from a review page): resume it with the report it came from: "
            f"refinery review REPORT.json --decisions {path} --html review.html"
        )
    try:
        return check_report(report)
    except RefineryError as e:
        raise RefineryError(f"{path}: {e}") from None


def check_report(report: object) -> dict[str, Any]:
    """`report`, if it is a dedup report whose every line the page can show and save as it is:
    a summary whose root is an absolute folder, and a list of lines, each a keep, remove, error
    or skip of a path, every value the page uses of the type dedup writes (docs/review.md, "A
    report edited by hand"); else RefineryError in one line. Keys the page does not use are
    not looked at."""
    if (
        not isinstance(report, dict)
        or not isinstance(report.get("summary"), dict)
        or not isinstance(report.get("files"), list)
    ):
        raise RefineryError(
            "not a dedup report (it needs a summary and a list of files); write one with refinery dedup --report"
        )
    root = report["summary"].get("root")
    if not isinstance(root, str) or not os.path.isabs(root) or "\x00" in root:
        raise RefineryError("the report's summary names no root folder (an absolute path)")
    if not isinstance(report["summary"].get("follow_symlinks", False), bool):
        raise RefineryError("the report's summary.follow_symlinks is neither true nor false")
    for number, line in enumerate(report["files"], start=1):
        if why := _unfit(line):
            raise RefineryError(f"file entry {number} is not a report line: {why}")
    return report


def _unfit(line: object) -> str:
    """Why the page cannot show and save this line of a report as it is; "" if it can."""
    if not isinstance(line, dict):
        return "not a JSON object"
    path, decision = line.get("path"), line.get("decision")
    if not isinstance(path, str) or not path:
        return "its path is not a file's name"
    where = _cut(printable(path)) + ": "
    if not isinstance(decision, str) or decision not in DECISIONS:
        return where + "its decision is not keep, remove, error or skip"
    if decision == "skip":  # counted, never shown
        return ""
    if decision != "error" and not is_plain_path(path):  # an error's path is only shown, never read
        return where + "its path is not a plain path below the root (like sub/a.jpg)"
    for key in ("stage", "reason", "test"):
        if line.get(key) is not None and not isinstance(line[key], str):
            return f"{where}{key} is neither text nor null"
    kept_as, against = line.get("kept_as"), line.get("against")
    if against is not None and not (_absolute(against) and _absolute(kept_as)):
        return where + "against is neither null nor an absolute path beside an absolute kept_as"
    if line.get("kept_as_sha256") is not None and not is_sha256_hex(line["kept_as_sha256"]):
        return where + "kept_as_sha256 is neither a SHA-256 in hex nor null"
    if kept_as is not None and against is None and not is_plain_path(kept_as):
        return where + "kept_as is neither a plain path below the root nor null"
    group = line.get("group")
    if group is not None and (not isinstance(group, int) or isinstance(group, bool)):
        return where + "group is neither a whole number nor null"
    scores = line.get("scores")
    if scores is not None and not (isinstance(scores, dict) and all(map(_number, scores.values()))):
        return where + "scores is neither an object of numbers nor null"
    if line.get("file") is not None and not _judged(line["file"]):
        return where + "file is neither {bytes, mtime_ns, sha256} as dedup writes it nor null"
    return ""


def _absolute(value: object) -> bool:
    """A reference's path (`dedup --against`): absolute, and text a path can be."""
    return isinstance(value, str) and os.path.isabs(value) and "\x00" not in value


def _judged(value: object) -> bool:
    """A line's `file` as dedup writes it and apply checks it: what was judged of the file."""
    try:
        Judged.from_json(value)
    except ValueError:
        return False
    return True


def _number(value: object) -> bool:
    """A number a float holds: NaN and Infinity are not JSON, nor would a browser read them."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past a float's range
        return False


def _cut(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[:most] + "..."
