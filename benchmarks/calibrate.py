#!/usr/bin/env python3
"""Where should the thresholds sit? Distributions of every score on a labelled corpus.

    python benchmarks/calibrate.py CORPUS [--model default]

CORPUS comes from ../shared/bench/make_corpus.py (use a seed you do not report). Prints,
for same-picture pairs and for hard negatives (different pictures on the same background):
pHash/dHash distances and embedding cosine; and per role the quality scores. A threshold is
good where the hard negatives stop: every hard-negative pair under it is a lost picture.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from itertools import combinations
from pathlib import Path

import numpy as np

from refinery.features import measure
from refinery.io.images import decode_for_stages, read_bytes, to_input
from refinery.runner import Embedder

PCTS = (0, 1, 5, 50, 95, 99, 100)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit differences between matching uint64 hashes."""
    x = np.bitwise_xor(a, b)
    return np.unpackbits(x.view(np.uint8).reshape(len(x), 8), axis=1).sum(axis=1)


def pct(values: np.ndarray) -> str:
    return " ".join(f"{v:8.3f}" for v in np.percentile(values, PCTS)) if len(values) else "(none)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    truth = json.loads((args.corpus / "truth.json").read_text())["files"]
    names = sorted(truth)
    embedder = Embedder(args.model, device="cpu")
    feats, inputs = [], []
    for name in names:
        data = read_bytes(args.corpus / "images" / name)
        decoded = decode_for_stages(data, name, embedder.spec)
        f, image = measure(name, data, hashlib.sha256(data).hexdigest(), decoded), decoded.image
        feats.append(f)
        inputs.append(to_input(image, embedder.spec))
    vectors = embedder.embed(np.stack(inputs))
    role = [truth[n]["role"] for n in names]
    group = [truth[n]["group"] for n in names]
    scene = [truth[n]["scene"] for n in names]

    print(f"percentiles {PCTS}")
    for r in sorted(set(role)):
        idx = [i for i in range(len(names)) if role[i] == r]
        print(f"{r:9s} sharpness  {pct(np.array([feats[i].sharpness for i in idx]))}")
        print(f"{'':9s} brightness {pct(np.array([feats[i].brightness for i in idx]))}")

    good = [i for i in range(len(names)) if role[i] in ("original", "near", "semantic")]
    by_group: dict[int, list[int]] = {}
    by_scene: dict[int, list[int]] = {}
    for i in good:
        by_group.setdefault(group[i], []).append(i)
        by_scene.setdefault(scene[i], []).append(i)
    pos = {"near": [], "semantic": []}
    for members in by_group.values():
        for a, b in combinations(members, 2):
            kind = "semantic" if "semantic" in (role[a], role[b]) else "near"
            pos[kind].append((a, b))
    neg = [(a, b) for m in by_scene.values() for a, b in combinations(m, 2) if group[a] != group[b]]
    ph = np.array([f.phash for f in feats], dtype=np.uint64)
    dh = np.array([f.dhash for f in feats], dtype=np.uint64)

    def scores(pairs: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = np.array(pairs)
        return (
            hamming(ph[p[:, 0]], ph[p[:, 1]]),
            hamming(dh[p[:, 0]], dh[p[:, 1]]),
            (vectors[p[:, 0]] * vectors[p[:, 1]]).sum(1),
        )

    print(f"\npairs: near {len(pos['near'])}, semantic {len(pos['semantic'])}, hard negatives {len(neg)}")
    for label, pairs in (("near", pos["near"]), ("semantic", pos["semantic"]), ("hard neg", neg)):
        p, d, c = scores(pairs)
        print(f"{label:9s} pHash  {pct(p)}\n{'':9s} dHash  {pct(d)}\n{'':9s} cosine {pct(c)}")
    p, d, c = scores(neg)
    for tp in range(4, 16, 2):
        for td in range(4, 16, 2):
            merged = int(((p <= tp) & (d <= td)).sum())
            pn, dn, _ = scores(pos["near"])
            print(
                f"pHash<={tp:2d} dHash<={td:2d}: hard negatives merged {merged:4d}, "
                f"near pairs caught {((pn <= tp) & (dn <= td)).mean():.3f}"
            )
    _, _, cs = scores(pos["semantic"])
    for t in (0.80, 0.85, 0.88, 0.90, 0.92, 0.94):
        print(
            f"cosine>={t:.2f}: hard negatives merged {int((c >= t).sum()):4d}, "
            f"semantic pairs caught {(cs >= t).mean():.3f}"
        )


if __name__ == "__main__":
    main()
