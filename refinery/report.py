"""The dedup report: JSON (summary + one entry per file) and CSV. Other tools read these;
the schema is stable: path, decision, stage, reason, group, kept_as, scores."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from refinery.fileio import write_text_atomic
from refinery.pipeline import DedupResult

FIELDS = ("path", "decision", "stage", "reason", "group", "kept_as", "scores")


def report_dict(result: DedupResult) -> dict:
    return {"summary": result.summary(),
            "files": [{k: getattr(f, k) for k in FIELDS} for f in result.files]}


def write_json(result: DedupResult, path: Path) -> None:
    write_text_atomic(path, json.dumps(report_dict(result), indent=1) + "\n")


def write_csv(result: DedupResult, path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(FIELDS)
    for f in result.files:
        writer.writerow([f.path, f.decision, f.stage or "", f.reason,
                         "" if f.group is None else f.group, f.kept_as or "", json.dumps(f.scores)])
    write_text_atomic(path, buf.getvalue())
