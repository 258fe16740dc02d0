"""Triplet losses on L2-normalised embeddings, distances Euclidean (0..2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances of unit rows: sqrt(2 - 2 cos), clamped so the gradient
    at a distance of zero stays finite."""
    cos = embeddings @ embeddings.T
    return (2 - 2 * cos).clamp(min=1e-12).sqrt()


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """mean(max(0, d(a, p) - d(a, n) + margin))."""
    d_ap = (anchor - positive).pow(2).sum(1).clamp(min=1e-12).sqrt()
    d_an = (anchor - negative).pow(2).sum(1).clamp(min=1e-12).sqrt()
    return F.relu(d_ap - d_an + margin).mean()


def batch_hard_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard mining (Hermans et al. 2017): per anchor its farthest positive and nearest
    negative in the batch, then the triplet loss; anchors without either are left out."""
    d = distances(embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    hardest_pos = torch.where(positive, d, torch.zeros_like(d)).max(1).values
    hardest_neg = torch.where(~same, d, torch.full_like(d, float("inf"))).min(1).values
    valid = positive.any(1) & (~same).any(1)
    if not valid.any():
        return embeddings.sum() * 0  # nothing to learn from this batch, but a graph to step through
    return F.relu(hardest_pos[valid] - hardest_neg[valid] + margin).mean()
