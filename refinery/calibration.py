"""A model's own semantic threshold, found on a labelled corpus.

Cosine similarities differ from model to model (a CLIP model puts unrelated photos far
closer together than MobileNetV2 does), so one threshold cannot serve them all. The
threshold sits just above the most similar pair of *different* pictures of the corpus: a
wrong merge loses a picture, a missed one only leaves a copy (benchmarks/README.md,
"Thresholds"). `refinery export-model --calibrate CORPUS` records it in the model's spec,
and dedup takes it unless semantic.threshold is set.

CORPUS is a folder as ../shared/bench/make_corpus.py writes it: images/ and truth.json,
which gives each file a group (same group: one picture) and a role.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refinery.errors import ModelError, RefineryError
from refinery.io.fileio import read_json
from refinery.spec import MIN_THRESHOLD

ROLES = ("original", "near", "semantic")  # the copies worth keeping apart; defects are the quality stage's
STEP = 0.001  # the threshold is the most similar different pair, rounded up to the next step


@dataclass(frozen=True)
class Labelled:
    """The pictures of a labelled corpus that calibration uses."""

    paths: list[Path]
    groups: list[int]
    roles: list[str]


@dataclass(frozen=True)
class Calibration:
    threshold: float
    pictures: int
    different_pairs: int
    most_similar: tuple[str, str]  # the different pictures that set the threshold
    semantic_pairs: int
    semantic_caught: float  # share of same-picture pairs with a semantic copy at or above the threshold

    def line(self) -> str:
        return (
            f"semantic threshold {self.threshold:.3f}: above the most similar of {self.different_pairs} "
            f"different-picture pairs ({self.most_similar[0]}, {self.most_similar[1]}) of {self.pictures} "
            f"pictures; catches {self.semantic_caught:.1%} of {self.semantic_pairs} semantic-copy pairs"
        )


def read_labelled(corpus: Path) -> Labelled:
    """CORPUS/truth.json's originals, near and semantic copies that exist under CORPUS/images."""
    truth_path = Path(corpus) / "truth.json"
    try:
        files = read_json(truth_path, "a corpus' truth.json")["files"]  # type: ignore[index]
        rows = sorted((name, int(v["group"]), str(v["role"])) for name, v in files.items() if v["role"] in ROLES)
    except (RefineryError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(
            f"{truth_path}: cannot read the corpus labels ({type(e).__name__}: {e}); --calibrate takes a "
            "folder as ../shared/bench/make_corpus.py writes it (images/ and truth.json)"
        ) from None
    rows = [r for r in rows if "/" not in r[0] and (Path(corpus) / "images" / r[0]).is_file()]
    if len({g for _, g, _ in rows}) < 2:
        raise ModelError(
            f"{corpus}: calibration needs pictures of at least two groups in images/, found {len(rows)} pictures"
        )
    return Labelled([Path(corpus) / "images" / n for n, _, _ in rows], [g for _, g, _ in rows], [r for _, _, r in rows])


def calibrate(labelled: Labelled, vectors: np.ndarray) -> Calibration:
    """The threshold just above the most similar different-picture pair of L2-normalised `vectors`."""
    sims = vectors @ vectors.T
    groups = np.asarray(labelled.groups)
    same = groups[:, None] == groups[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    different = upper & ~same
    masked = np.where(different, sims, -np.inf)
    a, b = np.unravel_index(int(np.argmax(masked)), masked.shape)
    threshold = min(1.0, max(MIN_THRESHOLD, math.floor(float(sims[a, b]) / STEP + 1) * STEP))
    semantic = np.asarray([r == "semantic" for r in labelled.roles])
    positive = upper & same & (semantic[:, None] | semantic[None, :])
    caught = float((sims[positive] >= threshold).mean()) if positive.any() else 0.0
    return Calibration(
        threshold=round(threshold, 3),
        pictures=len(vectors),
        different_pairs=int(different.sum()),
        most_similar=(labelled.paths[a].name, labelled.paths[b].name),
        semantic_pairs=int(positive.sum()),
        semantic_caught=caught,
    )
