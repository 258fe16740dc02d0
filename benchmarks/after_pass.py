#!/usr/bin/env python3
"""The stages after the read-once pass, timed alone: where a folder's time goes once every
file is read and embedded.

    python benchmarks/after_pass.py FOLDER [FOLDER ...] [--runs 5] [--set scenes.sample=32]

Reads and embeds each folder once (as `refinery dedup --no-cache` does, the gray pictures
kept for the scene test), then runs the grouping stages `--runs` times on fresh copies of
that state and prints the CPU, the pass's seconds and the median and fastest seconds of
each stage and of all of them (the scene stage includes the frame test). A change to the
stages is measured here without the pass's noise; compare figures within one run only.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from corpus import cpu_name  # noqa: E402

from refinery import features as feats  # noqa: E402
from refinery.cli.common import make_embedder  # noqa: E402
from refinery.config import apply_overrides, load_config  # noqa: E402
from refinery.dedup import featurepass  # noqa: E402
from refinery.dedup import run as dedup_run  # noqa: E402
from refinery.dedup.funnel import Funnel  # noqa: E402
from refinery.dedup.grays import Grays, GrayStore  # noqa: E402
from refinery.dedup.state import Run, StageStats  # noqa: E402
from refinery.dedup.vectors import VectorStore  # noqa: E402
from refinery.parallel import cpu_count  # noqa: E402

STAGES = ("scenes", "near", "semantic")


def one_folder(folder: Path, runs: int, overrides: list[str]) -> None:
    cfg = apply_overrides(load_config(None), overrides)
    embedder = make_embedder(cfg)  # as the command makes it: one thread a worker
    files, _ = featurepass.list_files(folder, cfg)
    run = Run(files)
    workers = cfg.run.workers or cpu_count()
    stages = {name: StageStats(name) for name in ("pass", "features", "embed")}
    scratch = featurepass.scratch_dir(cfg)
    with VectorStore(embedder.spec.output_dim, scratch) as store, GrayStore(scratch, cfg.run.scratch_grays_mb) as kept:
        with feats.opencv_single_threaded():
            featurepass.feature_pass(
                folder, run, len(files), cfg, embedder, stages, store=store, workers=workers, grays=kept
            )
        seconds: dict[str, list[float]] = {name: [] for name in (*STAGES, "all")}
        for _ in range(runs):
            fresh = copy.deepcopy(run)
            grays = Grays(folder, fresh.table, embedder.spec, kept)
            timed = {name: StageStats(name) for name in ("scenes", "quality", "exact", "near", "semantic")}
            start = time.perf_counter()
            dedup_run.decide(Funnel(fresh, store, cfg, timed, grays, None, workers))
            seconds["all"].append(time.perf_counter() - start)
            for name in STAGES:
                seconds[name].append(timed[name].seconds)
    print(f"{folder} ({len(files)} files): pass {stages['pass'].seconds:.2f} s; after it, over {runs} runs:")
    for name, values in seconds.items():
        print(f"  {name:9s} median {statistics.median(values):6.3f} s   fastest {min(values):6.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {cpu_count()} cores")
    for folder in args.folders:
        one_folder(folder, args.runs, args.overrides)


if __name__ == "__main__":
    main()
