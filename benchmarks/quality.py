#!/usr/bin/env python3
"""refinery's quality stage beside cleanvision's checks on quality_set.py's real pictures
(issue 25): good pictures rejected and defects caught, per kind.

    .venv/bin/python benchmarks/quality_set.py /tmp/qset       # builds the set (about 20 s)
    .venv/bin/python benchmarks/quality.py /tmp/qset --cleanvision-python /work/cv-venv/bin/python

refinery runs from this checkout, or the one --refinery-root names (`python -m refinery
dedup OUT/images --report OUT/refinery.json --no-cache` in that folder, defaults, dry run,
under the Python running this script; `git archive HEAD refinery | tar -x -C DIR` gives a
copy of the last commit, whatever the working tree holds).
Only files its quality stage removes count: the defects of one source at several strengths
are near-copies of each other, and another stage removing them says nothing of the quality
stage. cleanvision (its own venv: `pip install cleanvision`) runs Imagelab.find_issues with
its defaults for the checks in CLEANVISION_ISSUES; a file flagged by any of them is rejected.
Without --cleanvision-python only refinery is scored.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from corpus import cpu_name

REPO = Path(__file__).resolve().parent.parent
# cleanvision's checks of a single picture. Left out: grayscale (a black-and-white photo is
# not a defect) and the duplicate checks (not the quality stage's job).
CLEANVISION_ISSUES = ("blurry", "dark", "light", "low_information", "odd_size", "odd_aspect_ratio")
# Scores a report gives against a duplicate's keeper: not the quality stage's, left out.
PAIR_SCORES = {"phash_distance", "dhash_distance", "thumb_correlation", "cosine", "foreground_overlap"}


@dataclass
class Verdicts:
    """What one tool rejected: file name -> why."""

    tool: str
    rejected: dict[str, str]
    seconds: float


def run_refinery(images: Path, report: Path, root: Path) -> tuple[Verdicts, dict]:
    """refinery dedup (ROOT's package) on IMAGES; what its quality stage removed, and the report."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "refinery", "-q", "dedup", str(images), "--report", str(report), "--no-cache"],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    data = json.loads(report.read_text())
    rejected = {f["path"]: f["reason"] for f in data["files"] if f["decision"] == "remove" and f["stage"] == "quality"}
    return Verdicts("refinery", rejected, seconds), data


def run_cleanvision(images: Path, python: str, out: Path) -> Verdicts:
    """This script's --cleanvision-worker under PYTHON (a venv with cleanvision)."""
    start = time.perf_counter()
    done = subprocess.run(
        [python, __file__, "--cleanvision-worker", str(images), str(out)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"cleanvision failed ({python}):\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    flags = json.loads(out.read_text())
    return Verdicts("cleanvision", {name: ", ".join(f) for name, f in flags.items() if f}, seconds)


def cleanvision_flags(images: Path) -> dict[str, list[str]]:
    """Every file of IMAGES with the CLEANVISION_ISSUES cleanvision flags it for (defaults)."""
    from cleanvision import Imagelab

    lab = Imagelab(data_path=str(images))
    lab.find_issues({issue: {} for issue in CLEANVISION_ISSUES}, verbose=False)
    return {
        Path(path).name: [issue for issue in CLEANVISION_ISSUES if row[f"is_{issue}_issue"]]
        for path, row in lab.issues.iterrows()
    }


def table(truth: dict[str, dict], tools: list[Verdicts]) -> list[str]:
    """Per kind: pictures, and how many each tool rejected (good: wrongly; defects: rightly)."""
    head = f"{'label':7} {'kind':9} {'n':>4}" + "".join(f" {t.tool:>12}" for t in tools)
    lines = [head, "-" * len(head)]
    for label in ("good", "defect"):
        names = [n for n, t in truth.items() if t["label"] == label]
        for kind in sorted({truth[n]["kind"] for n in names}):
            lines.append(row(label, kind, [n for n in names if truth[n]["kind"] == kind], tools))
        lines.append(row(label, "all", names, tools))
        lines.append("")
    return lines


def row(label: str, kind: str, names: list[str], tools: list[Verdicts]) -> str:
    cells = "".join(f" {share(sum(n in t.rejected for n in names), len(names)):>12}" for t in tools)
    return f"{label:7} {kind:9} {len(names):>4}{cells}"


def share(k: int, n: int) -> str:
    return f"{k} ({100 * k / n:.0f}%)" if n else "0"


def good_rejected(truth: dict[str, dict], tool: Verdicts) -> list[str]:
    """Good pictures TOOL rejected: name, kind, source, why."""
    return [
        f"  {n}  {truth[n]['kind']:9} {source(truth[n])}: {tool.rejected[n]}"
        for n in sorted(tool.rejected.keys() & truth.keys(), key=lambda n: (truth[n]["kind"], n))
        if truth[n]["label"] == "good"
    ]


def defects_missed(truth: dict[str, dict], tool: Verdicts, scores: dict[str, dict]) -> list[str]:
    """Defects TOOL let through: name, kind, how it was made, and refinery's scores of it."""
    missed = [n for n, t in truth.items() if t["label"] == "defect" and n not in tool.rejected]
    return [
        f"  {n}  {truth[n]['kind']:8} {truth[n]['strength'] or '':36} "
        + " ".join(f"{k} {v:g}" for k, v in scores.get(n, {}).items() if k not in PAIR_SCORES)
        for n in sorted(missed, key=lambda n: (truth[n]["kind"], truth[n]["strength"] or "", n))
    ]


def source(t: dict) -> str:
    made = f" ({t['strength']})" if t["strength"] else ""
    return t["source"].split(":", 1)[-1] + made


def score(out: Path, cleanvision_python: str | None, root: Path) -> None:
    truth = json.loads((out / "truth.json").read_text())["files"]
    images = out / "images"
    refinery, report = run_refinery(images, out / "refinery.json", root)
    tools = [refinery]
    if cleanvision_python:
        tools.append(run_cleanvision(images, cleanvision_python, out / "cleanvision.json"))
    scores = {f["path"]: f["scores"] or {} for f in report["files"]}
    summary = report["summary"]
    print(f"CPU: {cpu_name()} ({platform.machine()}, {platform.processor() or 'processor unknown'})")
    print(f"{out}: {len(truth)} pictures; good rows count good pictures rejected, defect rows defects caught")
    print(
        f"refinery ({root / 'refinery'}): quality stage only; {summary['images_per_s']} images/s end to end "
        f"({summary['files']} files, {summary['seconds']} s, {summary['provider']})"
    )
    if cleanvision_python:
        print(f"cleanvision: any of {', '.join(CLEANVISION_ISSUES)}; {tools[1].seconds:.1f} s")
    print("\n" + "\n".join(table(truth, tools)))
    for tool in tools:
        print(f"{tool.tool}: good pictures rejected")
        print("\n".join(good_rejected(truth, tool)) or "  none")
    print("refinery: defects missed (scores from its report)")
    print("\n".join(defects_missed(truth, refinery, scores)) or "  none")


def main() -> None:
    if sys.argv[1:2] == ["--cleanvision-worker"]:  # run by run_cleanvision in cleanvision's venv
        images, out = Path(sys.argv[2]), Path(sys.argv[3])
        out.write_text(json.dumps(cleanvision_flags(images), indent=1) + "\n")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a folder quality_set.py built")
    parser.add_argument("--cleanvision-python", help="a Python with cleanvision installed")
    parser.add_argument(
        "--refinery-root",
        type=Path,
        default=REPO,
        help="the folder holding the refinery package to run (default: this checkout)",
    )
    args = parser.parse_args()
    score(args.out, args.cleanvision_python, args.refinery_root.resolve())


if __name__ == "__main__":
    main()
