"""Memory and time of the grouping stages (quality, exact, near, semantic) at up to a million
pictures, without a million files on disk.

    python benchmarks/funnel_memory.py /tmp/c2k/images --sizes 100000,300000 [--columns-only 1000000]

Seed: the real features and embeddings of the folder (default model, through the feature
cache, as `refinery dedup` computes them). Each size grows them into a run of that many
rows, the way benchmarks/scale.py grows vectors: a fifth of the new rows are near copies of
a seed row (thumbnail + noise, a few hash bits flipped, embedding at cosine ~0.97), one in
twenty an exact copy (same SHA-256; the seed rows come first, unchanged), the rest
different pictures (another seed row's thumbnail blended in, random hashes, embedding at
cosine ~0.5). The vectors go to the run's
VectorStore on disk as in a real run; the stages then run exactly as in `run_dedup`.

Prints, per size: the bytes a file costs in the run's columns (counted: arrays and path strings), the process's memory
(VmRSS) with the columns filled, its peak (VmHWM) after the stages, and seconds per stage.
`--columns-only N` fills N rows and reports their memory without running the stages.
`--near` instead times the near stage's pair search both ways on each grown run - hash
candidates + thumbnail confirmation (exact) and the thumbnail IVF search (approximate) - and
the share of the exact pairs the approximate search finds.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from refinery.config import Config
from refinery.dedup import featurepass, state
from refinery.dedup import run as dedup_run
from refinery.dedup.decisions import STAGES
from refinery.dedup.funnel import Funnel
from refinery.dedup.vectors import VectorStore
from refinery.io.cache import FeatureCache, default_cache_dir
from refinery.io.fileio import file_sha256
from refinery.parallel import peak_memory_mb
from refinery.runner.session import Embedder, l2_normalize

EXACT_NEAR_LIMIT = 300_000  # the exact hash search takes 15 minutes at a million
CHUNK = 5_000  # rows grown at a time: the benchmark's own temporaries stay ~50 MB


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def column_bytes(run: state.Run) -> int:
    """What the run's per-file state takes: numpy columns, path strings and the list of them."""
    d = run.decisions
    arrays = (run.vector_row, run.done, run.cached, run.stat, d.code, d.stage, d.keeper, d.group)
    paths = run.table.paths
    return run.table.nbytes() + sum(a.nbytes for a in arrays) + sum(sys.getsizeof(p) for p in paths) + 8 * len(paths)


def seed_run(
    folder: Path, cfg: Config, embedder: Embedder, store: VectorStore
) -> tuple[state.Run, np.ndarray, np.ndarray]:
    """The folder's real rows: the run, the rows with a vector, and those vectors (float32)."""
    files, _ = featurepass.list_files(folder, cfg)
    run = state.Run(files)
    cache = FeatureCache(default_cache_dir(), file_sha256(embedder.path), folder)
    stages = {name: state.StageStats(name) for name in ("pass", "features", "embed")}
    featurepass.feature_pass(
        folder, run, len(files), cfg, embedder, stages, store=store, cache=cache, workers=2, embed_all=True
    )
    cache.close()
    ok = np.flatnonzero(run.table.filled & (run.vector_row >= 0))
    return run, ok, store.rows(run.vector_row[ok])


def grow(
    seed: state.Run,
    seed_rows: np.ndarray,
    seed_vectors: np.ndarray,
    size: int,
    store: VectorStore,
    rng: np.random.Generator,
) -> state.Run:
    """A run of `size` rows grown from the seed's (see the module's docstring)."""
    run = state.Run([f"{k // 1000:04d}/{k:07d}.jpg" for k in range(size)])
    src, dst = seed.table, run.table
    for start in range(0, size, CHUNK):
        rows = np.arange(start, min(size, start + CHUNK))
        n = len(rows)
        pick = rng.integers(0, len(seed_rows), n)
        kind = rng.random(n)  # < 0.05 exact copy, < 0.25 near copy, else another picture
        first = rows < len(seed_rows)  # the seed itself comes first, unchanged
        pick[first], kind[first] = rows[first], 0.0
        base = seed_rows[pick]
        near, other = (kind >= 0.05) & (kind < 0.25), kind >= 0.25
        for name, column in dst.columns.items():
            column[rows] = src.columns[name][base]
        thumbs = src.thumb[base].astype(np.int16)
        noise = rng.integers(-2, 3, thumbs.shape)
        blend = src.thumb[seed_rows[rng.integers(0, len(seed_rows), n)]].astype(np.int16)
        thumbs = np.where(near[:, None], thumbs + noise, thumbs)
        thumbs = np.where(other[:, None], (thumbs + blend) // 2 + noise, thumbs)
        dst.thumb[rows] = np.clip(thumbs, 0, 255).astype(np.uint8)
        for name in ("phash", "dhash"):
            values = dst.columns[name][rows]
            flips = np.uint64(1) << rng.integers(0, 64, n).astype(np.uint64)
            values = np.where(near, values ^ flips, values)
            dst.columns[name][rows] = np.where(
                other, rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64), values
            )
        digests = np.frombuffer(b"".join(hashlib.sha256(b"%d" % k).digest() for k in rows), np.uint8)
        dst.sha256[rows] = digests.reshape(n, 32)
        exact = ~(near | other)
        dst.sha256[rows[exact]] = src.sha256[base[exact]]  # a copy of the seed's bytes
        dst.filled[rows] = True
        scale = np.where(other, 1.5, np.where(near, 0.15, 0.0))[:, None] / np.sqrt(seed_vectors.shape[1])
        vectors = seed_vectors[pick] + rng.normal(0, 1, (n, seed_vectors.shape[1])).astype(np.float32) * scale
        run.vector_row[rows] = np.asarray(store.append(l2_normalize(vectors.astype(np.float32))))
        run.done[rows] = True
    return run


