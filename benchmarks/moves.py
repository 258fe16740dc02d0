#!/usr/bin/env python3
"""What the safety of moves costs: refinery's checked, journaled moves and undo against bare
renames of the same files, in one process, on one corpus.

    python benchmarks/moves.py /tmp/c2k [--n 2000 --seed 0] [--other-fs /dev/shm]

A copy of the corpus is judged once (the plan: the files `dedup` would remove, with what was
judged of each and of its keeper), then, each on a fresh copy:
  rename     os.rename of each planned file into DEST and back: the floor
  move_out   refinery's move: each file (and its keeper, once) checked against its size,
             mtime and SHA-256, a journal line flushed to disk before and after, link + unlink
  undo       refinery's undo of that journal (each file's SHA-256 checked again)
With --other-fs the destination is on another filesystem (copy, flush, verify, then remove).
Prints the CPU, files/s and MB/s of each, and the ratio of each to the rename floor.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from corpus import cpu_name, ensure_corpus

from refinery.config import load_config
from refinery.dedup.actions import move_out
from refinery.dedup.journal import open_journal
from refinery.dedup.run import run_dedup
from refinery.dedup.undo import undo
from refinery.runner.session import Embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--other-fs", type=Path, default=None, help="put DEST on this (other) filesystem")
    args = parser.parse_args()
    ensure_corpus(args.corpus, args.n, args.seed)
    print(f"CPU: {cpu_name()}")
    work = Path(tempfile.mkdtemp(prefix="refinery-moves-"))
    dest_base = Path(tempfile.mkdtemp(prefix="refinery-moves-", dir=args.other_fs)) if args.other_fs else work
    try:
        root = work / "images"
        shutil.copytree(args.corpus / "images", root)
        cfg = load_config()
        plan = run_dedup(root, cfg, Embedder("default", device="cpu")).planned("remove")
        size = sum(item.judged.size for item in plan) / 1e6
        print(
            f"{len(plan)} files to move, {size:.1f} MB; DEST on {'another' if args.other_fs else 'the same'} filesystem"
        )

        dest = dest_base / "plain"
        t = time.perf_counter()
        for item in plan:
            (dest / item.rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(root / item.rel, dest / item.rel)  # a rename, or a copy across filesystems
        for item in plan:
            shutil.move(dest / item.rel, root / item.rel)
        floor = (time.perf_counter() - t) / 2

        dest = dest_base / "rejects"
        with open_journal(dest, create=True) as journal:
            t = time.perf_counter()
            moved = move_out(root, plan, journal)
            moving = time.perf_counter() - t
            t = time.perf_counter()
            back = undo(journal)
            undoing = time.perf_counter() - t
        assert moved.done == back.done == len(plan), (moved, back)
        print(f"{'':10s} {'seconds':>8s} {'files/s':>8s} {'MB/s':>7s} {'x rename':>9s}")
        for name, seconds in (("rename", floor), ("move_out", moving), ("undo", undoing)):
            print(f"{name:10s} {seconds:8.2f} {len(plan) / seconds:8.0f} {size / seconds:7.1f} {seconds / floor:9.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.other_fs:
            shutil.rmtree(dest_base, ignore_errors=True)


if __name__ == "__main__":
    main()
