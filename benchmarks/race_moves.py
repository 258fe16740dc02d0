#!/usr/bin/env python3
"""A hostile check: another process changes and deletes pictures while `refinery dedup
--move-rejects-to` runs; afterwards `refinery undo` must give back exactly that process's
final state - nothing lost, nothing moved that changed after it was judged.

    python benchmarks/race_moves.py PHOTOS [--seeds 1 2 3 4]

PHOTOS is any folder of real pictures (Debian's opencv-doc: `apt-get download opencv-doc &&
dpkg -x opencv-doc_*.deb x`, then x/usr/share/doc/opencv-doc/examples/data). Each seed copies
it, adds an exact copy of every picture under copy/, and starts a writer thread that every
1-20 ms flips a byte of a random picture keeping its size and time (only a hash tells),
appends a byte, or deletes it; odd seeds warm the cache first so the moves start at once.
Prints per seed: files moved, error lines, files the writer touched, and the files whose
content after undo differs from the writer's last word (must be 0).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def state(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and ".refinery" not in p.parts
    }


def writer(photos: Path, rng: random.Random, touched: dict[str, str | None], stop: threading.Event) -> None:
    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    while not stop.is_set():
        path, r = rng.choice(files), rng.random()
        rel = path.relative_to(photos).as_posix()
        try:
            if r < 0.1:
                path.unlink()
                touched[rel] = None
            else:
                data, st = path.read_bytes(), path.stat()
                data = bytes([data[0] ^ 1]) + data[1:] if r < 0.55 else data + b"x"
                path.write_bytes(data)
                if r < 0.55:
                    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
                touched[rel] = hashlib.sha256(data).hexdigest()
        except FileNotFoundError:
            pass  # moved away by refinery meanwhile (its journal has it), or deleted earlier
        time.sleep(rng.uniform(0.001, 0.02))


def one_seed(source: Path, base: Path, seed: int) -> str:
    photos = base / "photos"
    shutil.copytree(source, photos)
    (photos / "copy").mkdir()
    for p in sorted(photos.glob("*")):
        if p.suffix.lower() in (".jpg", ".png"):
            shutil.copy2(p, photos / "copy" / p.name)
    expected = state(photos)
    env = {**os.environ, "XDG_CACHE_HOME": str(base / "cache")}
    refinery = [sys.executable, "-m", "refinery"]
    if seed % 2:
        subprocess.run([*refinery, "dedup", str(photos), "--device", "cpu"], env=env, capture_output=True, cwd=REPO)
    touched: dict[str, str | None] = {}
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(photos, random.Random(seed), touched, stop))
    thread.start()
    run = subprocess.run(
        [*refinery, "dedup", str(photos), "--move-rejects-to", str(base / "rejects"), "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    stop.set()
    thread.join()
    moved = len(state(base / "rejects"))
    undo = subprocess.run([*refinery, "undo", str(base / "rejects")], capture_output=True, text=True, cwd=REPO)
    for rel, digest in touched.items():
        if digest is None:
            expected.pop(rel, None)
        else:
            expected[rel] = digest
    after = state(photos)
    differ = sum(expected.get(rel) != after.get(rel) for rel in set(expected) | set(after))
    errors = sum(line.startswith("error:") for line in run.stderr.splitlines())
    tracebacks = "Traceback" in run.stderr + undo.stderr
    return (
        f"seed {seed}: dedup exit {run.returncode}, {moved} moved, {errors} error lines, writer touched "
        f"{len(touched)}; undo exit {undo.returncode}; differ after undo: {differ}; left in rejects: "
        f"{len(state(base / 'rejects'))}; tracebacks: {tracebacks}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    args = parser.parse_args()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="refinery-race-") as base:
            print(one_seed(args.photos, Path(base), seed), flush=True)


if __name__ == "__main__":
    main()
