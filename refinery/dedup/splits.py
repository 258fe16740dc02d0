"""Dataset splits (keep.splits, `refinery dedup DATA --splits train,val,test`): duplicates
counted across and within splits, as a matrix - the keeper's split by the removed file's -
the way a leakage report reads (train-test, val-test, ...). A group keeps the earliest
split's copy (groups.KeepRule), so a test picture that the training set holds goes from test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from refinery.dedup.decisions import REMOVE, Decisions
from refinery.dedup.groups import split_of

NONE = "(no split)"  # files under no folder named as a split


def split_matrix(decisions: Decisions, names: Sequence[str]) -> dict[str, Any]:
    """{"names": [...], "duplicates": {keeper's split: {removed file's split: count}}}: every
    file removed as a duplicate of a kept one, by where each lies."""
    labels = [*names, NONE]
    counts = np.zeros((len(labels), len(labels)), np.int64)
    paths = decisions.table.paths
    removed = np.flatnonzero((decisions.code == REMOVE) & (decisions.keeper >= 0)).tolist()
    for row in removed:
        counts[split_of(paths[int(decisions.keeper[row])], names), split_of(paths[row], names)] += 1
    files = np.bincount([split_of(path, names) for path in paths], minlength=len(labels))
    shown = [k for k, label in enumerate(labels) if label != NONE or counts[k].any() or counts[:, k].any()]
    return {
        "names": list(names),
        "files": {label: int(files[k]) for k, label in enumerate(labels)},
        "duplicates": {labels[a]: {labels[b]: int(counts[a, b]) for b in shown} for a in shown},
    }


def split_names(summary: dict[str, Any]) -> list[str]:
    """The splits a report's summary names (read back from disk: checked), else []."""
    splits = summary.get("splits")
    names = splits.get("names") if isinstance(splits, dict) else None
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else []


def splits_of(paths: Sequence[str], names: Sequence[str]) -> list[str]:
    """The splits `paths` lie in, earliest first; NONE last."""
    found = sorted({split_of(path, names) for path in paths})
    return [names[k] if k < len(names) else NONE for k in found]


def matrix_table(matrix: dict[str, Any]) -> str:
    """The matrix as the command prints it."""
    duplicates = matrix["duplicates"]
    labels = list(duplicates)
    width = max(9, *(len(label) + 2 for label in labels))
    lines = ["duplicates across splits (rows: the split a group keeps; columns: the split its copies go from)"]
    lines.append(" " * width + "".join(f"{label:>{width}s}" for label in labels))
    for keeper in labels:
        lines.append(f"{keeper:{width}s}" + "".join(f"{duplicates[keeper][other]:>{width}d}" for other in labels))
    empty = [name for name in matrix["names"] if not matrix["files"].get(name)]
    if empty:
        lines.append(f"no file under a folder named {', '.join(empty)}: is --splits spelled as the folders are?")
    return "\n".join(lines)
