#!/usr/bin/env python3
"""Three kinds of whole-frame footage the shared sequence generator does not make (issue 26),
labelled in its truth format so that compare_peers.py scores them the same way.

    python benchmarks/camera_kinds.py OUT --kind fishtank|talking|pan [--seed 0] [--sequences 4]

- fishtank: a fixed camera over many small things always moving (10 to 14 of them, 30 to 50
  px in a 960x540 frame, 1 to 4 px a frame, turning at the walls): nearly every frame is a
  picture of its own; a tool must thin little and lose nothing.
- talking: a fixed webcam on one person who fills most of its height (a stamp 400 to 460 px
  tall) and sways, never further than 9% of their height from where they sat, a pixel or two
  a frame, with a few small things passing behind them now and then: nearly every frame is
  the same picture.
- pan: a camera panning and tilting slowly over a wide view (up to 4 px a frame, turning at
  the ends), with small things coming and going in the world. The view itself is one of the
  frame's things (its size is the frame's width): panned by 0.15 of the frame it is another
  picture.
Each frame gets fresh noise, a little flicker and its own JPEG quality (as make_sequences.py);
names are random; truth.json: {"frames": {NAME: {"sequence", "t", "objects": [[track, cx, cy,
size], ...]}}, "tolerance": {"duplicate": 0.15, "shown": 0.5}}. The backgrounds and stamps are
make_corpus.py's (Debian's wallpaper and tuxpaint-stamps packages).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from corpus import SHARED
from PIL import Image

sys.path.insert(0, str(SHARED))
from make_corpus import find_backgrounds, find_stamps  # noqa: E402

W, H = 960, 540
VIEW = 1000_000  # the track number of a panned view


@dataclass
class Mover:
    """A thing moving in the world (pixels of the world picture), turning at its walls."""

    track: int
    stamp: int
    size: int
    x: float
    y: float
    vx: float
    vy: float

    def step(self, width: int, height: int, rng: random.Random, wobble: float) -> None:
        self.vx += rng.uniform(-wobble, wobble)
        self.vy += rng.uniform(-wobble, wobble)
        for axis, limit in (("x", width), ("y", height)):
            v = "v" + axis
            if not self.size / 2 <= getattr(self, axis) + getattr(self, v) <= limit - self.size / 2:
                setattr(self, v, -getattr(self, v))
            setattr(self, axis, getattr(self, axis) + getattr(self, v))


def paste(canvas: Image.Image, stamp: Image.Image, size: int, x: float, y: float) -> None:
    k = size / max(stamp.size)
    im = stamp.resize((max(4, int(stamp.width * k)), max(4, int(stamp.height * k))), Image.LANCZOS)
    canvas.paste(im, (int(round(x - im.width / 2)), int(round(y - im.height / 2))), im)


def encode(canvas: Image.Image, nrng: np.random.Generator, light: float, quality: int) -> bytes:
    a = np.asarray(canvas, np.float32) * light + nrng.normal(0, 2.0, (canvas.height, canvas.width, 3))
    buf = io.BytesIO()
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def inside(x: float, y: float, size: int) -> bool:
    """At least half of a thing of SIZE centred at (x, y) in the frame (make_sequences.py's rule)."""
    half = size / 2
    return (
        max(0.0, min(x + half, W) - max(x - half, 0)) * max(0.0, min(y + half, H) - max(y - half, 0))
        >= 0.5 * size * size
    )


def sequence(
    kind: str, frames: int, rng: random.Random, stamps: list[Image.Image], world: Image.Image, first: int
) -> list[tuple[Image.Image, list[list]]]:
    """FRAMES pictures of one sequence of KIND and their objects."""
    out = []
    if kind == "fishtank":
        bg = world.crop((0, 0, W, H))
        fish = [
            Mover(
                first + k,
                rng.randrange(len(stamps)),
                rng.randint(30, 50),
                rng.uniform(60, W - 60),
                rng.uniform(60, H - 60),
                rng.choice((-1, 1)) * rng.uniform(1, 4),
                rng.choice((-1, 1)) * rng.uniform(0.5, 2),
            )
            for k in range(rng.randint(10, 14))
        ]
        for _ in range(frames):
            canvas = bg.copy()
            for f in fish:
                f.step(W, H, rng, 0.3)
                f.vx, f.vy = np.clip(f.vx, -4, 4), np.clip(f.vy, -2.5, 2.5)
                paste(canvas, stamps[f.stamp], f.size, f.x, f.y)
            out.append((canvas, [[f.track, round(f.x, 1), round(f.y, 1), f.size] for f in fish]))
    elif kind == "talking":
        bg = world.crop((0, 0, W, H))
        size = rng.randint(400, 460)
        home = (W / 2 + rng.uniform(-150, 150), H - size / 2 + 20)
        head = Mover(first, rng.randrange(len(stamps)), size, *home, 0.0, 0.0)
        passers: list[Mover] = []
        for t in range(frames):
            # sway: a slow random walk held within 9% of the size around home
            for axis, centre in (("x", home[0]), ("y", home[1])):
                v = getattr(head, "v" + axis) * 0.9 + rng.uniform(-0.6, 0.6)
                pos = getattr(head, axis) + v
                if abs(pos - centre) > 0.09 * size:
                    v, pos = -v, getattr(head, axis) - v
                setattr(head, "v" + axis, v)
                setattr(head, axis, pos)
            if rng.random() < 0.02:  # now and then something small passes behind
                left = rng.random() < 0.5
                passers.append(
                    Mover(
                        first + 1 + t,
                        rng.randrange(len(stamps)),
                        rng.randint(40, 70),
                        -30.0 if left else W + 30.0,
                        rng.uniform(60, 200),
                        rng.uniform(3, 8) * (1 if left else -1),
                        0.0,
                    )
                )
            canvas = bg.copy()
            objects = []
            for p in passers:
                p.x += p.vx
                if inside(p.x, p.y, p.size):
                    paste(canvas, stamps[p.stamp], p.size, p.x, p.y)
                    objects.append([p.track, round(p.x, 1), round(p.y, 1), p.size])
            passers = [p for p in passers if -60 < p.x < W + 60]
            paste(canvas, stamps[head.stamp], head.size, head.x, head.y)
            out.append((canvas, [[head.track, round(head.x, 1), round(head.y, 1), head.size], *objects]))
    else:  # pan
        wide = world.width - W, world.height - H
        view = Mover(
            VIEW + first,
            0,
            W,
            wide[0] * rng.random(),
            wide[1] * rng.random(),
            rng.choice((-1, 1)) * rng.uniform(1.5, 4),
            rng.uniform(-1, 1),
        )
        walkers = [
            Mover(
                first + 1 + k,
                rng.randrange(len(stamps)),
                rng.randint(50, 90),
                rng.uniform(50, world.width - 50),
                rng.uniform(world.height * 0.4, world.height - 50),
                rng.choice((-1, 1)) * rng.uniform(1, 5),
                0.0,
            )
            for k in range(rng.randint(4, 8))
        ]
        for _ in range(frames):
            view.x = min(max(view.x + view.vx, 0), wide[0])
            view.y = min(max(view.y + view.vy, 0), wide[1])
            if view.x in (0, wide[0]):
                view.vx = -view.vx
            if view.y in (0, wide[1]):
                view.vy = -view.vy
            canvas = world.copy()
            for w in walkers:
                w.step(world.width, world.height, rng, 0.0)
                paste(canvas, stamps[w.stamp], w.size, w.x, w.y)
            x0, y0 = int(round(view.x)), int(round(view.y))
            frame = canvas.crop((x0, y0, x0 + W, y0 + H))
            # the view: its centre moves against the camera (a pan right moves the world left)
            objects = [[view.track, round(W / 2 - (x0 - wide[0] / 2), 1), round(H / 2 - (y0 - wide[1] / 2), 1), W]]
            objects += [
                [w.track, round(w.x - x0, 1), round(w.y - y0, 1), w.size]
                for w in walkers
                if inside(w.x - x0, w.y - y0, w.size)
            ]
            out.append((frame, objects))
    return out


def build(out: Path, kind: str, sequences: int, frames: int, seed: int) -> dict:
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    backgrounds, stamp_paths = find_backgrounds(), find_stamps()
    if not backgrounds or not stamp_paths:
        sys.exit("no backgrounds or stamps: install the Debian packages named in make_corpus.py")
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty: give a new folder")
    (out / "images").mkdir(parents=True)
    truth: dict = {"frames": {}, "tolerance": {"duplicate": 0.15, "shown": 0.5}}
    stamps = [Image.open(p).convert("RGBA") for p in rng.sample(stamp_paths, min(60, len(stamp_paths)))]
    for s, index in enumerate(rng.sample(range(len(backgrounds)), sequences)):
        world = Image.open(backgrounds[index]).convert("RGB")
        world.thumbnail((1800, 1800))
        if kind != "pan":
            x0, y0 = rng.randrange(0, max(1, world.width - W)), rng.randrange(0, max(1, world.height - H))
            world = world.crop((x0, y0, x0 + W, y0 + H)).resize((W, H))
        elif world.width < W + 200 or world.height < H:
            world = world.resize((int(1.6 * W), int(1.2 * H)))
        for t, (picture, objects) in enumerate(sequence(kind, frames, rng, stamps, world, 1000 * s)):
            name = hashlib.sha256(f"{kind}/{seed}/{s}/{t}".encode()).hexdigest()[:16] + ".jpg"
            (out / "images" / name).write_bytes(encode(picture, nrng, rng.uniform(0.99, 1.01), rng.randint(85, 93)))
            truth["frames"][name] = {"sequence": s, "t": t, "objects": objects}
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--kind", choices=("fishtank", "talking", "pan"), required=True)
    ap.add_argument("--sequences", type=int, default=4)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    truth = build(a.out, a.kind, a.sequences, a.frames, a.seed)
    print(f"{len(truth['frames'])} frames of {a.kind} in {a.sequences} sequences -> {a.out}")


if __name__ == "__main__":
    main()
