"""When does the exact (flat) retrieval index stop being fast enough, and what does HNSW cost in recall?

    python benchmarks/retrieval_index.py /tmp/c2k/images [--sizes 10000,50000,100000] [--queries 200]

Real embeddings of the folder (default model, through the feature cache) are the seed; the
collection grows to each size with perturbed copies of them (noise, renormalised, so the
neighbourhoods look like real ones: clusters of near pictures among many far ones). For each
size it builds the exact inner-product index and an HNSW index (M=32, efSearch=128, the
settings `refinery index` uses above EXACT_UP_TO) and prints build seconds, milliseconds per
query (one query at a time, as `search` and `serve` ask), memory of the index, and HNSW's
recall@10 against the exact answer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np

from refinery.ann import HNSW_EF_SEARCH, HNSW_M
from refinery.config import Config
from refinery.runner.session import Embedder, l2_normalize


def grow(seed: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` unit vectors: the seed, then noisy copies of random seed rows (cosine ~0.9 to them)."""
    extra = size - len(seed)
    if extra <= 0:
        return seed[:size]
    base = seed[rng.integers(0, len(seed), extra)]
    noise = rng.normal(0, 1, base.shape).astype(np.float32) * (0.5 / np.sqrt(seed.shape[1]))
    return np.concatenate([seed, l2_normalize(base + noise)]).astype(np.float32)


def per_query_ms(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    rows = []
    start = time.perf_counter()
    for q in queries:
        rows.append(index.search(q[None], k)[1][0])
    return 1000 * (time.perf_counter() - start) / len(queries), np.array(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--sizes", default="2000,10000,50000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()

    from refinery.dedup.featurepass import embed_every_picture
    from refinery.io.cache import FeatureCache, default_cache_dir
    from refinery.io.fileio import file_sha256

    embedder = Embedder("default", threads=1)
    cache = FeatureCache(default_cache_dir(), file_sha256(embedder.path), args.folder)
    seed = l2_normalize(embed_every_picture(args.folder, Config(), embedder, cache=cache).vectors)
    cache.close()
    rng = np.random.default_rng(0)
    faiss.omp_set_num_threads(1)  # one query at a time on one core, as a search request runs
    print(f"seed: {len(seed)} real embeddings of {args.folder} ({seed.shape[1]}-d); k={args.k}")
    print("| pictures | exact: ms/query | exact MB | HNSW build s | HNSW ms/query | HNSW MB | HNSW recall@10 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        vectors = grow(seed, size, rng)
        queries = l2_normalize(
            vectors[rng.integers(0, size, args.queries)]
            + rng.normal(0, 0.01, (args.queries, vectors.shape[1])).astype(np.float32)
        )
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)
        flat_ms, truth = per_query_ms(flat, queries, args.k)
        faiss.omp_set_num_threads(0)  # building may use every core
        start = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.add(vectors)
        build_s = time.perf_counter() - start
        faiss.omp_set_num_threads(1)
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        hnsw_ms, found = per_query_ms(hnsw, queries, args.k)
        recall = np.mean([len(set(t) & set(f)) / args.k for t, f in zip(truth, found, strict=True)])
        mb = vectors.nbytes / 2**20
        links = size * HNSW_M * 2 * 4 / 2**20  # neighbour lists, level 0 (2M links of 4 bytes)
        print(
            f"| {size:,} | {flat_ms:.2f} | {mb:.0f} | {build_s:.1f} | {hnsw_ms:.2f} | {mb + links:.0f} | "
            f"{recall:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
