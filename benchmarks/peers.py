#!/usr/bin/env python3
"""Run one peer cleaner on a folder and write the files it would remove, one per line.

    python benchmarks/peers.py imagededup|cleanvision IMAGES OUT.txt

Runs in the benchmark environment (see benchmarks/README.md), never in refinery's own:
peers are benchmark-only dependencies. Each tool runs with its defaults.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def imagededup_phash(images: Path) -> list[str]:
    """imagededup's PHash with its defaults (max_distance_threshold=10)."""
    from imagededup.methods import PHash

    return list(PHash(verbose=False).find_duplicates_to_remove(image_dir=images))


def cleanvision(images: Path) -> list[str]:
    """cleanvision: exact and near duplicates (all but the first of each set) + blurry, dark, light."""
    from cleanvision import Imagelab

    lab = Imagelab(data_path=str(images))
    lab.find_issues({"exact_duplicates": {}, "near_duplicates": {}, "blurry": {}, "dark": {}, "light": {}},
                    verbose=False)
    removed: set[str] = set()
    for kind in ("exact_duplicates", "near_duplicates"):
        for group in lab.info[kind]["sets"]:
            removed.update(sorted(group)[1:])
    flags = lab.issues[["is_blurry_issue", "is_dark_issue", "is_light_issue"]].any(axis=1)
    removed.update(lab.issues.index[flags])
    return sorted(Path(p).name for p in removed)


TOOLS = {"imagededup": imagededup_phash, "cleanvision": cleanvision}


def main() -> None:
    tool, images, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    start = time.perf_counter()
    removed = TOOLS[tool](images)
    seconds = time.perf_counter() - start
    out.write_text(f"# seconds {seconds:.3f}\n" + "\n".join(removed) + "\n")


if __name__ == "__main__":
    main()
