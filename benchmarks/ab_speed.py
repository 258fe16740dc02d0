#!/usr/bin/env python3
"""Two builds of refinery, end to end on the same folder, in one run: is a change slower?

    git worktree add /tmp/refinery-before <commit>
    python benchmarks/ab_speed.py FOLDER [FOLDER ...] --baseline /tmp/refinery-before [--runs 3]
    python benchmarks/ab_speed.py CROPS FRAMES [FRAMES ...] [--runs 3]

Runs `refinery dedup FOLDER --no-cache --report R` (a dry run: reads, embeds and judges every
file) with this checkout and with the baseline checkout, interleaved run by run so that both
see the same machine, and prints the CPU, the median seconds and images/s of each, and the
ratio. Each build runs with its own code, default settings and shipped model.

Without --baseline it compares folders instead (issue 26: frame folders within 20% of a crop
folder's images/s): this build on every folder, interleaved, and each folder's images/s as a
share of the first one's - end to end (the command's wall time, start-up included) and the
run's own (its report's seconds, reading to deciding).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpus import cpu_name

HERE = Path(__file__).resolve().parent.parent


def shipped(checkout: Path, name: str) -> Path:
    """A file that ships with a build: inside the package now, at the top in older builds."""
    inside = checkout / "refinery" / name
    return inside if inside.exists() else checkout / name


def one_run(checkout: Path, folder: Path) -> tuple[float, int, float]:
    """(seconds, files, the run's own seconds) of one cold dry run of the build in `checkout`."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = {**os.environ, "PYTHONPATH": str(checkout), "XDG_CACHE_HOME": tmp}
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "refinery",
                "-q",
                "dedup",
                str(folder),
                "--no-cache",
                "--report",
                str(report),
                "--config",
                str(shipped(checkout, "configs/refinery.toml")),
                "--model",
                str(shipped(checkout, "models/default.onnx")),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=checkout,
        )
        seconds = time.perf_counter() - start
        written = json.loads(report.read_text())
        return seconds, len(written["files"]), written["summary"]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument(
        "--baseline", type=Path, help="a checkout of the build to compare with (none: compare the folders)"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    if args.baseline is None:
        compare_folders(args.folders, args.runs)
        return
    builds = {"baseline": args.baseline.resolve(), "this": HERE}
    for folder in args.folders:
        seconds: dict[str, list[float]] = {name: [] for name in builds}
        files = 0
        for _ in range(args.runs):
            for name, checkout in builds.items():
                took, files, _ = one_run(checkout, folder)
                seconds[name].append(took)
        medians = {name: statistics.median(times) for name, times in seconds.items()}
        print(f"{folder} ({files} files, median of {args.runs} cold runs each, interleaved)")
        for name, median in medians.items():
            print(
                f"  {name:9s} {median:7.1f} s  {files / median:6.1f} images/s   runs: "
                + ", ".join(f"{t:.1f}" for t in seconds[name])
            )
        print(f"  this / baseline images/s: {medians['baseline'] / medians['this']:.3f}")


def compare_folders(folders: list[Path], runs: int) -> None:
    """This build on each folder, interleaved; images/s end to end and the run's own, and each
    as a share of the first folder's."""
    wall: dict[Path, list[float]] = {folder: [] for folder in folders}
    own: dict[Path, list[float]] = {folder: [] for folder in folders}
    files: dict[Path, int] = {}
    for _ in range(runs):
        for folder in folders:
            took, files[folder], inside = one_run(HERE, folder)
            wall[folder].append(took)
            own[folder].append(inside)
    rates = {
        folder: (files[folder] / statistics.median(wall[folder]), files[folder] / statistics.median(own[folder]))
        for folder in folders
    }
    first = rates[folders[0]]
    print(f"median of {runs} cold runs each, interleaved; share of {folders[0]}'s images/s")
    for folder, (end_to_end, inside) in rates.items():
        print(
            f"  {folder} ({files[folder]} files): {end_to_end:6.1f} images/s end to end "
            f"({end_to_end / first[0]:.3f}), {inside:6.1f} in the run ({inside / first[1]:.3f})"
        )


if __name__ == "__main__":
    main()
