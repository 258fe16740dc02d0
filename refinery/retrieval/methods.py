"""Ranking a gallery for one query, by each method retrieval offers.

    embedding      cosine of the model's L2-normalised embeddings (FAISS; exact or HNSW)
    pixel-l1       mean absolute difference of PIXEL_SIZE x PIXEL_SIZE RGB thumbnails
    pixel-l2       mean squared difference of the same
    pixel-cosine   cosine of the same, as vectors
    pixel-pearson  Pearson correlation of the same (cosine after removing each one's mean)
    sift           SIFT descriptors in a FAISS index: each query descriptor votes for the images
                   of its nearest descriptors (candidates), then the candidates are re-ranked
                   by matches that pass Lowe's ratio test and agree on one homography (RANSAC);
                   the score is that number of matches (0 for pictures that were no candidate)

Every method ranks the whole gallery (so mAP sees every relevant image) and gives a score
where higher is more alike, except the distances (pixel-l1, pixel-l2), where lower is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import faiss
import numpy as np
from PIL import Image

PIXEL_SIZE = 32
PIXEL_METHODS = ("pixel-l1", "pixel-l2", "pixel-cosine", "pixel-pearson")
DISTANCES = {"pixel-l1", "pixel-l2"}  # lower is more alike


def closer(method: str, metric: str = "cosine") -> str:
    """Which way a score of `method` points: "higher" (a similarity, SIFT's matches) or
    "lower" (a distance: the pixel L1/L2 methods, embeddings by squared L2)."""
    return "lower" if method in DISTANCES or (method == "embedding" and metric == "l2") else "higher"


SIFT_FEATURES = 200  # keypoints per picture (the strongest), at the stages' working size
SIFT_CANDIDATES = 50  # images re-ranked by geometry after the vote
SIFT_NEIGHBOURS = 5  # nearest gallery descriptors each query descriptor votes for
RATIO = 0.75  # Lowe's ratio test


def pixel_vector(image: Image.Image) -> np.ndarray:
    """The picture as PIXEL_SIZE x PIXEL_SIZE RGB, flattened, uint8."""
    return np.asarray(image.convert("RGB").resize((PIXEL_SIZE, PIXEL_SIZE), Image.Resampling.BOX)).reshape(-1)


def pixel_scores(method: str, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """One score per gallery row; computed over the whole gallery at once."""
    q = query.astype(np.float32)
    g = gallery.astype(np.float32)
    scores: np.ndarray  # numpy types the means below as Any
    if method == "pixel-l1":
        scores = np.abs(g - q).mean(axis=1)
        return scores
    if method == "pixel-l2":
        scores = ((g - q) ** 2).mean(axis=1)
        return scores
    if method == "pixel-pearson":
        q = q - q.mean()
        g = g - g.mean(axis=1, keepdims=True)
    elif method != "pixel-cosine":
        raise ValueError(f"unknown pixel method {method!r}")
    norms = np.linalg.norm(g, axis=1) * np.linalg.norm(q)
    scores = (g @ q) / np.maximum(norms, 1e-9)
    return scores


@dataclass
class SiftFeatures:
    """SIFT keypoints of one picture: descriptors (n x 128, uint8) and positions (n x 2)."""

    descriptors: np.ndarray
    points: np.ndarray


def sift_features(image: Image.Image) -> SiftFeatures:
    gray = np.asarray(image.convert("L"))
    sift = cv2.SIFT_create(nfeatures=SIFT_FEATURES)  # type: ignore[attr-defined]
    keypoints, descriptors = sift.detectAndCompute(gray, None)
    if descriptors is None:
        return SiftFeatures(np.zeros((0, 128), np.uint8), np.zeros((0, 2), np.float32))
    points = np.array([k.pt for k in keypoints], np.float32)
    return SiftFeatures(np.clip(descriptors, 0, 255).astype(np.uint8), points)


class SiftGallery:
    """Every gallery descriptor in one FAISS index, with the image each came from."""

    def __init__(self, features: list[SiftFeatures]):
        self.features = features
        self.owner = np.concatenate(
            [np.full(len(f.descriptors), i, np.int64) for i, f in enumerate(features)] or [np.zeros(0, np.int64)]
        )
        self.index = faiss.IndexFlatL2(128)
        if len(self.owner):
            self.index.add(np.concatenate([f.descriptors for f in features]).astype(np.float32))
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)

    def rank(self, query: SiftFeatures) -> tuple[np.ndarray, np.ndarray]:
        """(every gallery image best first, its score): the candidates by geometric matches
        (their score), then the rest by votes (score 0)."""
        n = len(self.features)
        votes = np.zeros(n, np.float64)
        matches = np.full(n, -1.0)  # -1: not a candidate
        if len(query.descriptors) and self.index.ntotal:
            _, neighbours = self.index.search(query.descriptors.astype(np.float32), SIFT_NEIGHBOURS)
            for row in neighbours:
                votes[np.unique(self.owner[row[row >= 0]])] += 1  # one vote per image per query descriptor
            for i in np.argsort(-votes, kind="stable")[:SIFT_CANDIDATES]:
                if votes[i] > 0:
                    matches[i] = self.geometric_matches(query, self.features[i])
        order = np.lexsort((np.arange(n), -votes, -matches))
        return order, np.maximum(matches[order], 0)

    def geometric_matches(self, query: SiftFeatures, other: SiftFeatures) -> float:
        """Matches passing the ratio test; of those, the ones one homography explains (if 4+)."""
        if len(other.descriptors) < 2 or len(query.descriptors) < 2:
            return 0.0
        pairs = self.matcher.knnMatch(query.descriptors.astype(np.float32), other.descriptors.astype(np.float32), 2)
        good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < RATIO * n.distance]
        if len(good) < 4:
            return float(len(good))
        src = query.points[[m.queryIdx for m in good]]
        dst = other.points[[m.trainIdx for m in good]]
        _, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
        return float(inliers.sum()) if inliers is not None else float(len(good)) / 2
