#!/usr/bin/env python3
"""Decisions and cost as a folder grows (issue 30): many small distinct pictures (shapes on
gradients, 128 px, drawn here) with every 20th one's JPEG re-encode (quality 60) as its copy,
judged by a cold `refinery dedup --no-cache` at each size. Prints, per size: seconds per
picture overall and per stage, peak memory, copies found, distinct pictures removed, and pairs
where both the picture and its copy went.

    python benchmarks/drift.py --sizes 10000,100000 --work /tmp/drift

A size's folder is drawn once and kept under --work (the same pictures at every run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from against import cpu, draw  # noqa: E402 - the benchmarks' own drawing, beside this script

REFINERY = [sys.executable, "-m", "refinery"]
COPY_EVERY = 20


def folder(work: Path, size: int) -> Path:
    """`size` distinct pictures and a quality-60 copy of every 20th, drawn once."""
    root = work / f"n{size}"
    done = root / ".drawn"
    if done.exists():
        return root
    rng = np.random.default_rng(30)
    for k in range(size):
        sub = root / f"{k // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        picture = draw(rng)
        picture.save(sub / f"p{k:07d}.jpg", quality=90)
        if k % COPY_EVERY == 0:
            picture_again = Image.open(sub / f"p{k:07d}.jpg")
            picture_again.save(sub / f"p{k:07d}_copy.jpg", quality=60)
    done.write_text("")
    return root


def judge(root: Path, work: Path, size: int) -> None:
    report = work / f"n{size}.json"
    t = time.perf_counter()
    out = subprocess.run([*REFINERY, "dedup", str(root), "--no-cache", "--report", str(report)], capture_output=True)
    seconds = time.perf_counter() - t
    assert out.returncode in (0, 3), out.stderr.decode()[-2000:]
    data = json.loads(report.read_text())
    lines = {f["path"]: f for f in data["files"]}
    n = len(lines)
    copies = [p for p in lines if p.endswith("_copy.jpg")]
    found = both = 0
    for copy in copies:
        original = copy.replace("_copy.jpg", ".jpg")
        a, b = lines[original], lines[copy]
        found += (a["decision"] == "remove" and a["kept_as"] == copy) or (
            b["decision"] == "remove" and b["kept_as"] == original
        )
        both += a["decision"] == b["decision"] == "remove"
    pairs = {p for c in copies for p in (c, c.replace("_copy.jpg", ".jpg"))}
    distinct = [
        p
        for p, f in lines.items()
        if f["decision"] == "remove" and f["kept_as"] and (p not in pairs or not _partners(p, f))
    ]
    by_stage = {}
    for p in distinct:
        by_stage[lines[p]["stage"]] = by_stage.get(lines[p]["stage"], 0) + 1
    summary = data["summary"]
    stages = {k: round(1000 * v / n, 3) for k, v in summary["seconds_by_stage"].items()}
    print(
        f"{n} files: {1000 * seconds / n:.2f} ms a picture ({seconds:.0f} s), peak {summary['peak_memory_mb']} MB; "
        f"copies found {found} of {len(copies)}; distinct pictures removed {len(distinct)} {by_stage}; "
        f"pairs where both went {both}\n    ms a picture by stage: {stages}"
    )


def _partners(path: str, line: dict) -> bool:
    """A removed file whose keeper is its own copy or original."""
    kept = line["kept_as"]
    return kept in (path.replace("_copy.jpg", ".jpg"), path.replace(".jpg", "_copy.jpg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    for size in map(int, args.sizes.split(",")):
        root = folder(args.work, size)
        judge(root, args.work, size)


if __name__ == "__main__":
    main()
