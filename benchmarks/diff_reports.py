#!/usr/bin/env python3
"""Do two dedup reports decide the same? Lists every file whose decision, stage or keeper differs.

    python benchmarks/diff_reports.py BEFORE.json AFTER.json [--truth CORPUS/truth.json]

With --truth, both reports are also scored by ../shared/bench/score.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from corpus import load_scorer


def decisions(report: Path) -> dict[str, tuple]:
    files = json.loads(report.read_text())["files"]
    return {f["path"]: (f["decision"], f["stage"], f["kept_as"]) for f in files}


def removed(report: Path) -> list[str]:
    root = Path(json.loads(report.read_text())["summary"]["root"])
    return [str(root / p) for p, d in decisions(report).items() if d[0] == "remove"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--truth", type=Path)
    ap.add_argument("--show", type=int, default=20, help="list at most this many differences")
    args = ap.parse_args()
    a, b = decisions(args.before), decisions(args.after)
    changed = sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))
    flipped = [p for p in changed if (a.get(p) or ("",))[0] != (b.get(p) or ("",))[0]]
    print(
        f"{len(a)} files before, {len(b)} after; {len(changed)} differ "
        f"({len(changed) / max(len(a), 1):.2%}), {len(flipped)} of them keep <-> remove"
    )
    for p in changed[: args.show]:
        print(f"  {p}: {a.get(p)} -> {b.get(p)}")
    if args.truth:
        score = load_scorer()
        truth = json.loads(args.truth.read_text())["files"]
        for label, report in (("before", args.before), ("after", args.after)):
            print(f"{label}:\n{score.table(score.score(truth, removed(report)))}")


if __name__ == "__main__":
    main()
