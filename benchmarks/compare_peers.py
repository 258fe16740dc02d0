#!/usr/bin/env python3
"""refinery against its peers (imagededup, cleanvision, fastdup) on a labelled corpus, in one run.

    python benchmarks/compare_peers.py /tmp/c2k --n 2000 --seed 0 --peer-python /work/bench-venv/bin/python
    python benchmarks/compare_peers.py /tmp/seq0 --sequence-seed 0 --peer-python /work/bench-venv/bin/python
    python benchmarks/compare_peers.py /tmp/c2k --tools imagededup,fastdup --peer-python /work/bench-venv/bin/python

Two kinds of corpus, told apart by CORPUS/truth.json:

- crops (../shared/bench/make_corpus.py; built with --n and --seed if CORPUS has no
  truth.json): scored with ../shared/bench/score.py - precision, recall, F1, lost groups,
  duplicates and defects left; plus, for refinery, what each stage removed by mistake.
- fixed-camera sequences (../shared/bench/make_sequences.py, truth.json has "frames"; built
  with --sequence-seed if CORPUS is missing or empty): scored with
  ../shared/bench/score_sequences.py - frames removed, lost (content no kept frame shows),
  redundant (duplicates left), thinned (removed / removable); with, for each tool, keeping
  every k-th frame of each sequence with as many frames kept (a baseline that knows the order).

refinery runs as `refinery dedup` (defaults, dry run, --report); each peer with its defaults
through benchmarks/peers.py in the peer environment (benchmarks/peers_env.sh makes it).
--tools defaults to refinery plus every peer installed there. images/s is wall time of each
tool's whole process, start-up included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from corpus import SHARED, ensure_corpus, load_scorer, load_sequence_scorer

HERE = Path(__file__).resolve().parent
PEERS = ("imagededup", "cleanvision", "fastdup")  # benchmarks/peers.py TOOLS


def run_refinery(images: Path, report: Path, settings: list[str]) -> tuple[list[str], float, dict]:
    report.unlink(missing_ok=True)  # a run that fails must not be scored on an older report
    start = time.perf_counter()
    # --no-cache: every run reads, measures and embeds (a cached run's images/s says nothing).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "refinery",
            "-q",
            "dedup",
            str(images),
            "--no-cache",
            "--report",
            str(report),
            *(a for s in settings for a in ("--set", s)),
        ],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    if not report.exists():
        sys.exit(f"refinery wrote no report for {images}: run it by hand to see why")
    data = json.loads(report.read_text())
    return [f["path"] for f in data["files"] if f["decision"] == "remove"], seconds, data


def peer_env() -> dict[str, str]:
    """The environment peers run in: no telemetry (fastdup reports to Sentry unless told not to)."""
    return {**os.environ, "SENTRY_OPT_OUT": "1", "FASTDUP_PRODUCTION": "1"}


def available_peers(python: str) -> list[str]:
    """The peers installed in the environment of PYTHON."""
    out = subprocess.run(
        [python, str(HERE / "peers.py"), "--available"], check=True, capture_output=True, text=True, env=peer_env()
    )
    return out.stdout.split()


def run_peer(python: str, tool: str, images: Path, out: Path) -> tuple[list[str], float]:
    start = time.perf_counter()
    done = subprocess.run(
        [python, str(HERE / "peers.py"), tool, str(images), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=peer_env(),
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{tool} failed (exit {done.returncode}):\n" + "\n".join(done.stderr.splitlines()[-15:]))
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


def ensure_sequences(corpus: Path, seed: int, shared: Path = SHARED) -> None:
    """Build fixed-camera sequences into CORPUS (make_sequences.py replaces the folder: only a new or empty one)."""
    if corpus.exists() and any(corpus.iterdir()):
        sys.exit(f"{corpus} has files but no truth.json: give a new or empty folder to build sequences in")
    subprocess.run([sys.executable, str(shared / "make_sequences.py"), str(corpus), "--seed", str(seed)], check=True)


def choose_tools(arg: str | None, peer_python: str | None) -> list[str]:
    known = ("refinery", *PEERS)
    if arg is None:
        return ["refinery", *(available_peers(peer_python) if peer_python else [])]
    tools = [t.strip() for t in arg.split(",") if t.strip()]
    unknown = [t for t in tools if t not in known]
    if unknown:
        sys.exit(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if any(t in PEERS for t in tools) and not peer_python:
        sys.exit("peers run in their own environment: give --peer-python")
    return tools


def run_tools(
    tools: list[str], images: Path, corpus: Path, peer_python: str | None, settings: list[str]
) -> tuple[list[tuple[str, list[str], float]], dict | None]:
    """Each tool's removal list and seconds, and refinery's report if it ran."""
    runs, report = [], None
    for tool in tools:
        if tool == "refinery":
            removed, seconds, report = run_refinery(images, corpus / "refinery-report.json", settings)
        else:
            assert peer_python
            removed, seconds = run_peer(peer_python, tool, images, corpus / f"{tool}-removed.txt")
        runs.append((tool, removed, seconds))
    return runs, report


def print_crops(corpus: Path, truth: dict, seed: object, runs: list, report: dict | None, shared: Path) -> None:
    scorer = load_scorer(shared)
    rows = [(tool, scorer.score(truth, removed), sec) for tool, removed, sec in runs]
    print(f"corpus {corpus} ({len(truth)} files, seed {seed})")
    print(
        f"{'tool':12s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'lost':>5s} {'dups left':>9s} "
        f"{'defects left':>12s} {'images/s':>9s}"
    )
    for tool, s, sec in rows:
        print(
            f"{tool:12s} {s['precision']:9.4f} {s['recall']:7.4f} {s['f1']:7.4f} {s['lost_groups']:5d} "
            f"{s['residual_dups']:9d} {s['defects_kept']:12d} {len(truth) / sec:9.1f}"
        )
    for tool, s, _ in rows:
        print(f"{tool:12s} removed by role: " + ", ".join(f"{k} {v:.0%}" for k, v in s["removed_by_role"].items()))
    if report is not None:
        print(
            "refinery per stage (removed, wrong merges, groups lost): "
            + ", ".join(
                f"{stage} {report['summary']['removed_by_stage'][stage]}/{w}/{lost}"
                for stage, (w, lost) in stage_damage(report, truth).items()
            )
        )


def print_sequences(corpus: Path, truth: dict, runs: list, shared: Path) -> None:
    scorer = load_sequence_scorer(shared)
    frames = len(truth["frames"])
    rows = [(tool, scorer.score(truth, {Path(r).name for r in removed}), sec) for tool, removed, sec in runs]
    removable = rows[0][1]["removable"] if rows else 0
    print(f"corpus {corpus} ({frames} frames, fixed-camera sequences, {removable} removable)")
    print(f"{'tool':32s} {'removed':>7s} {'lost':>5s} {'redundant':>9s} {'thinned':>7s} {'images/s':>9s}")

    def line(name: str, s: dict, rate: str) -> None:
        thinned = f"{s['thinned']:.4f}" if s["thinned"] is not None else "-"
        print(f"{name:32s} {s['removed']:7d} {s['lost']:5d} {s['redundant']:9d} {thinned:>7s} {rate:>9s}")

    for tool, s, sec in rows:
        line(tool, s, f"{frames / sec:.1f}")
    for tool, s, _ in rows:  # the baseline keeps as many frames as the tool did
        line(f"every k-th frame (= {tool})", s["every_kth_frame"], "-")
    for tool, s, _ in rows:
        if s["unknown_names"]:
            print(f"warning: {tool}: {s['unknown_names']} removed names are not in the truth")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--n", type=int, default=2000, help="files, when building a crop corpus")
    ap.add_argument("--seed", type=int, default=0, help="seed, when building a crop corpus")
    ap.add_argument(
        "--sequence-seed",
        type=int,
        default=None,
        help="build fixed-camera sequences with this seed if CORPUS has no truth.json",
    )
    ap.add_argument(
        "--tools",
        default=None,
        help=f"comma-separated, from refinery,{','.join(PEERS)} "
        "(default: refinery and every peer installed in --peer-python)",
    )
    ap.add_argument("--peer-python", default=None, help="python of the environment with the peers installed")
    ap.add_argument(
        "--shared",
        type=Path,
        default=SHARED,
        help="folder with make_corpus.py, make_sequences.py, score.py, score_sequences.py",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a refinery setting for this run (as refinery dedup --set), again for more",
    )
    args = ap.parse_args()

    tools = choose_tools(args.tools, args.peer_python)
    if not (args.corpus / "truth.json").exists() and args.sequence_seed is not None:
        ensure_sequences(args.corpus, args.sequence_seed, args.shared)
    if (args.corpus / "truth.json").exists():
        truth = json.loads((args.corpus / "truth.json").read_text())
    else:
        truth = {"files": ensure_corpus(args.corpus, args.n, args.seed, args.shared)}
    images = args.corpus / "images"
    runs, report = run_tools(tools, images, args.corpus, args.peer_python, args.set)
    if "frames" in truth:
        print_sequences(args.corpus, truth, runs, args.shared)
    else:
        seed = truth.get("meta", {}).get("seed", args.seed)
        print_crops(args.corpus, truth["files"], seed, runs, report, args.shared)


if __name__ == "__main__":
    main()
