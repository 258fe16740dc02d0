#!/usr/bin/env python3
"""How fast is `refinery dedup`, and how close to what this machine can do?

    python benchmarks/speed.py /tmp/c2k [--n 2000 --seed 0] [--model default]

In one run, on one corpus (built with ../shared/bench/make_corpus.py if missing):
  decode limit  read + decode + features + model input for every file, on all cores
                (a process per core), no model: the most the I/O side can give
  model limit   the model alone on ready-made batches, onnxruntime on all cores
  end to end    `refinery dedup DIR --report` in a subprocess with an empty feature cache,
                page cache dropped first where the machine allows it (cold); then a
                second run on the unchanged folder (feature cache warm)
The decode side and the model both need every core, so the most a pipeline that overlaps
them perfectly can reach is the combined limit 1 / (1/decode + 1/model), below the slower one.
It prints images/s for each, the ratio of end to end to the slower limit, the ratio to the
original pipeline's 42 images/s (PyTorch + MPS on an M4), the peak RSS of the dedup process
and the per-stage seconds from its report.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from corpus import ensure_corpus

from refinery.features import extract, model_input
from refinery.runner.session import read_spec, resolve_model_path
from refinery.spec import ModelSpec

REFERENCE_IMAGES_PER_S = 42.0  # spec.md: 116,298 images in ~46 minutes on a Mac Mini M4


def _prepare(path: str, spec: ModelSpec) -> int:
    """Everything the feature pass does for one file, bar the model."""
    _, image = extract(Path(path), Path(path).name, spec)
    return int(model_input(image, spec).size > 0)


def decode_limit(files: list[Path], model: str) -> float:
    spec = read_spec(resolve_model_path(model))
    start = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        pool.starmap(_prepare, [(str(f), spec) for f in files], chunksize=16)
    return len(files) / (time.perf_counter() - start)


def model_limit(model: str, n: int = 256) -> float:
    from refinery.runner.session import Embedder

    embedder = Embedder(model, device="cpu")
    h, w = embedder.spec.input_size
    batch = np.random.default_rng(0).uniform(0, 255, (n, 3, h, w)).astype(np.float32)
    embedder.embed(batch[: embedder.batch_size])  # warm-up
    start = time.perf_counter()
    embedder.embed(batch)
    return n / (time.perf_counter() - start)


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def end_to_end(images: Path, report: Path, model: str, cache: Path) -> tuple[float, dict, float]:
    """(seconds, report summary, peak RSS in MB) of one `refinery dedup` run."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "refinery", "-q", "dedup", str(images), "--report", str(report),
                    "--model", model], check=False, stdout=subprocess.DEVNULL,
                   env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, json.loads(report.read_text())["summary"], peak_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    truth = ensure_corpus(args.corpus, args.n, args.seed)
    images = args.corpus / "images"
    files = [images / name for name in sorted(truth)]

    cache = Path(tempfile.mkdtemp(prefix="refinery-speed-"))  # an empty feature cache: a first run
    cold = drop_page_cache()
    e2e_s, summary, peak = end_to_end(images, args.corpus / "speed-report.json", args.model, cache)
    warm_s, _, _ = end_to_end(images, args.corpus / "speed-report-warm.json", args.model, cache)
    shutil.rmtree(cache, ignore_errors=True)
    decode = decode_limit(files, args.model)
    model = model_limit(args.model)
    limit = min(decode, model)
    e2e = len(files) / e2e_s
    print(f"{len(files)} files, {os.cpu_count()} cores, model {args.model} "
          f"({'cold' if cold else 'warm: could not drop the page cache'} first run)")
    print(f"{'measure':28s} {'images/s':>9s}")
    print(f"{'decode limit (all cores)':28s} {decode:9.1f}")
    print(f"{'model limit (all cores)':28s} {model:9.1f}")
    print(f"{'refinery dedup end to end':28s} {e2e:9.1f}")
    print(f"{'second run (cache warm)':28s} {len(files) / warm_s:9.1f}   ({e2e_s / warm_s:.0f}x faster)")
    shared = 1 / (1 / decode + 1 / model)  # both need the same cores: their work adds up
    print(f"{'combined limit (shared cores)':28s} {shared:9.1f}")
    print(f"ratio to the slower limit ({'decode' if decode < model else 'model'}): {limit / e2e:.2f}x; "
          f"to the combined limit: {shared / e2e:.2f}x; "
          f"{e2e / REFERENCE_IMAGES_PER_S:.2f}x the original's {REFERENCE_IMAGES_PER_S:.0f} images/s")
    print(f"peak RSS of refinery dedup: {peak:.0f} MB")
    print("seconds by stage: " + ", ".join(f"{k} {v}" for k, v in summary["seconds_by_stage"].items()))


if __name__ == "__main__":
    main()
