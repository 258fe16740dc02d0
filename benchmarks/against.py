#!/usr/bin/env python3
"""`refinery dedup NEW --against REF` (issue 29), measured.

split  the crop corpus (make_corpus.py: images/ and truth.json) in two by a hash of each file
       name (3 of 4 to REF), NEW judged against REF given as a folder and as an index: of the
       NEW pictures whose group has a picture in REF, the share removed (recall); of the NEW
       pictures removed, the share that are duplicates or defects (precision); REF pictures
       judged removed (must be 0); the two decisions compared line by line; a SHA-256 listing
       of REF before and after every command (dedup, --move-rejects-to, undo).

    python benchmarks/against.py split /tmp/c2k --work /tmp/against-split

batch  a weekly batch: NEW of --new pictures against an indexed REF of --ref pictures (small
       distinct pictures drawn here: shapes on gradients, 128 px; every 20th NEW picture a
       JPEG re-encode of a REF one), seconds per NEW picture of `dedup NEW --against REF.index`
       beside a plain `dedup NEW` in the same process's runs, both without the cache.
       --new-from DIR: the batch is the first --new photos of DIR instead (their own size).

    python benchmarks/against.py batch --ref 100000 --new 1000 --work /tmp/against-batch
                                       [--new-from /tmp/c2k/images]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REFINERY = [sys.executable, "-m", "refinery"]


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    return platform.processor()


def refinery(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REFINERY, *args], capture_output=True, text=True)


def listing(folder: Path) -> dict[str, str]:
    """Every file under `folder` by its SHA-256."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def to_ref(name: str) -> bool:
    """3 of 4 files to REF, by a hash of the name (not by group: a group may fall on both sides)."""
    return hashlib.sha1(name.encode()).digest()[0] % 4 != 0


def split(corpus: Path, work: Path) -> None:
    truth = json.loads((corpus / "truth.json").read_text())["files"]
    shutil.rmtree(work, ignore_errors=True)
    ref, new = work / "ref", work / "new"
    ref.mkdir(parents=True)
    new.mkdir()
    for name in truth:
        os.link(corpus / "images" / name, (ref if to_ref(name) else new) / name)
    in_ref = {truth[n]["group"] for n in truth if to_ref(n)}
    print(f"CPU: {cpu()}; {len(truth)} files: {sum(map(to_ref, truth))} in REF, the rest in NEW")
    before = listing(ref)
    out = refinery("index", str(ref), "--out", str(work / "ref.index"))
    assert out.returncode in (0, 3), out.stderr
    reports = {}
    for given in (ref, work / "ref.index"):
        report = work / f"{given.name}.json"
        t = time.perf_counter()
        out = refinery("dedup", str(new), "--against", str(given), "--report", str(report))
        seconds = time.perf_counter() - t
        assert out.returncode in (0, 3), out.stderr
        lines = json.loads(report.read_text())["files"]
        reports[given.name] = lines
        score(lines, truth, in_ref, f"--against {given.name}", seconds)
        assert listing(ref) == before
    whole_run(corpus, work, truth, reports["ref"])
    same = [{**f, "against": None} for f in reports["ref"]] == [{**f, "against": None} for f in reports["ref.index"]]
    print(f"decisions against the folder and against its index: {'the same, line for line' if same else 'DIFFER'}")
    rejects = work / "rejects"
    out = refinery("dedup", str(new), "--against", str(ref), "--move-rejects-to", str(rejects))
    print("move:", out.stdout.strip().splitlines()[-1])
    assert listing(ref) == before
    out = refinery("undo", str(rejects))
    print("undo:", out.stdout.strip().splitlines()[-1])
    same = "unchanged" if listing(ref) == before else "CHANGED"
    print(f"REF's SHA-256 listing after index, two dedups, a move and an undo: {same}")


def whole_run(corpus: Path, work: Path, truth: dict, lines: list[dict]) -> None:
    """The whole corpus judged as one folder: of the NEW pictures it puts in one group with a
    REF picture, the share --against removes."""
    report = work / "whole.json"
    out = refinery("dedup", str(corpus / "images"), "--report", str(report))
    assert out.returncode in (0, 3), out.stderr
    whole = {Path(f["path"]).name: f for f in json.loads(report.read_text())["files"]}
    ref_groups = {whole[n]["group"] for n in truth if to_ref(n) and whole[n]["group"] is not None}
    linked = [n for n in truth if not to_ref(n) and whole[n]["group"] in ref_groups]
    removed = {f["path"] for f in lines if f["decision"] == "remove"}
    found = sum(n in removed for n in linked)
    print(f"the whole corpus as one folder groups {len(linked)} NEW pictures with a REF one: --against removes {found}")
    # the same yardstick for both: of the NEW pictures whose group has a REF picture, those the
    # whole-corpus run removes or keeps as the keeper of a REF picture's group
    in_ref = {truth[n]["group"] for n in truth if to_ref(n)}
    must = [n for n in truth if not to_ref(n) and truth[n]["group"] in in_ref]
    seen = [n for n in must if whole[n]["decision"] == "remove" or whole[n]["group"] in ref_groups]
    print(
        f"of the {len(must)} that must go, the whole-corpus run removes or groups with REF {len(seen)} "
        f"({len(seen) / len(must):.4f}); --against removes {sum(n in removed for n in must)}, "
        f"{sum(n in removed for n in seen)} of those {len(seen)}"
    )


