#!/usr/bin/env python3
"""CLIP on this machine: parity of both towers with open_clip, and their speed.

    python benchmarks/clip.py --work /tmp/clipbench [--arch openclip-vit-b-32 ...] [--images DIR]

For each architecture (random-init weights: no download), in one run:
  export        `refinery export-model --arch A --format onnx` in a subprocess (once per --work
                folder), printing its parity lines: max relative error and min (centred) cosine
                of the image tower (8 synthetic pictures, or the first 64 of --images) and of
                the text tower fed by refinery's tokenizer (13 prompts: unicode, long, empty)
  image tower   images/s of the ONNX image tower on ready-made batches of 32, all cores,
                beside the shipped MobileNetV2 measured the same way in the same process
  text tower    text queries/s, one query at a time as `search --text` and serve ask them
                (tokenise + tower), and the tokenizer alone
Speed does not depend on the weights, so these are the figures of the released models too.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from corpus import cpu_name

from refinery.runner.session import Embedder
from refinery.runner.text import TextEmbedder

PROMPTS = [
    "a red truck at night",
    "a person on a bicycle",
    "two dogs playing in the snow",
    "a white van parked in front of a shop",
    "an empty road in the rain",
]


def export(arch: str, work: Path, images: Path | None) -> Path:
    prefix = work / arch
    if not prefix.with_suffix(".onnx").is_file():
        args = ["export-model", "--arch", arch, "--out", str(prefix), "--format", "onnx"]
        args += ["--images", str(images)] if images else []
        proc = subprocess.run([sys.executable, "-m", "refinery", *args], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr)
        (work / f"{arch}.parity.txt").write_text(proc.stdout)
    for line in (work / f"{arch}.parity.txt").read_text().splitlines():
        if "cosine" in line or "threshold" in line:
            print(f"  {line}")
    return prefix.with_suffix(".onnx")


def images_per_s(model: Path | str, seconds: float = 20.0, batch: int = 32) -> float:
    embedder = Embedder(model, device="cpu", batch_size=batch).load()
    h, w = embedder.spec.input_size
    data = np.random.default_rng(0).uniform(0, 255, (batch, 3, h, w)).astype(np.float32)
    embedder.run(data)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        embedder.run(data)
        done += batch
    return done / (time.perf_counter() - start)


def queries_per_s(text: TextEmbedder, seconds: float = 10.0) -> tuple[float, float]:
    """(whole queries/s, tokenizer-only queries/s), one query at a time."""
    text.embed([PROMPTS[0]])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        text.embed([PROMPTS[done % len(PROMPTS)]])
        done += 1
    whole = done / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(2000):  # new words each time: no help from the BPE cache
        text.tokens(f"{PROMPTS[i % len(PROMPTS)]} number {i}")
    return whole, 2000 / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="where the exported models go (kept between runs)")
    ap.add_argument("--arch", nargs="+", default=["openclip-vit-b-32"])
    ap.add_argument("--images", type=Path, default=None, help="real pictures for the image tower's parity")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_name()}")
    baseline = images_per_s("default", args.seconds)
    print(f"default MobileNetV2 224x224: {baseline:.1f} images/s (model only, batches of 32, all cores)")
    for arch in args.arch:
        print(f"{arch}:")
        model = export(arch, args.work, args.images)
        ips = images_per_s(model, args.seconds)
        spec = Embedder(model, device="cpu").spec
        print(
            f"  image tower {spec.input_size[0]}x{spec.input_size[1]}: {ips:.1f} images/s "
            f"({ips / baseline:.2f}x MobileNetV2)"
        )
        text = TextEmbedder(model.with_suffix(".text.onnx"), device="cpu")
        whole, tokens = queries_per_s(text, args.seconds / 2)
        print(
            f"  text tower: {whole:.1f} queries/s one at a time (tokenise + tower); tokenizer alone "
            f"{tokens:.0f} queries/s"
        )


if __name__ == "__main__":
    main()
