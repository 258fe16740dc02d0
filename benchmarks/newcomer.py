#!/usr/bin/env python3
"""What a newcomer sees (issue 28), point by point, on Debian's opencv-doc photos and videos:
each scenario run with the `refinery` command of a venv (a fresh one from the wheel, as a user
installs it), its command line and what it prints shown as they are, for a closing note to
quote. Nothing under the opencv-doc folder is touched: every scenario works on copies.

    python3 -m venv /tmp/fresh && /tmp/fresh/bin/pip install 'dist/image_refinery-*.whl[serve]'
    python benchmarks/newcomer.py /tmp/fresh/bin/refinery [--data /usr/share/doc/opencv-doc/examples/data]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image

DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def run(refinery: str, *args: str, cwd: Path) -> None:
    """Run one command as a user types it and print it, its exit code and its last lines."""
    proc = subprocess.run([refinery, *args], capture_output=True, text=True, cwd=cwd, timeout=600)
    print(f"$ refinery {' '.join(args)}    (exit {proc.returncode})")
    for line in (proc.stdout + proc.stderr).strip().splitlines()[-8:]:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("refinery", help="the refinery executable of the venv to try")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = work / "photos"
        photos.mkdir()
        for picture in args.data.iterdir():
            if picture.suffix.lower() in (".jpg", ".png") and picture.is_file():
                shutil.copy(picture, photos)
        shutil.copy(photos / "aloeL.jpg", photos / "aloeL_copy.jpg")
        r = partial_runner(args.refinery, work)

        print("1. frames: two videos of one name, a second run, a picture")
        for camera, video in (("camA", "Megamind.avi"), ("camB", "vtest.avi")):
            (work / camera).mkdir()
            shutil.copy(args.data / video, work / camera / "clip.avi")
        r("frames", "camA/clip.avi", "camB/clip.avi", "--out", "frames")
        r("frames", "camA/clip.avi", "camB/clip.avi", "--out", "frames")
        r("frames", str(photos / "baboon.jpg"), "--out", "frames")

        print("2. no picture found; a search on the photos themselves")
        (work / "notes").mkdir()
        (work / "notes" / "a.txt").write_text("no picture")
        r("dedup", "notes")
        r("search", "photos", "photos/baboon.jpg")

        print("5, 6. keepers and reasons (TIFF, BMP, WebP of two photos; a byte copy)")
        formats = work / "formats"
        formats.mkdir()
        for name in ("baboon.jpg", "messi5.jpg"):
            im = Image.open(photos / name).convert("RGB")
            for suffix in (".tiff", ".bmp", ".webp"):
                im.save(formats / (Path(name).stem + suffix))
        r("dedup", "formats", "--report", "formats.json")
        kept = [f["path"] for f in json.loads((work / "formats.json").read_text())["files"] if f["decision"] == "keep"]
        print("    kept:", kept)
        r("dedup", "photos", "--report", "r.json", "--html", "review.html")

        print("7. review: resume from saved decisions; apply's dry run and real run")
        report = json.loads((work / "r.json").read_text())
        decided = [f for f in report["files"] if f["decision"] in ("keep", "remove")]
        lines = [{k: f[k] for k in ("path", "decision", "kept_as", "file")} for f in decided]
        decisions = {"refinery_decisions": 1, "root": report["summary"]["root"], "files": lines}
        (work / "decisions.json").write_text(json.dumps(decisions))
        r("review", "decisions.json", "--html", "again.html")
        r("review", "r.json", "--decisions", "decisions.json", "--html", "again.html")
        r("apply", "decisions.json")
        r("apply", "decisions.json", "--move-rejects-to", "rejects")
        r("undo", "rejects")

        print("10. settings, shown with what each takes")
        r("config", "--show")


def partial_runner(refinery: str, cwd: Path) -> Callable[..., None]:
    return lambda *args: run(refinery, *args, cwd=cwd)


if __name__ == "__main__":
    main()