def score(lines: list[dict], truth: dict, in_ref: set[int], label: str, seconds: float) -> None:
    by_name = {f["path"]: f for f in lines}
    new = [n for n in truth if not to_ref(n)]
    must_go = [n for n in new if truth[n]["group"] in in_ref]  # its content is in REF
    removed = [n for n in new if by_name[n]["decision"] == "remove"]
    against = [n for n in removed if by_name[n].get("against")]
    group_size: dict[int, int] = {}
    for n in truth:
        group_size[truth[n]["group"]] = group_size.get(truth[n]["group"], 0) + 1
    defects = {"blurry", "dark", "bright"}
    wrong = [n for n in removed if group_size[truth[n]["group"]] == 1 and truth[n]["role"] not in defects]
    wrong_against = [n for n in against if truth[n]["group"] not in in_ref]
    recall = sum(n in removed for n in must_go) / len(must_go)
    print(
        f"{label}: {seconds:.1f} s; NEW {len(new)}, {len(must_go)} with their group in REF: recall {recall:.4f}; "
        f"removed {len(removed)} ({len(against)} against REF), precision "
        f"{1 - len(wrong) / max(1, len(removed)):.4f}; removed against REF without their group there: "
        f"{len(wrong_against)}; REF pictures in the report: {sum(not n.startswith('/') and to_ref(n) for n in by_name)}"
    )


def draw(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """A distinct small picture: shapes on a gradient."""
    x = np.linspace(0, 1, size)[None, :, None]
    y = np.linspace(0, 1, size)[:, None, None]
    a, b, c = rng.random((3, 3)) * 255
    base = (a * (1 - x) + b * x) * (1 - y) + c * y
    im = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = rng.integers(0, size - 16, 2)
        w, h = rng.integers(12, size // 2, 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = (int(x0), int(y0), int(x0 + w), int(y0 + h))
        [pen.ellipse, pen.rectangle][int(rng.integers(0, 2))](box, fill=colour)
    return im


def batch(ref_size: int, new_size: int, work: Path, new_from: Path | None = None, rounds: int = 5) -> None:
    ref, new = work / "ref", work / "new"
    rng = np.random.default_rng(29)
    if not (new / f"n{new_size - 1:05d}.jpg").exists():
        shutil.rmtree(work, ignore_errors=True)
        for folder in (ref, new):
            folder.mkdir(parents=True)
        for k in range(ref_size):
            sub = ref / f"{k // 1000:03d}"
            sub.mkdir(exist_ok=True)
            draw(rng).save(sub / f"r{k:07d}.jpg", quality=90)
        for k in range(new_size):
            if k % 20 == 0:  # a copy of a REF picture, re-encoded
                src = ref / f"{k // 1000:03d}" / f"r{k:07d}.jpg"
                Image.open(src).save(new / f"n{k:05d}.jpg", quality=60)
            else:
                draw(rng).save(new / f"n{k:05d}.jpg", quality=90)
    if not (work / "ref.index" / "index.json").exists():
        t = time.perf_counter()
        out = refinery("index", str(ref), "--out", str(work / "ref.index"))
        assert out.returncode == 0, out.stderr
        print(f"indexed REF ({ref_size} pictures) in {time.perf_counter() - t:.0f} s")
    if new_from is not None:  # photos of another size as the batch (hard links; none a copy of REF)
        new = work / "new-photos"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        for path in sorted(new_from.iterdir())[:new_size]:
            os.link(path, new / path.name)
    print(f"CPU: {cpu()}; NEW {new_size} pictures ({new_from or 'drawn here'}), REF {ref_size} (an index)")
    seconds_by: dict[str, list[float]] = {"plain": [], "against": []}
    for run in range(rounds):
        for label, extra in (("plain", []), ("against", ["--against", str(work / "ref.index")])):
            report = work / f"{label}.json"
            t = time.perf_counter()
            out = refinery("dedup", str(new), "--no-cache", "--report", str(report), *extra)
            seconds = time.perf_counter() - t
            seconds_by[label].append(seconds)
            assert out.returncode in (0, 3), out.stderr
            lines = json.loads(report.read_text())["files"]
            gone = sum(1 for f in lines if f.get("against"))
            stages = json.loads(report.read_text())["summary"]["seconds_by_stage"]
            print(
                f"run {run + 1} {label:8s} {seconds:6.1f} s, {1000 * seconds / new_size:.2f} ms per NEW picture; "
                f"removed against REF {gone}; stage seconds {stages}"
            )
    plain, against = (float(np.median(seconds_by[k])) for k in ("plain", "against"))
    print(f"median of {rounds} rounds: plain {plain:.2f} s, against {against:.2f} s: {against / plain:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="job", required=True)
    one = sub.add_parser("split")
    one.add_argument("corpus", type=Path)
    one.add_argument("--work", type=Path, required=True)
    two = sub.add_parser("batch")
    two.add_argument("--ref", type=int, default=100_000)
    two.add_argument("--new", type=int, default=1_000)
    two.add_argument("--work", type=Path, required=True)
    two.add_argument("--new-from", type=Path, default=None, help="take NEW from this folder of photos instead")
    two.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.job == "split":
        split(args.corpus, args.work)
    else:
        batch(args.ref, args.new, args.work, args.new_from, args.rounds)


if __name__ == "__main__":
    main()
