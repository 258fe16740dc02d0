"""Identities on disk: one sub-folder per identity, split by identity, sampled into batches."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from refinery.errors import RefineryError, UnreadableImage
from refinery.io.images import load_rgb
from refinery.io.scan import find_images

log = logging.getLogger(__name__)

Crop = Callable[[Image.Image], tuple[Image.Image | None, str]]


@dataclass
class Identities:
    """Pictures (relative paths) of each identity, by name."""

    root: Path
    pictures: dict[str, list[str]]

    @property
    def names(self) -> list[str]:
        return sorted(self.pictures)


def find_identities(root: Path) -> Identities:
    """Every sub-folder of `root` with two or more pictures is an identity (pictures deeper
    down belong to their top folder). Folders with fewer are named on a warning and left out:
    a triplet needs two pictures of one identity."""
    root = Path(root)
    pictures: dict[str, list[str]] = {}
    for path in find_images(root):
        rel = path.relative_to(root).as_posix()
        if "/" in rel:
            pictures.setdefault(rel.split("/", 1)[0], []).append(rel)
    for name in [n for n, members in pictures.items() if len(members) < 2]:
        log.warning("%s: one picture only, left out (an identity needs two)", root / name)
        del pictures[name]
    if len(pictures) < 2:
        raise RefineryError(
            f"{root}: found {len(pictures)} identity folder(s) with two or more pictures; "
            "training needs at least 2 (one sub-folder per identity)"
        )
    return Identities(root, pictures)


def split_identities(names: list[str], test_share: float) -> tuple[list[str], list[str]]:
    """(train, test) by a hash of each name: the same split on every run and machine, and
    adding an identity never moves another. Both sides get at least one when there are two."""

    def rank(name: str) -> float:
        return int(hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8], 16) / 2**32

    ordered = sorted(names, key=rank)
    test = [n for n in ordered if rank(n) < test_share]
    if test_share > 0 and not test and len(ordered) > 2:
        test = ordered[:1]
    if len(test) >= len(ordered) - 1:
        test = test[: max(0, len(ordered) - 2)]  # training needs two identities
    train = [n for n in ordered if n not in set(test)]
    return sorted(train), sorted(test)


def load_pictures(
    ids: Identities, names: list[str], side: int, crop: Crop | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(pictures (N, side, side, 3) uint8, labels (N,) int) of the identities `names`, each
    decoded once and resized; unreadable files (or without a face) are named and skipped."""
    images, labels = [], []
    for label, name in enumerate(names):
        for rel in ids.pictures[name]:
            try:
                image = load_rgb(ids.root / rel)
            except UnreadableImage as e:
                log.error("%s", e)
                continue
            if crop is not None:
                part, why = crop(image)
                if part is None:
                    log.warning("%s: %s, left out", ids.root / rel, why)
                    continue
                image = part
            images.append(np.asarray(image.resize((side, side), Image.Resampling.BILINEAR)))
            labels.append(label)
    if not images:
        hint = "; with --faces, only pictures where a face is found count" if crop else ""
        raise RefineryError(f"{ids.root}: no readable pictures in {len(names)} identities{hint}")
    return np.stack(images), np.array(labels, np.int64)


def pk_batches(labels: np.ndarray, p: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of P x K batches: P identities, K pictures each (drawn again when an
    identity has fewer than K), each picture seen about once."""
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    p = min(p, len(members))
    batches = []
    for _ in range(max(1, len(labels) // (p * k))):
        chosen = rng.choice(len(members), p, replace=False)
        batches.append(np.concatenate([rng.choice(members[c], k, replace=len(members[c]) < k) for c in chosen]))
    return batches


def random_triplets(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(anchor, positive, negative) rows of a batch, one triplet per anchor that has a
    positive: positive another picture of its identity, negative one of another."""
    out = []
    for a, label in enumerate(labels.tolist()):
        same = np.flatnonzero((labels == label) & (np.arange(len(labels)) != a))
        other = np.flatnonzero(labels != label)
        if len(same) and len(other):
            out.append((a, rng.choice(same), rng.choice(other)))
    return np.array(out, np.int64).reshape(-1, 3)
