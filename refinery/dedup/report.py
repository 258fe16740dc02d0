"""The dedup report: JSON (summary + one entry per file) and CSV. Other tools read these;
the schema is stable: a line is a FileDecision (dedup/decisions.py; FIELDS in order: path,
decision, stage, reason, group, kept_as, scores, test, file, reason_code, against,
kept_as_sha256; new fields are added last, so readers of the earlier columns are
unaffected). The CSV has the same columns, then one per score (decisions.CSV_FIELDS)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from refinery.dedup.decisions import CSV_FIELDS
from refinery.dedup.run import DedupResult
from refinery.io.outputs import JSON_MARKS, Kind, output_path


def write_json(result: DedupResult, path: Path) -> None:
    """{"refinery": "dedup report", "summary": {...}, "files": [{...}, ...]}, one file per line,
    written as it goes (100,000 files never sit in memory twice)."""
    with output_path(path, Kind.REPORT) as tmp, open(tmp, "w", encoding="utf-8") as out:
        mark = json.dumps(JSON_MARKS[Kind.REPORT])
        out.write(f'{{"refinery": {mark},\n "summary": ' + json.dumps(result.summary(), indent=1) + ',\n "files": [\n')
        for k, f in enumerate(result.files):
            out.write((",\n" if k else "") + json.dumps(f.as_dict()))
        out.write("\n]}\n")


def write_csv(result: DedupResult, path: Path) -> None:
    # surrogateescape: a file name that is not UTF-8 is written back as the bytes it has on disk.
    with (
        output_path(path, Kind.CSV) as tmp,
        open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as out,
    ):
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        for f in result.files:
            writer.writerow(f.csv_row())


def report_dict(result: DedupResult) -> dict[str, Any]:
    """What write_json writes, as a dict (for the review page, without a file in between)."""
    return {"summary": result.summary(), "files": [f.as_dict() for f in result.files]}