def recall(pairs: set, exact: set | None) -> str:
    return "(exact not run)" if exact is None else f"{len(pairs & exact) / max(1, len(exact)):.4f}"


def sampled_recall(pairs: set, run: state.Run, cfg: Config, rng: np.random.Generator, samples: int = 300) -> str:
    """Share of the confirmed partners of `samples` random rows (brute force against every
    row: hashes and thumbnail correlation) that `pairs` holds."""
    from refinery.dedup.stages import near

    t = run.table
    truth = set()
    for r in rng.choice(len(t), samples, replace=False).tolist():
        both = np.stack([np.full(len(t), r), np.arange(len(t))], axis=1)
        both = both[both[:, 1] != r]
        close = (near._distances(both, t.columns["phash"]) <= cfg.near.max_phash) | (
            near._distances(both, t.columns["dhash"]) <= cfg.near.max_dhash
        )
        ok = np.zeros(len(both), bool)
        ok[close] = near._correlations(both[close], t.thumb) >= cfg.near.min_correlation
        truth |= {(min(a, b), max(a, b)) for a, b in both[ok].tolist()}
    return f"{len(truth & pairs) / max(1, len(truth)):.4f} (sample of {samples} rows, {len(truth):,} pairs)"


def near_both_ways(run: state.Run, cfg: Config, rng: np.random.Generator) -> None:
    from refinery.dedup.stages import near

    t, c = run.table, cfg.near
    args = (t.columns["phash"], t.columns["dhash"], t.thumb)
    found = {}
    ways = [("exact", replace(c, exact_up_to=len(t)))] if len(t) <= EXACT_NEAR_LIMIT else []
    for name, settings in [*ways, ("IVF", replace(c, exact_up_to=0))]:
        start = time.perf_counter()
        pairs = near.near_pairs(*args, settings)
        found[name] = {tuple(p) for p in pairs.tolist()}
        print(
            f"| {len(t):,} | {name}{'' if name == 'exact' else f' nprobe={settings.nprobe}'} | "
            f"{time.perf_counter() - start:.1f} | {len(pairs):,} | "
            f"{recall(found[name], found.get('exact')) if ways else sampled_recall(found[name], run, cfg, rng)} | "
            f"{peak_memory_mb():.0f} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--columns-only", type=int, default=0)
    ap.add_argument("--near", action="store_true")
    args = ap.parse_args()
    cfg, embedder = Config(), Embedder("default", threads=1)
    rng = np.random.default_rng(0)
    with VectorStore(embedder.spec.output_dim, featurepass.scratch_dir(cfg)) as seed_store:
        seed, seed_rows, seed_vectors = seed_run(args.folder, cfg, embedder, seed_store)
    print(f"seed: {len(seed_rows)} real pictures of {args.folder}; start: RSS {rss_mb():.0f} MB", flush=True)
    if args.near:
        print("| pictures | near pair search | seconds | pairs | recall vs exact | peak MB |")
        print("|---:|---|---:|---:|---:|---:|")
        for size in [int(s) for s in args.sizes.split(",") if s]:
            with VectorStore(embedder.spec.output_dim, featurepass.scratch_dir(cfg)) as store:
                near_both_ways(grow(seed, seed_rows, seed_vectors, size, store, rng), cfg, rng)
        return
    print(
        "| pictures | columns B/file | RSS with columns MB | peak after stages MB | quality s | exact s | "
        "near s | semantic s | removed (by stage) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for size in [*sizes, *([args.columns_only] if args.columns_only else [])]:
        with VectorStore(embedder.spec.output_dim, featurepass.scratch_dir(cfg)) as store:
            run = grow(seed, seed_rows, seed_vectors, size, store, rng)
            columns = rss_mb()
            per_file = column_bytes(run) / size
            if size == args.columns_only and size not in sizes:
                print(f"| {size:,} | {per_file:.0f} | {columns:.0f} | (stages not run) | | | | | |", flush=True)
                continue
            stages = {name: state.StageStats(name) for name in (*STAGES, "scenes")}
            start = time.perf_counter()
            # no grays: grown rows are no frames to decode, so no scenes
            dedup_run.decide(Funnel(run, store, cfg, stages))
            seconds = {k: v.seconds for k, v in stages.items()}
            print(
                f"| {size:,} | {per_file:.0f} | {columns:.0f} | {peak_memory_mb():.0f} | "
                f"{seconds['quality']:.1f} | {seconds['exact']:.1f} | {seconds['near']:.1f} | "
                f"{seconds['semantic']:.1f} | {'/'.join(f'{v.removed:,}' for v in stages.values())} "
                f"(total {time.perf_counter() - start:.0f} s) |",
                flush=True,
            )
        del run
    sys.stdout.flush()


if __name__ == "__main__":
    main()
