"""Identity folders from a labelled corpus: every group of ../shared/bench/make_corpus.py is
one identity seen under small changes (position, scale, light, mirror), which is what a
re-identification model must learn. Files are hard-linked (copied across filesystems).

    python benchmarks/identities.py /tmp/c2k /tmp/ids_s0 [--roles original,near,semantic]

Exact copies, blurred, dark and burnt-out versions are left out by default: they teach
nothing (the same bytes) or teach the model to match ruined pictures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path, help="a make_corpus.py output folder (truth.json, images/)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--roles", default="original,near,semantic")
    args = ap.parse_args()
    roles = set(args.roles.split(","))
    files = json.loads((args.corpus / "truth.json").read_text())["files"]
    groups: dict[int, list[str]] = {}
    for name, info in files.items():
        if info["role"] in roles:
            groups.setdefault(info["group"], []).append(name)
    kept = {g: names for g, names in groups.items() if len(names) >= 2}
    for group, names in kept.items():
        folder = args.out / f"id_{group:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            source, target = args.corpus / "images" / name, folder / name
            if not target.exists():
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)
    print(f"{args.out}: {len(kept)} identities, {sum(map(len, kept.values()))} pictures")


if __name__ == "__main__":
    main()
