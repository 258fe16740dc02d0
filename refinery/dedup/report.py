"""The dedup report: JSON (summary + one entry per file) and CSV. Other tools read these;
the schema is stable: path, decision, stage, reason, group, kept_as, scores, test, file (new
fields are added last, so readers of the earlier columns are unaffected)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from refinery.dedup.run import DedupResult
from refinery.io.outputs import JSON_MARKS, Kind, output_path

FIELDS = ("path", "decision", "stage", "reason", "group", "kept_as", "scores", "test", "file")


def write_json(result: DedupResult, path: Path) -> None:
    """{"refinery": "dedup report", "summary": {...}, "files": [{...}, ...]}, one file per line,
    written as it goes (100,000 files never sit in memory twice)."""
    with output_path(path, Kind.REPORT) as tmp, open(tmp, "w", encoding="utf-8") as out:
        mark = json.dumps(JSON_MARKS[Kind.REPORT])
        out.write(f'{{"refinery": {mark},\n "summary": ' + json.dumps(result.summary(), indent=1) + ',\n "files": [\n')
        for k, f in enumerate(result.files):
            out.write((",\n" if k else "") + json.dumps({key: getattr(f, key) for key in FIELDS}))
        out.write("\n]}\n")


def write_csv(result: DedupResult, path: Path) -> None:
    # surrogateescape: a file name that is not UTF-8 is written back as the bytes it has on disk.
    with output_path(path, Kind.CSV) as tmp, \
            open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        for f in result.files:
            writer.writerow([f.path, f.decision, f.stage or "", f.reason,
                             "" if f.group is None else f.group, f.kept_as or "", json.dumps(f.scores),
                             f.test or "", json.dumps(f.file) if f.file else ""])


def report_dict(result: DedupResult) -> dict:
    """What write_json writes, as a dict (for the review page, without a file in between)."""
    return {"summary": result.summary(), "files": [{key: getattr(f, key) for key in FIELDS} for f in result.files]}
