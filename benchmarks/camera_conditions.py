#!/usr/bin/env python3
"""Fixed-camera sequences as real outdoor cameras give them: shake, cloud shade, exposure
wander (issue 26). The shared generator's cameras hold perfectly still in steady light.

    python benchmarks/camera_conditions.py /tmp/seq0 /tmp/seq0_cam [--seed 0] [--shake 2]
                                           [--shade 0.75] [--wander 0.15]

Reads a make_sequences.py corpus (IN/images, IN/truth.json) and writes the same frames, under
the same names and with the same truth.json, to OUT, each with what a camera on a pole in the
open adds (frame order comes from truth.json's "t", as the camera took them):
- shake: the whole frame shifted by up to --shake px (sub-pixel, in any direction; wind and
  traffic: a new offset every frame, edges filled by repeating the border), small beside the
  objects (60 px and more), so the truth's positions stand;
- cloud shade: a soft band (a quarter of the frame wide, its light falling to --shade at its
  middle) drifting across each sequence once, at its own angle and speed;
- exposure wander: the whole frame's gain walking slowly (auto-exposure), within
  +- --wander, as a smooth random curve over the sequence.
Each frame is saved again as JPEG (quality 90). Score a run with compare_peers.py OUT.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np


def wander(frames: int, limit: float, rng: np.random.Generator) -> np.ndarray:
    """A slow random gain curve over FRAMES within 1 +- LIMIT: a few random knots, interpolated."""
    knots = rng.uniform(-limit, limit, size=max(2, frames // 30 + 2))
    return 1 + np.interp(np.arange(frames), np.linspace(0, frames - 1, len(knots)), knots)


def shade_band(shape: tuple[int, int], progress: float, angle: float, depth: float) -> np.ndarray:
    """Light (0..1) of a soft shadow band crossing the frame at ANGLE (radians), PROGRESS 0..1
    of its way across: DEPTH at its middle, a Gaussian profile a quarter of the frame wide."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    along = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)
    reach = 0.5 * (abs(w * np.cos(angle)) + abs(h * np.sin(angle)))  # the frame spans -reach..reach
    centre = -1.5 * reach + 3 * reach * progress  # starts and ends outside the frame
    width = 0.25 * max(h, w) / 2.355  # a quarter of the frame at half depth
    return 1 - (1 - depth) * np.exp(-0.5 * ((along - centre) / width) ** 2)


def shaken(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    return cv2.warpAffine(
        image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path, help="a make_sequences.py folder")
    parser.add_argument("out", type=Path, help="a new folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shake", type=float, default=2.0, help="px, largest shift of a frame")
    parser.add_argument("--shade", type=float, default=0.75, help="light left in the middle of a cloud's shade")
    parser.add_argument("--wander", type=float, default=0.15, help="auto-exposure gain within 1 +- this")
    args = parser.parse_args()
    truth = json.loads((args.corpus / "truth.json").read_text())
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty: give a new folder")
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    by_sequence: dict[int, list[str]] = {}
    for name, frame in truth["frames"].items():
        by_sequence.setdefault(frame["sequence"], []).append(name)
    for _, names in sorted(by_sequence.items()):
        names.sort(key=lambda n: truth["frames"][n]["t"])
        gains = wander(len(names), args.wander, rng)
        angle = rng.uniform(0, np.pi)
        for i, name in enumerate(names):
            image = cv2.imread(str(args.corpus / "images" / name), cv2.IMREAD_COLOR)
            if image is None:
                raise SystemExit(f"{args.corpus / 'images' / name}: cannot be read as a picture")
            dx, dy = rng.uniform(-1, 1, 2) * args.shake / np.sqrt(2)
            light = shade_band(image.shape[:2], i / max(1, len(names) - 1), angle, args.shade) * gains[i]
            image = shaken(image, dx, dy).astype(np.float32) * light[..., None]
            cv2.imwrite(
                str(args.out / "images" / name),
                np.clip(np.rint(image), 0, 255).astype(np.uint8),
                [cv2.IMWRITE_JPEG_QUALITY, 90],
            )
    shutil.copyfile(args.corpus / "truth.json", args.out / "truth.json")
    print(
        f"{len(truth['frames'])} frames in {len(by_sequence)} sequences -> {args.out}/images "
        f"(shake {args.shake} px, shade {args.shade}, exposure 1 +- {args.wander})"
    )


if __name__ == "__main__":
    main()
