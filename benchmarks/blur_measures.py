#!/usr/bin/env python3
"""Known no-reference blur measures beside refinery's, on the labelled real pictures.

    python benchmarks/blur_measures.py /tmp/qset0 [/tmp/qset1 ...]

For the good pictures and the defocused ones of benchmarks/quality_set.py's sets: how well
each measure tells them apart (ROC AUC, 1 = always), and how many defocused pictures it
catches while rejecting at most 1% of the good ones. Every measure is taken on the gray
picture 320 px across, as the quality stage sees it: the variance of the Laplacian (the
seed's figure), Tenengrad (mean squared Sobel gradient), the energy left above the lowest
frequencies of the spectrum (the FFT test), Crete-Roffet's blur effect (scikit-image's
blur_effect, where scikit-image is installed), refinery's edge width (the sharpest edges'
width, features.quality_figures), and refinery's rule (edge width over max_edge_width, or over
soft_edge_width with the Laplacian's variance under min_soft_detail).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from corpus import cpu_name  # noqa: E402

from refinery.config import QualityConfig  # noqa: E402
from refinery.features import gray_work, laplacian_variance, quality_figures  # noqa: E402

Image.MAX_IMAGE_PIXELS = None  # wallpapers reach 5120x2880: our own files


def fft_high(gray: np.ndarray, radius: int = 30) -> float:
    """Mean log magnitude of the picture rebuilt without its lowest frequencies."""
    spectrum = np.fft.fftshift(np.fft.fft2(gray.astype(np.float32)))
    cy, cx = gray.shape[0] // 2, gray.shape[1] // 2
    spectrum[cy - radius:cy + radius, cx - radius:cx + radius] = 0
    return float(np.mean(20 * np.log(np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum))) + 1e-6)))


def blurriness(gray: np.ndarray) -> dict[str, float]:
    """Each measure, signed so that higher means blurrier."""
    gx, gy = cv2.Sobel(gray, cv2.CV_64F, 1, 0), cv2.Sobel(gray, cv2.CV_64F, 0, 1)
    figures = quality_figures(gray)
    cfg = QualityConfig()
    lap = laplacian_variance(gray)
    rule = figures["edge_width"] > cfg.max_edge_width or \
        (figures["edge_width"] > cfg.soft_edge_width and lap < cfg.min_soft_detail)
    out = {"laplacian_variance": -lap, "tenengrad": -float(np.mean(gx * gx + gy * gy)),
           "fft_high": -fft_high(gray), "edge_width": figures["edge_width"], "refinery_rule": float(rule)}
    try:
        from skimage.measure import blur_effect
        out["blur_effect"] = float(blur_effect(gray))
    except ImportError:
        pass
    return out


def auc(good: np.ndarray, bad: np.ndarray) -> float:
    """The chance that a bad picture scores above a good one (ties count half)."""
    above = (bad[:, None] > good[None, :]).mean()
    return float(above + 0.5 * (bad[:, None] == good[None, :]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="+", type=Path)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}")
    good: list[dict] = []
    defocus: list[dict] = []
    for folder in args.sets:
        files = json.loads((folder / "truth.json").read_text())["files"]
        for name, truth in sorted(files.items()):
            if truth["label"] == "good" or truth["kind"] == "defocus":
                gray = gray_work(Image.open(folder / "images" / name))
                (good if truth["label"] == "good" else defocus).append(blurriness(gray))
    print(f"{len(good)} good pictures, {len(defocus)} defocused")
    allowed = len(good) // 100  # at most 1% of the good ones over the line
    for measure in (m for m in good[0] if m != "refinery_rule"):
        g = np.array([m[measure] for m in good])
        d = np.array([m[measure] for m in defocus])
        line = np.sort(g)[::-1][allowed]
        print(f"  {measure:20s} AUC {auc(g, d):.3f}   caught with at most {allowed} good over the line: "
              f"{int((d > line).sum())} of {len(d)}")
    print(f"  refinery's rule as set: {int(sum(m['refinery_rule'] for m in defocus))} defocused caught, "
          f"{int(sum(m['refinery_rule'] for m in good))} good rejected")


if __name__ == "__main__":
    main()
