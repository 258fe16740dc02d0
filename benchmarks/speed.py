#!/usr/bin/env python3
"""How fast is `refinery dedup`, and how close to what this machine can do?

    python benchmarks/speed.py /tmp/c2k [--n 2000 --seed 0] [--model default] [--runs 3]

In one run, on one corpus (built with ../shared/bench/make_corpus.py if missing):
  decode limit  read + decode + features + model input for every file, on all cores
                (a process per core), no model: the most the I/O side can give
  model limit   the model alone on ready-made batches on all cores, both ways: one run
                per core in parallel (what the pipeline does) and one run spread over
                all cores by onnxruntime; the faster counts
  end to end    `refinery dedup DIR --report` in a subprocess with an empty feature cache,
                page cache dropped first where the machine allows it (cold; the median
                of --runs); then the best of three runs on the unchanged folder (warm)
The decode side and the model both need every core, so the most a pipeline that overlaps
them perfectly can reach is the combined limit 1 / (1/decode + 1/model), below the slower one.
It prints images/s for each, the ratio of end to end to the slower limit, the ratio to the
original pipeline's 42 images/s (PyTorch + MPS on an M4), the peak RSS of the dedup process,
the per-stage seconds from its report, and the same as a markdown row for README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from corpus import ensure_corpus

from refinery.config import load_config
from refinery.features import measure
from refinery.io.images import decode_for_stages, read_bytes, to_input
from refinery.runner.session import read_spec, resolve_model_path
from refinery.spec import ModelSpec

REFERENCE_IMAGES_PER_S = 42.0  # spec.md: 116,298 images in ~46 minutes on a Mac Mini M4


def _prepare(path: str, spec: ModelSpec) -> int:
    """Everything the feature pass does for one file, bar the model."""
    data = read_bytes(Path(path))
    decoded = decode_for_stages(data, path, spec)
    measure(Path(path).name, data, hashlib.sha256(data).hexdigest(), decoded)
    return int(to_input(decoded.image, spec).size > 0)


def decode_limit(files: list[Path], model: str) -> float:
    spec = read_spec(resolve_model_path(model))
    start = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        pool.starmap(_prepare, [(str(f), spec) for f in files], chunksize=16)
    return len(files) / (time.perf_counter() - start)


def model_limit(model: str, batch_size: int, n: int = 256) -> tuple[float, float]:
    """The model alone on ready-made batches, all cores: (one run per core in parallel, as
    the pipeline does it; one run at a time spread over all cores by onnxruntime)."""
    from refinery.runner.session import Embedder

    cores = os.cpu_count() or 1
    parallel = Embedder(model, device="cpu", threads=1, batch_size=batch_size).load()
    h, w = parallel.spec.input_size
    batch = np.random.default_rng(0).uniform(0, 255, (n, 3, h, w)).astype(np.float32)
    parallel.embed(batch[:batch_size])  # warm-up: first runs allocate
    start = time.perf_counter()
    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(parallel.embed, np.array_split(batch, cores)))
    per_core = n / (time.perf_counter() - start)
    spread = Embedder(model, device="cpu", threads=0, batch_size=32).load()
    spread.embed(batch[:32])
    start = time.perf_counter()
    spread.embed(batch)
    return per_core, n / (time.perf_counter() - start)


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
    subprocess.run(
        [sys.executable, "-m", "refinery", "-q", "dedup", str(images), "--report", str(report), "--model", model],
        check=False,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
    )
    seconds = time.perf_counter() - start
    summary = json.loads(report.read_text())["summary"]
    return seconds, summary, summary["peak_memory_mb"]  # the run's own VmHWM, not a parent's


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="default")
    ap.add_argument("--runs", type=int, default=1, help="cold runs (the median is reported)")
    args = ap.parse_args()
    truth = ensure_corpus(args.corpus, args.n, args.seed)
    images = args.corpus / "images"
    files = [images / name for name in sorted(truth)]
    batch_size = load_config().model.batch_size

    colds = []
    for _ in range(args.runs):
        cache = Path(tempfile.mkdtemp(prefix="refinery-speed-"))  # an empty feature cache: a first run
        cold = drop_page_cache()
        colds.append((*end_to_end(images, args.corpus / "speed-report.json", args.model, cache), cache))
    e2e_s, summary, peak, cache = sorted(colds, key=lambda c: c[0])[len(colds) // 2]
    warm_s = min(end_to_end(images, args.corpus / "speed-report-warm.json", args.model, cache)[0] for _ in range(3))
    for *_, c in colds:
        shutil.rmtree(c, ignore_errors=True)
    decode = decode_limit(files, args.model)
    per_core, spread = model_limit(args.model, batch_size)
    model = max(per_core, spread)
    limit = min(decode, model)
    shared = 1 / (1 / decode + 1 / model)  # both need the same cores: their work adds up
    e2e = len(files) / e2e_s
    stage = summary["seconds_by_stage"]
    print(
        f"{len(files)} files, {os.cpu_count()} cores, model {args.model}, batch {batch_size} per worker "
        f"({'cold' if cold else 'warm: could not drop the page cache'} first run; median of {len(colds)})"
    )
    rows = [
        ("decode limit: read, decode, measure, model input; a process per core", decode),
        (f"model limit: one run per core in parallel, batch {batch_size}", per_core),
        ("model limit: one run over all cores (onnxruntime threads), batch 32", spread),
        ("combined limit: decode and model sharing the cores", shared),
        ("refinery dedup end to end, cold", e2e),
        (f"second run, cache warm (best of 3): {e2e_s / warm_s:.1f}x faster", len(files) / warm_s),
    ]
    for label, value in rows:
        print(f"  {label:75s} {value:8.1f} images/s")
    print(
        f"ratio of the slower limit ({'decode' if decode < model else 'model'}) to end to end: {limit / e2e:.2f}x; "
        f"of the combined limit: {shared / e2e:.2f}x; "
        f"{e2e / REFERENCE_IMAGES_PER_S:.2f}x the original's {REFERENCE_IMAGES_PER_S:.0f} images/s"
    )
    print(f"peak RSS of refinery dedup: {peak:.0f} MB")
    print(
        f"seconds: pass {stage['pass']} (thread time: decode+measure {stage['features']}, model {stage['embed']}), "
        f"quality {stage['quality']}, exact {stage['exact']}, near {stage['near']}, semantic {stage['semantic']}"
    )
    print(
        f"| {len(files)} | {decode:.0f} | {model:.0f} | {shared:.0f} | **{e2e:.1f}** | {limit / e2e:.2f}x | "
        f"{shared / e2e:.2f}x | {e2e / REFERENCE_IMAGES_PER_S:.2f}x | {e2e_s / warm_s:.0f}x | {peak:.0f} MB |"
    )


if __name__ == "__main__":
    main()
