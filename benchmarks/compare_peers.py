#!/usr/bin/env python3
"""refinery against imagededup (PHash) and cleanvision on a labelled corpus, in one run.

    python benchmarks/compare_peers.py /tmp/c2k --n 2000 --seed 0 --peer-python /work/bench-venv/bin/python

Builds the corpus with ../shared/bench/make_corpus.py if CORPUS has no truth.json, runs
`refinery dedup` (defaults, dry run, --report), then each peer with its defaults through
benchmarks/peers.py in the peer environment, scores every removal list with
../shared/bench/score.py, and prints one table. Also prints, per refinery stage, how many
files it removed from a different picture (a wrong merge) and how many groups it lost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from corpus import SHARED, ensure_corpus, load_scorer

HERE = Path(__file__).resolve().parent


def run_refinery(images: Path, report: Path) -> tuple[list[str], float, dict]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "refinery", "-q", "dedup", str(images), "--report", str(report)],
                   check=False, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    data = json.loads(report.read_text())
    return [f["path"] for f in data["files"] if f["decision"] == "remove"], seconds, data


def run_peer(python: str, tool: str, images: Path, out: Path) -> tuple[list[str], float]:
    start = time.perf_counter()
    subprocess.run([python, str(HERE / "peers.py"), tool, str(images), str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    lines = out.read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")], seconds


def stage_damage(report: dict, truth: dict) -> dict[str, tuple[int, int]]:
    """Per stage: (files removed as a copy of a different picture, groups lost through it)."""
    kept = Counter(truth[f["path"]]["group"] for f in report["files"] if f["decision"] == "keep")
    wrong, lost = Counter(), Counter()
    lost_groups: set[int] = set()
    for f in report["files"]:
        if f["decision"] != "remove":
            continue
        group = truth[f["path"]]["group"]
        foreign = f["kept_as"] is not None and truth[f["kept_as"]]["group"] != group
        wrong[f["stage"]] += foreign
        if kept[group] == 0 and group not in lost_groups and (foreign or f["stage"] == "quality"):
            lost[f["stage"]] += 1
            lost_groups.add(group)
    return {s: (wrong[s], lost[s]) for s in ("quality", "exact", "near", "semantic")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peer-python", default=None, help="python of the environment with the peers installed")
    ap.add_argument("--shared", type=Path, default=SHARED, help="folder with make_corpus.py and score.py")
    args = ap.parse_args()

    truth = ensure_corpus(args.corpus, args.n, args.seed, args.shared)
    scorer = load_scorer(args.shared)
    images = args.corpus / "images"
    rows = []
    removed, seconds, report = run_refinery(images, args.corpus / "refinery-report.json")
    rows.append(("refinery", scorer.score(truth, removed), seconds))
    if args.peer_python:
        for tool in ("imagededup", "cleanvision"):
            removed, seconds = run_peer(args.peer_python, tool, images, args.corpus / f"{tool}-removed.txt")
            rows.append((tool, scorer.score(truth, removed), seconds))

    print(f"corpus {args.corpus} ({len(truth)} files, seed {args.seed})")
    print(f"{'tool':12s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'lost':>5s} {'dups left':>9s} "
          f"{'defects left':>12s} {'images/s':>9s}")
    for tool, s, sec in rows:
        print(f"{tool:12s} {s['precision']:9.4f} {s['recall']:7.4f} {s['f1']:7.4f} {s['lost_groups']:5d} "
              f"{s['residual_dups']:9d} {s['defects_kept']:12d} {len(truth) / sec:9.1f}")
    for tool, s, _ in rows:
        print(f"{tool:12s} removed by role: " + ", ".join(f"{k} {v:.0%}" for k, v in s["removed_by_role"].items()))
    print("refinery per stage (removed, wrong merges, groups lost): " + ", ".join(
        f"{stage} {report['summary']['removed_by_stage'][stage]}/{w}/{lost}"
        for stage, (w, lost) in stage_damage(report, truth).items()))


if __name__ == "__main__":
    main()
