#!/usr/bin/env python3
"""Score refinery on two real fixed-camera videos against labels checked by eye, with the scorer of
the synthetic sequences (../shared/bench/score_sequences.py).

    python benchmarks/videos.py OUT [--video vtest|tree|all] [--videos-dir DIR] [--refinery-args ARG...]

The videos are the examples of Debian's opencv-doc package: vtest.avi (795 frames, 768x576, 10 fps, a
fixed camera over a square with people walking) and tree.avi (68 frames, 320x240: 53 frames of a still
tree, then a hand comes in). Get them with

    apt-get download opencv-doc && dpkg -x opencv-doc_*.deb x    # x/usr/share/doc/opencv-doc/examples/data

(they are looked for there under /usr/share/doc and /tmp/ocv/x/usr/share/doc, or give --videos-dir).
The labels, and the rule each follows, are in benchmarks/data/video_labels.json.

For each video: every frame read by cv2.VideoCapture -> OUT/<video>/images/<video>_NNNN.jpg (JPEG quality
95, numbered in frame order); the labels -> OUT/<video>/truth.json (make_sequences.py's format, sequence 0,
t = frame index); `python -m refinery -q dedup OUT/<video>/images --report OUT/<video>/report.json` plus
the --refinery-args (everything after it is passed on); the removed names -> OUT/<video>/removed.txt;
then a table: frames, removed, kept, lost, redundant, thinned, the same for keeping every k-th frame
with as many kept, and refinery's images/s (its report's figure, and the wall clock of the whole run).

For tree.avi two more checks, read from the labels and report.json:
  (a) every hand frame that no other hand frame duplicates (within 0.15 of the hand's size) is KEPT.
      Kept, not merely "shown by a kept frame": by the labels no other frame is that picture, so a
      dedup that removes it has removed a picture, not a copy; the looser test (still shown within
      0.5) is what `lost` already counts, and is printed beside it.
  (b) the still frames (no hand) are kept, or removed as duplicates of (kept_as) a frame with no hand:
      the keeper of the still tree must not have a hand in it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import cv2
from corpus import load_sequence_scorer

ROOT = Path(__file__).resolve().parent.parent
LABELS = Path(__file__).resolve().parent / "data" / "video_labels.json"
VIDEO_DIRS = [
    Path("/usr/share/doc/opencv-doc/examples/data"),
    Path("/tmp/ocv/x/usr/share/doc/opencv-doc/examples/data"),
]


def find_video(file: str, videos_dir: Path | None) -> Path:
    for d in [videos_dir] if videos_dir else VIDEO_DIRS:
        if (d / file).is_file():
            return d / file
    where = videos_dir or " or ".join(map(str, VIDEO_DIRS))
    sys.exit(
        f"{file} not found in {where}: apt-get download opencv-doc && dpkg -x opencv-doc_*.deb x, "
        "then --videos-dir x/usr/share/doc/opencv-doc/examples/data"
    )


def extract(video: Path, images: Path, prefix: str) -> list[str]:
    """Every frame of VIDEO as IMAGES/<prefix>_NNNN.jpg; only files of that pattern are ever replaced."""
    images.mkdir(parents=True, exist_ok=True)
    ours = re.compile(rf"{re.escape(prefix)}_\d{{4}}\.jpg")
    others = sorted(p.name for p in images.iterdir() if not ours.fullmatch(p.name))
    if others:
        sys.exit(
            f"{images} holds files this script did not write ({', '.join(others[:3])}...): "
            "they would be judged with the frames; use another OUT"
        )
    for p in images.iterdir():
        p.unlink()
    cap = cv2.VideoCapture(str(video))
    names: list[str] = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        name = f"{prefix}_{len(names):04d}.jpg"
        if not cv2.imwrite(str(images / name), frame, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            sys.exit(f"could not write {images / name}")
        names.append(name)
    cap.release()
    return names


def run_refinery(images: Path, report: Path, extra: list[str]) -> float:
    """Seconds the refinery dedup run took (wall clock, start-up included)."""
    cmd = [sys.executable, "-m", "refinery", "-q", "dedup", str(images), "--report", str(report), *extra]
    t = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    seconds = time.perf_counter() - t
    if rc != 0:
        sys.exit(f"refinery exited with {rc}: {' '.join(cmd)}")
    return seconds


def still_and_hand_checks(truth: dict, report: dict, relation) -> list[str]:
    """Checks (a) and (b) of the docstring, as printable lines."""
    frames, tol = truth["frames"], truth["tolerance"]
    entries = {os.path.basename(e["path"]): e for e in report["files"]}
    kept = {n for n in frames if entries[n]["decision"] != "remove"}
    hand = sorted(n for n in frames if frames[n]["objects"])
    still = sorted(n for n in frames if not frames[n]["objects"])

    distinct = [
        n
        for n in hand
        if not any(relation(frames[n]["objects"], frames[m]["objects"], tol["duplicate"]) for m in hand if m != n)
    ]
    lost = [n for n in distinct if n not in kept]
    shown = [n for n in lost if any(relation(frames[n]["objects"], frames[k]["objects"], tol["shown"]) for k in kept)]
    lines = [
        f"(a) hand frames no other hand frame duplicates: {len(distinct)} "
        f"({', '.join(n.removesuffix('.jpg') for n in distinct)}); kept {len(distinct) - len(lost)}"
        f" -> {'PASS' if not lost else 'FAIL'}"
        + (
            f"; removed: {', '.join(lost)} ({len(shown)} of them still shown by a kept frame within 0.5)"
            if lost
            else ""
        )
    ]
    hand_kept = sum(1 for n in hand if n in kept)
    hand_lost = sum(
        1
        for n in hand
        if n not in kept and not any(relation(frames[n]["objects"], frames[k]["objects"], tol["shown"]) for k in kept)
    )
    lines.append(f"    all {len(hand)} hand frames: kept {hand_kept}, removed and shown by no kept frame {hand_lost}")

    keepers: dict[str, int] = {}
    unkept: list[str] = []
    for n in still:
        e = entries[n]
        if e["decision"] != "remove":
            continue
        if e.get("kept_as"):
            k = os.path.basename(e["kept_as"])
            keepers[k] = keepers.get(k, 0) + 1
        else:
            unkept.append(f"{n} ({e.get('stage')}: {e.get('reason')})")
    bad = sorted(k for k in keepers if k not in frames or frames[k]["objects"])
    kept_still = sum(1 for n in still if n in kept)
    lines.append(
        f"(b) still frames: {len(still)}, kept {kept_still}, removed {len(still) - kept_still}"
        + (
            " as duplicates of "
            + ", ".join(
                f"{k.removesuffix('.jpg')}{' (HAND)' if k in bad else ''} x{c}"
                for k, c in sorted(keepers.items(), key=lambda kc: -kc[1])
            )
            if keepers
            else ""
        )
        + f" -> {'PASS' if not bad and kept_still else 'FAIL'}"
    )
    if unkept:
        lines.append(f"    removed with no keeper: {', '.join(unkept)}")
    into_still = [
        n
        for n in hand
        if n not in kept
        and entries[n].get("kept_as")
        and not frames.get(os.path.basename(entries[n]["kept_as"]), {"objects": [0]})["objects"]
    ]
    lines.append(
        f"    hand frames removed as duplicates of a still frame: {len(into_still)}"
        + (f" ({', '.join(into_still)})" if into_still else "")
    )
    return lines


def bench(name: str, spec: dict, out: Path, args: argparse.Namespace, scorer: ModuleType, tolerance: dict) -> None:
    video = find_video(spec["file"], args.videos_dir)
    where = out / name
    names = extract(video, where / "images", name)
    if len(names) != spec["frames"] or len(spec["objects"]) != spec["frames"]:
        sys.exit(
            f"{video} gave {len(names)} frames, the labels have {len(spec['objects'])}: "
            "another decoder? the labels are for the frames cv2.VideoCapture reads"
        )
    truth = {
        "frames": {n: {"sequence": 0, "t": t, "objects": spec["objects"][t]} for t, n in enumerate(names)},
        "tolerance": tolerance,
    }
    (where / "truth.json").write_text(json.dumps(truth, indent=1))

    report_path = where / "report.json"
    seconds = run_refinery(where / "images", report_path, args.refinery_args)
    report = json.loads(report_path.read_text())
    removed = {os.path.basename(e["path"]) for e in report["files"] if e["decision"] == "remove"}
    (where / "removed.txt").write_text("".join(f"{n}\n" for n in sorted(removed)))
    s = scorer.score(truth, removed)
    b = s["every_kth_frame"]

    own = report.get("summary", {}).get("images_per_s")
    print(
        f"\n{spec['file']}: {s['frames']} frames, {s['removable']} removable by the labels; refinery "
        + (f"{own:.1f} images/s by its report, " if isinstance(own, (int, float)) else "")
        + f"{s['frames'] / seconds:.1f} images/s by the wall clock ({seconds:.1f} s, start-up included)"
    )
    print(f"  {'':22} {'removed':>7} {'kept':>5} {'lost':>5} {'redundant':>9} {'thinned':>7}")
    for label, f in (("refinery", s), ("every k-th frame", b)):
        print(
            f"  {label:22} {f['removed']:7d} {f['kept']:5d} {f['lost']:5d} {f['redundant']:9d} "
            f"{f['thinned'] if f['thinned'] is not None else '-':>7}"
        )
    if s["unknown_names"]:
        print(f"  warning: {s['unknown_names']} removed names are not in the truth")
    if name == "tree":
        for line in still_and_hand_checks(truth, report, scorer.relation):
            print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--video", choices=["vtest", "tree", "all"], default="all")
    parser.add_argument("--videos-dir", type=Path, default=None, help="the folder holding vtest.avi and tree.avi")
    parser.add_argument(
        "--refinery-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="passed on to `refinery dedup` (everything after this option)",
    )
    args = parser.parse_args()
    labels = json.loads(LABELS.read_text())
    scorer = load_sequence_scorer()
    for name, spec in labels["videos"].items():
        if args.video in (name, "all"):
            bench(name, spec, args.out.resolve(), args, scorer, labels["tolerance"])


if __name__ == "__main__":
    main()
