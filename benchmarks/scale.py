"""The grouping stages at up to a million pictures: semantic pairs (exact vs IVF), perceptual-hash
pairs, and the graph.

    python benchmarks/scale.py /tmp/c2k/images [--sizes 20000,100000,300000] [--nprobe 4,8,16]
                                               [--stage semantic,hash,graph]

Seed: the real embeddings (default model, through the feature cache) and perceptual hashes of
the folder. Each size grows them: a fifth of the new rows are near copies of a seed row
(cosine ~0.97: duplicates to find), the rest far variations (cosine ~0.5: the crowd that
makes a quadratic search expensive). Hashes grow the same way (a few flipped bits for the
copies, random for the rest).

semantic  exact block-against-block search (where it takes under ~10 minutes) vs IVF with
          float16 codes at each nprobe: build and search seconds, index MB, pairs found, and
          pair recall against exact - measured on every pair up to the exact limit, and above
          it on a sample of 300 rows whose exact neighbours come from a flat search over all
graph     star_groups (connected components with the chaining guard) over the pairs found
hash      FAISS binary flat range search at the near stage's radii (pHash <= 8, dHash <= 10)
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import faiss
import numpy as np

from refinery import ann
from refinery.config import Config
from refinery.dedup.groups import star_groups
from refinery.runner.session import Embedder, l2_normalize

THRESHOLD = Config().semantic.threshold
EXACT_LIMIT = 100_000  # rows above which the exact search is not run (it takes 100+ s at 100k)


def grow(seed: np.ndarray, size: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """`size` unit rows: the seed, then near copies (a fifth) and far variations of seed rows,
    made a chunk at a time (a million 1280-d rows are 5 GB; their temporaries would be 20)."""
    out = np.empty((max(size, len(seed)), seed.shape[1]), np.float32)
    out[: len(seed)] = seed
    for start in range(len(seed), size, chunk):
        n = min(chunk, size - start)
        base = seed[rng.integers(0, len(seed), n)]
        scale = np.where(rng.random(n) < 0.2, 0.15, 1.5)[:, None] / np.sqrt(seed.shape[1])
        base += rng.normal(0, 1, base.shape).astype(np.float32) * scale.astype(np.float32)
        out[start : start + n] = l2_normalize(base)
    return out[:size]


def sampled_recall(
    vectors: np.ndarray, pairs: set[tuple[int, int]], rng: np.random.Generator, samples: int = 300
) -> float:
    """Share of the exact pairs of `samples` random rows (exact: a flat search over all rows)
    that `pairs` holds."""
    rows = rng.choice(len(vectors), samples, replace=False)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    lims, _, found = flat.range_search(vectors[rows], THRESHOLD)
    truth = {
        (min(r, int(j)), max(r, int(j)))
        for k, r in enumerate(rows.tolist())
        for j in found[lims[k] : lims[k + 1]]
        if int(j) != r
    }
    return len(truth & pairs) / max(1, len(truth))


def semantic_stage(vectors: np.ndarray, nprobes: list[int], rng: np.random.Generator) -> list[tuple[int, int]]:
    n = len(vectors)
    exact: set[tuple[int, int]] | None = None
    if n <= EXACT_LIMIT:
        start = time.perf_counter()
        exact = {(i, j) for i, j, _ in ann.similar_pairs(vectors, THRESHOLD)}
        print(
            f"| {n:,} | exact | | {time.perf_counter() - start:.1f} | {vectors.nbytes / 2**20:.0f} | "
            f"{len(exact):,} | 1 |",
            flush=True,
        )
    best: list[tuple[int, int]] = []
    for nprobe in nprobes:
        start = time.perf_counter()
        found = ann.similar_pairs(vectors, THRESHOLD, exact_up_to=0, nprobe=nprobe)
        seconds = time.perf_counter() - start
        pairs = {(i, j) for i, j, _ in found}
        recall = len(pairs & exact) / max(1, len(exact)) if exact is not None else sampled_recall(vectors, pairs, rng)
        how = "all pairs" if exact is not None else "sample"
        print(
            f"| {n:,} | IVF nprobe={nprobe} | {int(4 * np.sqrt(n))} lists | {seconds:.1f} | "
            f"{vectors.nbytes / 2 / 2**20:.0f} | {len(pairs):,} | {recall:.4f} ({how}) |",
            flush=True,
        )
        best = sorted(pairs)
    return best


def graph_stage(pairs: list[tuple[int, int]], vectors: np.ndarray) -> None:
    start = time.perf_counter()
    groups, splits = star_groups(pairs, min, lambda i, keeper: float(vectors[i] @ vectors[keeper]) >= THRESHOLD)
    seconds = time.perf_counter() - start
    print(
        f"graph: {len(pairs):,} pairs over {len(vectors):,} pictures -> {len(groups):,} groups "
        f"({splits} chains cut) in {seconds:.1f} s",
        flush=True,
    )


def hash_stage(size: int, rng: np.random.Generator) -> None:
    seeds = rng.integers(0, 2**63, 2000, dtype=np.int64).astype(np.uint64)
    picks = seeds[rng.integers(0, len(seeds), size)]
    near = rng.random(size) < 0.2
    flips = np.zeros(size, np.uint64)
    for _ in range(3):  # a near copy differs in up to 3 bits
        flips |= np.uint64(1) << rng.integers(0, 64, size).astype(np.uint64)
    values = np.where(near, picks ^ flips, rng.integers(0, 2**63, size, dtype=np.int64).astype(np.uint64))
    codes = ann.hash_codes(values.tolist())
    for radius in (8, 10):
        start = time.perf_counter()
        pairs = ann.within(codes, radius)
        print(
            f"hash: {size:,} codes, radius {radius}: {len(pairs):,} pairs in {time.perf_counter() - start:.1f} s",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--sizes", default="20000,100000,300000")
    ap.add_argument("--nprobe", default="4,8,16")
    ap.add_argument("--stage", default="semantic,graph,hash")
    args = ap.parse_args()
    stages = args.stage.split(",")
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in args.sizes.split(",")]
    if "hash" in stages:
        for size in sizes:
            hash_stage(size, rng)
    if not {"semantic", "graph"} & set(stages):
        return
    from refinery.dedup.featurepass import embed_every_picture
    from refinery.io.cache import FeatureCache, default_cache_dir
    from refinery.io.fileio import file_sha256

    embedder = Embedder("default", threads=1)
    cache = FeatureCache(default_cache_dir(), file_sha256(embedder.path), args.folder)
    seed = l2_normalize(embed_every_picture(args.folder, Config(), embedder, cache=cache).vectors)
    cache.close()
    print(
        f"seed: {len(seed)} real embeddings ({seed.shape[1]}-d); threshold {THRESHOLD}; "
        f"{faiss.omp_get_max_threads()} threads"
    )
    print("| pictures | search | lists | seconds | vectors MB | pairs | pair recall |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        vectors = grow(seed, size, rng)
        pairs = semantic_stage(vectors, [int(p) for p in args.nprobe.split(",")], rng)
        if "graph" in stages:
            graph_stage(pairs, vectors)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
