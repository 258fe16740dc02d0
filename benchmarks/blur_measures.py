#!/usr/bin/env python3
"""Known no-reference blur measures beside refinery's, on the labelled real pictures.

    python benchmarks/blur_measures.py /tmp/qset0 [/tmp/qset1 ...] [--side 480]

For the good pictures and the defocused (and motion-blurred) ones of
benchmarks/quality_set.py's sets: how well each measure tells them apart (ROC AUC, 1 =
always), and how many blurred pictures it catches while rejecting at most 1% of the good
ones. Every measure is taken on the gray picture 320 px across, as the quality stage sees
it (--side: as it would see it that many px across, the edge window scaled alike): the variance of the Laplacian (the
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
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from corpus import cpu_name  # noqa: E402

from refinery import features  # noqa: E402
from refinery.config import QualityConfig  # noqa: E402
from refinery.features import Edges, gray_work, laplacian_variance, quality_figures  # noqa: E402
from refinery.io.images import decode  # noqa: E402

Image.MAX_IMAGE_PIXELS = None  # wallpapers reach 5120x2880: our own files


def fft_high(gray: np.ndarray, radius: int = 30) -> float:
    """Mean log magnitude of the picture rebuilt without its lowest frequencies."""
    spectrum = np.fft.fftshift(np.fft.fft2(gray.astype(np.float32)))
    cy, cx = gray.shape[0] // 2, gray.shape[1] // 2
    spectrum[cy - radius : cy + radius, cx - radius : cx + radius] = 0
    return float(np.mean(20 * np.log(np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum))) + 1e-6)))


def blurriness(gray: np.ndarray) -> dict[str, float]:
    """Each measure, signed so that higher means blurrier."""
    gx, gy = cv2.Sobel(gray, cv2.CV_64F, 1, 0), cv2.Sobel(gray, cv2.CV_64F, 0, 1)
    figures = quality_figures(gray)
    cfg = QualityConfig()
    lap = laplacian_variance(gray)
    rule = figures["edge_width"] > cfg.max_edge_width or (
        figures["edge_width"] > cfg.soft_edge_width and lap < cfg.min_soft_detail
    )
    out = {
        "laplacian_variance": -lap,
        "tenengrad": -float(np.mean(gx * gx + gy * gy)),
        "fft_high": -fft_high(gray),
        "edge_width": figures["edge_width"],
        "smear_width": figures["smear_width"],
        "refinery_rule": float(rule),
    }
    try:
        from skimage.measure import blur_effect

        out["blur_effect"] = float(blur_effect(gray))
    except ImportError:
        pass
    return out


def gray_at(path: Path, side: int) -> np.ndarray:
    """The picture's gray as the quality stage takes it, SIDE px across (never enlarged)."""
    if side == features.WORK_SIZE:
        return gray_work(Image.open(path))
    gray = cv2.cvtColor(np.asarray(Image.open(path).convert("RGB")), cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    scale = min(1.0, side / max(h, w))
    return cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


STAGE_WINDOW = features.EDGE_WINDOW


def set_side(side: int) -> None:
    """Measure as if the stage took pictures SIDE px across: its edge window is a share of the
    picture (11 px at 320)."""
    features.EDGE_WINDOW = round(STAGE_WINDOW * side / features.WORK_SIZE) | 1


def stage_cost(files: list[bytes], side: int) -> float:
    """Milliseconds a picture on one core to decode FILES at SIDE px or more (JPEGs reduced in
    the DCT domain, as the pass does), take their gray SIDE px across and measure them."""
    cv2.setNumThreads(1)
    set_side(side)
    start = time.perf_counter()
    for data in files:
        rgb = np.asarray(decode(data, min_long=side).image)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        scale = min(1.0, side / max(h, w))
        gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        quality_figures(gray, Edges.of(gray))
    return 1000 * (time.perf_counter() - start) / len(files)


def auc(good: np.ndarray, bad: np.ndarray) -> float:
    """The chance that a bad picture scores above a good one (ties count half)."""
    above = (bad[:, None] > good[None, :]).mean()
    return float(above + 0.5 * (bad[:, None] == good[None, :]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument(
        "--side",
        type=int,
        default=features.WORK_SIZE,
        help="measure the pictures this many px across (the stage: %(default)s)",
    )
    args = parser.parse_args()
    set_side(args.side)
    print(f"CPU: {cpu_name()}; measured {args.side} px across (edge window {features.EDGE_WINDOW} px)")
    seen: dict[str, list[dict]] = {"good": [], "defocus": [], "motion": []}
    for folder in args.sets:
        files = json.loads((folder / "truth.json").read_text())["files"]
        for name, truth in sorted(files.items()):
            group = "good" if truth["label"] == "good" else truth["kind"]
            if group in seen:
                seen[group].append(blurriness(gray_at(folder / "images" / name, args.side)))
    good = seen["good"]
    allowed = len(good) // 100  # at most 1% of the good ones over the line
    for kind in ("defocus", "motion"):
        blurred = seen[kind]
        print(f"{len(good)} good pictures, {len(blurred)} {kind}")
        for measure in (m for m in good[0] if m != "refinery_rule"):
            g = np.array([m[measure] for m in good])
            d = np.array([m[measure] for m in blurred])
            line = np.sort(g)[::-1][allowed]
            print(
                f"  {measure:20s} AUC {auc(g, d):.3f}   caught with at most {allowed} good over the line: "
                f"{int((d > line).sum())} of {len(d)}"
            )
    jpegs = [path.read_bytes() for folder in args.sets for path in sorted((folder / "images").glob("*.jpg"))]
    # Alternated, the best of three each: the machine's other work falls on both alike.
    runs = [(stage_cost(jpegs, features.WORK_SIZE), stage_cost(jpegs, args.side)) for _ in range(3)]
    base, cost = min(r[0] for r in runs), min(r[1] for r in runs)
    set_side(args.side)
    print(
        f"decode, gray and quality figures, one core, {len(jpegs)} JPEGs: {features.WORK_SIZE} px "
        f"{base:.2f} ms a picture, {args.side} px {cost:.2f} ms ({cost / base:.2f}x)"
    )
    if args.side == features.WORK_SIZE:
        print(
            f"refinery's rule as set: {int(sum(m['refinery_rule'] for m in seen['defocus']))} defocused "
            f"caught, {int(sum(m['refinery_rule'] for m in good))} good rejected"
        )


if __name__ == "__main__":
    main()
