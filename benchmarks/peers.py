#!/usr/bin/env python3
"""Run one peer cleaner on a folder and write the files it would remove, one per line.

    python benchmarks/peers.py imagededup|cleanvision|fastdup IMAGES OUT.txt
    python benchmarks/peers.py --available        # the peers importable here, one per line

Runs in the benchmark environment (benchmarks/peers_env.sh makes it), never in refinery's
own: peers are benchmark-only dependencies. Each tool runs with its defaults.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
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
    lab.find_issues(
        {"exact_duplicates": {}, "near_duplicates": {}, "blurry": {}, "dark": {}, "light": {}}, verbose=False
    )
    removed: set[str] = set()
    for kind in ("exact_duplicates", "near_duplicates"):
        for group in lab.info[kind]["sets"]:
            removed.update(sorted(group)[1:])
    flags = lab.issues[["is_blurry_issue", "is_dark_issue", "is_light_issue"]].any(axis=1)
    removed.update(lab.issues.index[flags])
    return sorted(Path(p).name for p in removed)


def fastdup_defaults(images: Path) -> list[str]:
    """fastdup 2.x with its defaults, following its "find duplicates" and "clean dataset" recipes.

    Calls: `fd = fastdup.create(work_dir=TMP, input_dir=images)`, `fd.run(run_sentry=False)`
    (telemetry off, nothing else changed), then:

    - duplicates: `fd.connected_components()` - components of the similarity graph over
      fastdup's bundled ONNX embedding (576-d, cosine, k=2 nearest neighbours, pairs above
      `threshold=0.9`), edges kept above `ccthreshold=0.96`; all but the first member of each
      component by sorted name are removed (the recipe keeps "the first image" of each cluster);
    - broken: `fd.invalid_instances()` (files fastdup could not read);
    - blurry / bright / dark: `fd.img_stats()` with the thresholds `fd.summary()` counts by
      default: `blur < 150` (variance of the Laplacian), `mean > 253`, `mean < 4` (gray level).

    Not removed: `fd.outliers()` (bottom `lower_threshold=0.05` of similarities): unique
    pictures, not defects. The tutorial notebook "cleaning-image-dataset" filters stats with
    its own example thresholds (blur < 50, mean < 13, mean > 220.5); these are not the
    library's defaults and are not used here.

    No network: SENTRY_OPT_OUT=1 (Python-side Sentry off), `run_sentry=False` (the C library's
    Sentry off) and FASTDUP_PRODUCTION=1 (skips the PyPI latest-version check at import).
    """
    os.environ["SENTRY_OPT_OUT"] = "1"
    os.environ["FASTDUP_PRODUCTION"] = "1"
    import fastdup

    with tempfile.TemporaryDirectory(prefix="fastdup-") as work_dir:
        fd = fastdup.create(work_dir=work_dir, input_dir=str(images))
        fd.run(run_sentry=False)
        removed: set[str] = set()
        components, _ = fd.connected_components()
        if not components.empty:
            for _, names in components.groupby("component_id")["filename"]:
                removed.update(sorted(Path(n).name for n in names)[1:])
        invalid = fd.invalid_instances()
        removed.update(Path(n).name for n in invalid["filename"])
        stats = fd.img_stats()
        if not stats.empty:
            flagged = (stats["blur"] < 150.0) | (stats["mean"] > 253.0) | (stats["mean"] < 4.0)
            removed.update(Path(n).name for n in stats.loc[flagged, "filename"])
    return sorted(removed)


TOOLS = {"imagededup": imagededup_phash, "cleanvision": cleanvision, "fastdup": fastdup_defaults}


def available() -> list[str]:
    """The peers whose package is installed in this environment."""
    return [tool for tool in TOOLS if importlib.util.find_spec(tool) is not None]


def main() -> None:
    if sys.argv[1:] == ["--available"]:
        print("\n".join(available()))
        return
    tool, images, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    start = time.perf_counter()
    removed = TOOLS[tool](images)
    seconds = time.perf_counter() - start
    out.write_text(f"# seconds {seconds:.3f}\n" + "\n".join(removed) + "\n")


if __name__ == "__main__":
    main()
