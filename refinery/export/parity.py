"""Checking that an exported model gives the vectors its source model gives.

Random-init features of a deep network point almost the same way for every image (raw
cosine ~0.9999 between different pictures), so raw cosine alone would pass a broken
export. The check also compares after removing the reference's mean vector (centred
cosine) and the max difference relative to the largest reference value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refinery.errors import ParityError


@dataclass(frozen=True)
class Tolerance:
    """What counts as "the same vectors"."""

    min_cosine: float = 0.9999
    max_rel_diff: float = 1e-3


FP32 = Tolerance()
FP16 = Tolerance(min_cosine=0.995, max_rel_diff=1e-2)


@dataclass(frozen=True)
class ParityReport:
    """How close a candidate's outputs are to the reference's, image by image."""

    label: str
    images: int
    max_abs_diff: float
    max_rel_diff: float  # max |a - b| / max |a|
    min_cosine: float
    min_centered_cosine: float
    unit: str = "images"  # what the rows are: images, prompts

    def line(self) -> str:
        return (
            f"{self.label}: {self.images} {self.unit}, max abs diff {self.max_abs_diff:.3g}, "
            f"max rel diff {self.max_rel_diff:.3g}, min cosine {self.min_cosine:.6f}, "
            f"min centred cosine {self.min_centered_cosine:.6f}"
        )


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows."""
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine: np.ndarray = num / np.maximum(den, 1e-12)
    return cosine


def measure(label: str, reference: np.ndarray, candidate: np.ndarray, unit: str = "images") -> ParityReport:
    """Compare two (N, D) output arrays of the same shape."""
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    diff = np.abs(reference - candidate)
    mean = reference.mean(axis=0, keepdims=True)
    centered = row_cosine(reference - mean, candidate - mean) if len(reference) > 1 else np.ones(1)
    return ParityReport(
        label=label,
        images=len(reference),
        max_abs_diff=float(diff.max()),
        max_rel_diff=float(diff.max() / max(np.abs(reference).max(), 1e-12)),
        min_cosine=float(row_cosine(reference, candidate).min()),
        min_centered_cosine=float(centered.min()),
        unit=unit,
    )


def check_parity(
    label: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    tolerance: Tolerance = FP32,
    names: tuple[list[str], list[str]] | None = None,
    unit: str = "images",
) -> ParityReport:
    """Measure parity and raise ParityError listing every failure: names, shapes, then values.

    `names` is (expected output names, candidate output names) where they can differ.
    """
    failures = []
    if names and list(names[0]) != list(names[1]):
        failures.append(f"output names differ: expected {names[0]}, got {names[1]}")
    if reference.shape != candidate.shape:
        failures.append(f"output shapes differ: expected {reference.shape}, got {candidate.shape}")
        raise ParityError(f"{label}: " + "; ".join(failures))
    report = measure(label, reference, candidate, unit)
    if report.min_cosine < tolerance.min_cosine:
        failures.append(f"min cosine {report.min_cosine:.6f} < {tolerance.min_cosine}")
    if report.min_centered_cosine < tolerance.min_cosine:
        failures.append(f"min centred cosine {report.min_centered_cosine:.6f} < {tolerance.min_cosine}")
    if report.max_rel_diff > tolerance.max_rel_diff:
        failures.append(f"max rel diff {report.max_rel_diff:.3g} > {tolerance.max_rel_diff}")
    if failures:
        raise ParityError(f"{label}: parity failed: " + "; ".join(failures) + f"\n  {report.line()}")
    return report
