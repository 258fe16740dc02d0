#!/usr/bin/env python3
"""Which embedding model should ship as the default? Speed and separation on a corpus.

    python benchmarks/model_choice.py CORPUS MODEL.onnx [MODEL.onnx ...]

CORPUS is a folder made by ../shared/bench/make_corpus.py (images/ and truth.json).
For each model it prints:
  end-to-end images/s  decode + resize + model, one process, all cores for onnxruntime
  model images/s       the model alone on ready-made batches of 32
  AUC                  same-picture pairs (original/near/semantic of one group) against
                       pairs of different pictures on the same background (hard negatives)
  recall@FPR0.1%       share of same-picture pairs above the similarity that only 0.1% of
                       hard-negative pairs reach: how many duplicates a threshold catches
                       before it starts merging different pictures
  semantic recall      the same, for the "next frame" pairs only (the hard positives)
  recall@max-neg       share of same-picture pairs above the most similar hard negative
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import combinations
from pathlib import Path

import numpy as np

from refinery.io.images import load_input
from refinery.runner.session import Embedder

ROLES_SAME = {"original", "near", "semantic"}


def embed_corpus(model: Path, files: list[Path]) -> tuple[np.ndarray, float, float]:
    embedder = Embedder(model, device="cpu", batch_size=32)
    start = time.perf_counter()
    batch = np.stack([load_input(p, embedder.spec) for p in files])
    vectors = embedder.embed(batch)
    end_to_end = len(files) / (time.perf_counter() - start)
    ready = batch[:64]
    embedder.embed(ready[:32])  # warm-up
    start = time.perf_counter()
    for _ in range(3):
        embedder.embed(ready)
    model_only = 3 * len(ready) / (time.perf_counter() - start)
    return vectors, end_to_end, model_only


def pair_sets(truth: dict, names: list[str]) -> tuple[list, list, list]:
    """(positive pairs, semantic positive pairs, hard negative pairs) as index pairs."""
    by_group: dict[int, list[int]] = {}
    by_scene: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        t = truth[name]
        if t["role"] not in ROLES_SAME:
            continue
        by_group.setdefault(t["group"], []).append(i)
        by_scene.setdefault(t["scene"], []).append(i)
    pos, sem = [], []
    for members in by_group.values():
        for a, b in combinations(members, 2):
            pos.append((a, b))
            if "semantic" in (truth[names[a]]["role"], truth[names[b]]["role"]):
                sem.append((a, b))
    neg = [
        (a, b)
        for members in by_scene.values()
        for a, b in combinations(members, 2)
        if truth[names[a]]["group"] != truth[names[b]]["group"]
    ]
    return pos, sem, neg


def sims(v: np.ndarray, pairs: list) -> np.ndarray:
    idx = np.asarray(pairs)
    return (v[idx[:, 0]] * v[idx[:, 1]]).sum(1)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random positive pair scores above a random negative pair."""
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]))) + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N files")
    args = ap.parse_args()
    truth = json.loads((args.corpus / "truth.json").read_text())["files"]
    names = sorted(truth)[: args.limit or None]
    files = [args.corpus / "images" / n for n in names]
    pos, sem, neg = pair_sets(truth, names)
    print(f"{len(files)} images; {len(pos)} same-picture pairs ({len(sem)} semantic), {len(neg)} hard-negative pairs")
    print(
        f"{'model':32s} {'e2e img/s':>9s} {'model img/s':>11s} {'AUC':>7s} "
        f"{'recall@FPR0.1%':>14s} {'semantic recall':>15s} {'recall@max-neg':>14s}"
    )
    for model in args.models:
        v, e2e, alone = embed_corpus(model, files)
        p, s, n = sims(v, pos), sims(v, sem), sims(v, neg)
        cut = np.quantile(n, 0.999)
        print(
            f"{model.name:32s} {e2e:9.1f} {alone:11.1f} {auc(p, n):7.4f} "
            f"{(p > cut).mean():14.3f} {(s > cut).mean():15.3f} {(p > n.max()).mean():14.3f}"
        )


if __name__ == "__main__":
    main()
