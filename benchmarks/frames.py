#!/usr/bin/env python3
"""`refinery frames` against extracting every frame and running `refinery dedup`, in one run.

    python benchmarks/frames.py WORK --video vtest.avi [--video ...] [--sequences /tmp/seq0]
                                [--long-minutes 5]

For each video: `refinery frames VIDEO --out` (frames/s, frames written, MB written, peak
memory) beside (a) writing every frame as JPEG (quality 92) and running `refinery dedup` on
that folder (frames/s of both steps together, MB written, frames kept), and the agreement of
the two kept counts. With --sequences (a make_sequences.py corpus): each sequence is written
into a video (MJPG, 10 fps, frames in time order), thinned, and scored by the shared scorer
(frames lost, redundant, thinned) beside `refinery dedup` on the corpus's own folder. With
--long-minutes: an MP4 (mp4v) of that length made by looping one sequence, and one of a
fifth of it, to show that memory does not grow with the length; the longer one is also
compared with extracting every frame and dedup. Prints the CPU first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
from corpus import cpu_name, load_sequence_scorer

REPO = Path(__file__).resolve().parent.parent
SETTINGS: list[str] = []  # --set for refinery frames


def refinery(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "refinery", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def thin(video: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = refinery(
        "frames",
        str(video),
        "--out",
        str(out),
        "--report",
        str(out.with_suffix(".json")),
        *(arg for setting in SETTINGS for arg in ("--set", setting)),
    )
    seconds = time.perf_counter() - start
    result = json.loads(out.with_suffix(".json").read_text())["videos"][0]
    peak = re.search(r"peak memory (\d+) MB", proc.stdout)
    return {
        "seconds": seconds,
        "frames": result["frames"],
        "written": len(result["written"]),
        "mb": megabytes(out),
        "peak_mb": int(peak.group(1)) if peak else None,
        "result": result,
    }


def extract_then_dedup(video: Path, folder: Path, cache: Path) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    start = time.perf_counter()
    capture, k = cv2.VideoCapture(str(video)), 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        cv2.imwrite(str(folder / "images" / f"{video.stem}_{k:06d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        k += 1
    extracted = time.perf_counter() - start
    report = folder / "report.json"
    refinery("-q", "dedup", str(folder / "images"), "--report", str(report), env={"XDG_CACHE_HOME": str(cache)})
    seconds = time.perf_counter() - start
    files = json.loads(report.read_text())["files"]
    return {
        "seconds": seconds,
        "extract_seconds": extracted,
        "frames": k,
        "kept": sum(f["decision"] == "keep" for f in files),
        "mb": megabytes(folder / "images"),
    }


def compare(video: Path, work: Path) -> None:
    online = thin(video, work / f"{video.stem}-frames")
    batch = extract_then_dedup(video, work / f"{video.stem}-extracted", work / "cache")
    n = online["frames"]
    print(f"{video.name}: {n} frames")
    print(
        f"  refinery frames       {n / online['seconds']:7.1f} frames/s  {online['written']:6d} written  "
        f"{online['mb']:7.1f} MB  peak {online['peak_mb']} MB"
    )
    print(
        f"  extract all + dedup   {n / batch['seconds']:7.1f} frames/s  {batch['kept']:6d} kept     "
        f"{batch['mb']:7.1f} MB written (extracting alone {n / batch['extract_seconds']:.1f} frames/s)"
    )
    print(f"  kept: frames keeps {online['written'] / max(1, batch['kept']) - 1:+.1%} against dedup")


def sequences(corpus: Path, work: Path) -> None:
    truth = json.loads((corpus / "truth.json").read_text())
    frames = truth["frames"]
    by_sequence: dict[int, list[str]] = {}
    for name, f in frames.items():
        by_sequence.setdefault(f["sequence"], []).append(name)
    kept: set[str] = set()
    seconds = 0.0
    for s, names in sorted(by_sequence.items()):
        names.sort(key=lambda n: frames[n]["t"])
        first = cv2.imread(str(corpus / "images" / names[0]))
        video = work / f"seq{s}.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, first.shape[1::-1])
        for name in names:
            writer.write(cv2.imread(str(corpus / "images" / name)))
        writer.release()
        online = thin(video, work / f"seq{s}-frames")
        seconds += online["seconds"]
        kept |= {names[w["frame"]] for w in online["result"]["written"]}
    removed = set(frames) - kept
    score = load_sequence_scorer().score(truth, removed)
    base = score["every_kth_frame"]
    print(
        f"sequences {corpus} ({len(frames)} frames, {len(by_sequence)} videos): refinery frames kept {len(kept)}, "
        f"lost {score['lost']}, redundant {score['redundant']}, thinned {score['thinned']} "
        f"({len(frames) / seconds:.1f} frames/s); every k-th frame at that count: lost {base['lost']}, "
        f"redundant {base['redundant']}"
    )


def long_video(corpus: Path, work: Path, minutes: float) -> None:
    truth = json.loads((corpus / "truth.json").read_text())["frames"]
    names = sorted((n for n, f in truth.items() if f["sequence"] == 0), key=lambda n: truth[n]["t"])
    pictures = [cv2.imread(str(corpus / "images" / n)) for n in names]
    for length in (minutes / 5, minutes):
        video = work / f"long{length:g}.mp4"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, pictures[0].shape[1::-1])
        for k in range(int(length * 60 * 10)):
            writer.write(pictures[k % len(pictures)])
        writer.release()
        online = thin(video, work / f"long{length:g}-frames")
        print(
            f"{video.name} ({length:g} min, {online['frames']} frames at 960x540): "
            f"{online['frames'] / online['seconds']:.1f} frames/s, {online['written']} written, "
            f"peak memory {online['peak_mb']} MB"
        )
    compare(video, work)  # the longer one, against extracting every frame and dedup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("--video", type=Path, action="append", default=[])
    parser.add_argument("--sequences", type=Path, default=None)
    parser.add_argument("--long-minutes", type=float, default=0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting for refinery frames (dedup runs with its defaults)",
    )
    args = parser.parse_args()
    SETTINGS.extend(args.set)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    for video in args.video:
        compare(video, args.work)
    if args.sequences:
        sequences(args.sequences, args.work)
        if args.long_minutes:
            long_video(args.sequences, args.work, args.long_minutes)


if __name__ == "__main__":
    main()
