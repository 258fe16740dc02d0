#!/usr/bin/env python3
"""A labelled set of real pictures for judging the quality stage (issue 25).

    python benchmarks/quality_set.py OUT [--seed 0] [--samples-python /work/q-venv/bin/python]

Writes OUT/images/<8 hex digits>.jpg|png (a name says nothing of its label) and
OUT/truth.json: {"packages": {package: version}, "files": {name: {"label": "good"|"defect",
"kind", "source": "package:path", "strength"}}}. Every picture comes from an installed
package (Debian's opencv-doc, wallpaper and tuxpaint-stamps-default packages; the sample
pictures shipped inside the scikit-image and scikit-learn wheels, found through
--samples-python, a Python that has them). benchmarks/README.md, "Quality stage on real
pictures (issue 25)", says what each kind holds and how the made pictures were made.

Good pictures are used as shipped (longer side scaled to 400-1024 px), except three kinds
made from real pictures: objects on pure white or black (Tux Paint's stamps, composited),
high-key versions (snow-like: shadows lifted, nothing clipped) and night versions (midtones
pushed down, highlights kept, no noise). Defects are made from OTHER real pictures than any
good one, each kind at a range of strengths, plus the blurred photos opencv-doc and
scikit-image ship as such.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # wallpapers reach 5120x2880: our own files, not a hostile input

DEBIAN = {  # package: folder it installs its pictures in
    "opencv-doc": Path("/usr/share/doc/opencv-doc/examples/data"),
    "plasma-workspace-wallpapers": Path("/usr/share/wallpapers"),
    "mate-backgrounds": Path("/usr/share/backgrounds/mate"),
    "gnome-backgrounds": Path("/usr/share/backgrounds/gnome"),
    "ukui-wallpapers": Path("/usr/share/backgrounds"),
    "tuxpaint-stamps-default": Path("/usr/share/tuxpaint/stamps"),
}
WHEELS = {"scikit-image": ("skimage", "data"), "scikit-learn": ("sklearn", "datasets/images")}

# Good pictures used as shipped, by kind. "package:path" under the package's folder.
GOOD = {
    "photo": [
        "opencv-doc:aloeL.jpg",
        "opencv-doc:apple.jpg",
        "opencv-doc:orange.jpg",
        "opencv-doc:basketball1.png",
        "opencv-doc:butterfly.jpg",
        "opencv-doc:chicky_512.png",
        "opencv-doc:ela_original.jpg",
        "opencv-doc:leuvenA.jpg",
        "opencv-doc:pca_test1.jpg",
        "opencv-doc:rubberwhale1.png",
        "opencv-doc:squirrel_cls.jpg",
        "opencv-doc:stuff.jpg",
        "opencv-doc:Blender_Suzanne1.jpg",
        "opencv-doc:graf1.png",
        "scikit-image:camera.png",
        "scikit-image:ihc.png",
        "scikit-image:moon.png",
        "scikit-image:cell.png",
        "scikit-learn:china.jpg",
        "plasma-workspace-wallpapers:FallenLeaf/contents/images/2560x1600.jpg",
        "plasma-workspace-wallpapers:ColdRipple/contents/images/2560x1600.jpg",
        "plasma-workspace-wallpapers:Kite/contents/images/2560x1600.jpg",
        "plasma-workspace-wallpapers:summer_1am/contents/images/2560x1600.jpg",
        "mate-backgrounds:nature/Aqua.jpg",
        "mate-backgrounds:nature/Blinds.jpg",
        "mate-backgrounds:nature/FreshFlower.jpg",
        "mate-backgrounds:nature/LadyBird.jpg",
        "mate-backgrounds:nature/RainDrops.jpg",
        "mate-backgrounds:nature/TwoWings.jpg",
    ],
    "bright": [  # high-key as shipped: documents, cards, sweets and a logo on white, pale wood
        "opencv-doc:cards.png",
        "opencv-doc:smarties.png",
        "opencv-doc:imageTextN.png",
        "opencv-doc:imageTextR.png",
        "opencv-doc:notes.png",
        "opencv-doc:pic3.png",
        "scikit-image:horse.png",
        "mate-backgrounds:nature/Wood.jpg",
        "mate-backgrounds:desktop/GreenTraditional.jpg",
    ],
    "dark": [  # low-key that keeps its detail: a night launch pad, deep sky, dark wallpapers
        "scikit-image:rocket.jpg",
        "scikit-image:hubble_deep_field.jpg",
        "ukui-wallpapers:the-mouse.jpg",
        "ukui-wallpapers:focal-ubuntukylin.png",
        "plasma-workspace-wallpapers:Kay/contents/images_dark/5120x2880.png",
        "plasma-workspace-wallpapers:MilkyWay/contents/images/5120x2880.png",
        "plasma-workspace-wallpapers:Path/contents/images/2560x1600.jpg",
        "plasma-workspace-wallpapers:Flow/contents/images_dark/5120x2880.jpg",
        "mate-backgrounds:desktop/Ubuntu-Mate-Dark-no-logo.png",
        "mate-backgrounds:desktop/Ubuntu-Mate-Warm-no-logo.png",
        "gnome-backgrounds:wood-d.webp",
        "gnome-backgrounds:adwaita-d.webp",
    ],
    "on_black": [  # graphics and scans on black, as shipped
        "opencv-doc:detect_blob.png",
        "opencv-doc:digits.png",
        "opencv-doc:opencv-logo.png",
        "scikit-image:phantom.png",
        "scikit-image:retina.jpg",
    ],
    "smooth": [  # few edges but sharp: fog, sky over a horizon, gradients, flat vector art
        "plasma-workspace-wallpapers:DarkestHour/contents/images/2560x1600.jpg",
        "plasma-workspace-wallpapers:PastelHills/contents/images/3200x2000.jpg",
        "plasma-workspace-wallpapers:Altai/contents/images/1080x1920.png",
        "plasma-workspace-wallpapers:Volna/contents/images/5120x2880.jpg",
        "plasma-workspace-wallpapers:Elarun/contents/images/2560x1600.png",
        "plasma-workspace-wallpapers:Opal/contents/images/3840x2160.png",
        "plasma-workspace-wallpapers:Kokkini/contents/images/3840x2160.png",
        "plasma-workspace-wallpapers:Kay/contents/images/1080x1920.png",
        "mate-backgrounds:nature/Storm.jpg",
        "mate-backgrounds:desktop/Ubuntu-Mate-Cold-no-logo.png",
        "gnome-backgrounds:adwaita-l.webp",
        "gnome-backgrounds:symbolic-l.webp",
        "ukui-wallpapers:fluent-color.png",
        "ukui-wallpapers:calla.png",
        "ukui-wallpapers:city.png",
        "ukui-wallpapers:desert.png",
        "ukui-wallpapers:goldfish.png",
        "ukui-wallpapers:rhythm.jpg",
        "ukui-wallpapers:rollpaper.png",
        "ukui-wallpapers:firstgeneration.jpg",
        "gnome-backgrounds:pixels-l.webp",
        "scikit-image:logo.png",
        "opencv-doc:pic1.png",
        "opencv-doc:pic5.png",
    ],
    "busy": [
        "opencv-doc:baboon.jpg",
        "opencv-doc:board.jpg",
        "opencv-doc:starry_night.jpg",
        "opencv-doc:chessboard.png",
        "opencv-doc:sudoku.png",
        "scikit-image:grass.png",
        "scikit-image:gravel.png",
        "scikit-image:brick.png",
        "plasma-workspace-wallpapers:OneStandsOut/contents/images/2560x1600.jpg",
        "plasma-workspace-wallpapers:Grey/contents/images/2560x1600.jpg",
        "plasma-workspace-wallpapers:ColorfulCups/contents/images/2560x1600.jpg",
        "gnome-backgrounds:licorice-l.webp",
        "gnome-backgrounds:licorice-d.webp",
        "gnome-backgrounds:truchet-d.webp",
        "ukui-wallpapers:string.jpg",
    ],
}
# Good pictures made from real ones (a window of the frame, so not a copy of a good one).
HIGH_KEY = [
    "plasma-workspace-wallpapers:ColdRipple/contents/images/2560x1600.jpg",
    "plasma-workspace-wallpapers:Kite/contents/images/2560x1600.jpg",
    "plasma-workspace-wallpapers:summer_1am/contents/images/2560x1600.jpg",
    "mate-backgrounds:nature/Storm.jpg",
    "mate-backgrounds:nature/TwoWings.jpg",
    "opencv-doc:squirrel_cls.jpg",
    "scikit-image:camera.png",
    "scikit-image:ihc.png",
    "opencv-doc:leuvenA.jpg",
]
NIGHT = [
    "plasma-workspace-wallpapers:summer_1am/contents/images/2560x1600.jpg",
    "plasma-workspace-wallpapers:FallenLeaf/contents/images/2560x1600.jpg",
    "plasma-workspace-wallpapers:Grey/contents/images/2560x1600.jpg",
    "mate-backgrounds:nature/RainDrops.jpg",
    "opencv-doc:aloeL.jpg",
    "scikit-learn:china.jpg",
]
STAMPS_ON = {"on_white": 30, "on_black": 15}

# Defects are made from these, and only these, real pictures.
DEFECT_SOURCES = [
    "opencv-doc:aero1.jpg",
    "opencv-doc:aero3.jpg",
    "opencv-doc:building.jpg",
    "opencv-doc:fruits.jpg",
    "opencv-doc:home.jpg",
    "opencv-doc:messi5.jpg",
    "opencv-doc:left.jpg",
    "opencv-doc:right.jpg",
    "opencv-doc:box_in_scene.png",
    "opencv-doc:left03.jpg",
    "opencv-doc:right08.jpg",
    "scikit-image:coffee.png",
    "scikit-image:motorcycle_left.png",
    "scikit-image:astronaut.png",
    "scikit-image:chelsea.png",
    "scikit-learn:flower.jpg",
    "mate-backgrounds:nature/Garden.jpg",
    "mate-backgrounds:nature/GreenMeadow.jpg",
    "mate-backgrounds:nature/YellowFlower.jpg",
    "mate-backgrounds:nature/Dune.jpg",
    "plasma-workspace-wallpapers:BytheWater/contents/images/2560x1600.jpg",
    "plasma-workspace-wallpapers:EveningGlow/contents/images/2560x1600.jpg",
]
SHIPPED_BLURRED = {  # blurred as shipped: real defects nobody here made
    "opencv-doc:licenseplate_motion.jpg": "motion",
    "opencv-doc:text_motion.jpg": "motion",
    "scikit-image:clock_motion.png": "motion",
    "opencv-doc:text_defocus.jpg": "defocus",
}
BLANKS = {"flat": 4, "lens cap": 4, "white wall": 4}


@dataclass(frozen=True)
class Truth:
    """One picture's line in truth.json."""

    label: str  # "good" or "defect"
    kind: str
    source: str  # "package:path"
    strength: str | None = None  # how it was made, for made pictures


@dataclass(frozen=True)
class Library:
    """Where each package's pictures are, and their versions."""

    roots: dict[str, Path]
    versions: dict[str, str]

    @classmethod
    def installed(cls, samples_python: str) -> Library:
        """The Debian packages here, and the wheels SAMPLES_PYTHON has."""
        roots, versions = dict(DEBIAN), {pkg: debian_version(pkg) for pkg in DEBIAN}
        for pkg, (module, sub) in WHEELS.items():
            folder, versions[pkg] = wheel_folder(samples_python, pkg, module)
            roots[pkg] = folder / sub
        return cls(roots, versions)

    def path(self, source: str) -> Path:
        package, rel = source.split(":", 1)
        return self.roots[package] / rel


def debian_version(package: str) -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package], check=True, capture_output=True, text=True
    ).stdout


def wheel_folder(python: str, package: str, module: str) -> tuple[Path, str]:
    """The installed folder of MODULE and the version of PACKAGE, in another Python."""
    code = (
        "import importlib.util as u, importlib.metadata as m, os;"
        f"print(os.path.dirname(u.find_spec('{module}').origin)); print(m.version('{package}'))"
    )
    folder, version = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return Path(folder), version


def load(path: Path, background: int = 255) -> np.ndarray:
    """RGB uint8; a transparent picture is laid on BACKGROUND gray."""
    image = Image.open(path)
    image.draft("RGB", (1024, 1024))  # JPEGs decode at a smaller scale, still >= 1024 px
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        base = Image.new("RGBA", image.size, (background,) * 3 + (255,))
        return np.asarray(Image.alpha_composite(base, image.convert("RGBA")).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def fit(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """Longer side brought to 640-1024 px when above 1024 (never enlarged)."""
    h, w = rgb.shape[:2]
    if max(h, w) < 400:
        raise ValueError(f"{w}x{h}: smaller than the set's 400 px")
    if max(h, w) <= 1024:
        return rgb
    scale = rng.choice((640, 800, 1024)) / max(h, w)
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def window(rgb: np.ndarray, rng: random.Random, share: float = 0.7) -> np.ndarray:
    """A random window of SHARE of each side (more if that would leave under 400 px):
    another framing of the picture."""
    h, w = rgb.shape[:2]
    share = max(share, 400 / max(h, w))
    ch, cw = round(h * share), round(w * share)
    y, x = rng.randrange(h - ch + 1), rng.randrange(w - cw + 1)
    return rgb[y : y + ch, x : x + cw]


# Good pictures made from real ones --------------------------------------------------------


def high_key(rgb: np.ndarray, level: float) -> tuple[np.ndarray, float]:
    """Snow-like, at mean gray LEVEL if p <= 6 reaches it: each pixel moves toward white so
    that its gray L becomes 1 - (1 - L)^p, colours kept. Nothing clips (the curve's slope
    stays above zero below white): the detail stays, at lower contrast. Returns it and p."""
    p = solve(gray(rgb), lambda x, p: 1 - (1 - x) ** p, level, 1, 6)
    white = 255 - rgb.astype(np.float32)
    return to_uint8(255 - white * (1 - gray(rgb))[..., None] ** (p - 1)), p


def night(rgb: np.ndarray, level: float) -> tuple[np.ndarray, float]:
    """Night-like, at mean gray LEVEL if gamma <= 5 reaches it: each pixel darkens so that its
    gray L becomes L^gamma, colours kept: midtones sink, lit parts stay lit; no noise added.
    Returns it and gamma."""
    gamma = solve(gray(rgb), lambda x, g: x**g, level, 1, 5)
    return to_uint8(rgb.astype(np.float32) * gray(rgb)[..., None] ** (gamma - 1)), gamma


def gray(rgb: np.ndarray) -> np.ndarray:
    """Gray level 0..1 (ITU-R 601 weights, as Pillow's "L")."""
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255


def solve(x: np.ndarray, curve: Callable[[np.ndarray, float], np.ndarray], level: float, lo: float, hi: float) -> float:
    """The parameter in [LO, HI] of a tone CURVE (monotone in it) that brings the mean of
    255 curve(X) closest to LEVEL."""
    x = cv2.resize(x, (96, 96), interpolation=cv2.INTER_AREA)
    rising = curve(x, hi).mean() > curve(x, lo).mean()
    for _ in range(40):
        mid = (lo + hi) / 2
        if (255 * curve(x, mid).mean() < level) == rising:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def on_background(stamp: Image.Image, background: int, share: float, rng: random.Random) -> np.ndarray:
    """STAMP (RGBA) at SHARE of the frame's longer side, somewhere on a plain frame."""
    aspect = rng.choice((4 / 3, 3 / 2, 1.0, 3 / 4))
    long_side = min(1024, max(400, round(max(stamp.size) / share)))
    w, h = (long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side)
    scale = min(share * long_side / max(stamp.size), 0.95 * w / stamp.width, 0.95 * h / stamp.height)
    obj = stamp.resize(
        (max(1, round(stamp.width * scale)), max(1, round(stamp.height * scale))), Image.Resampling.LANCZOS
    )
    frame = Image.new("RGBA", (w, h), (background,) * 3 + (255,))
    frame.alpha_composite(obj, (rng.randrange(w - obj.width + 1), rng.randrange(h - obj.height + 1)))
    return np.asarray(frame.convert("RGB"))


def stamps(root: Path, background: int, n: int, taken: set[Path], rng: random.Random) -> list[Path]:
    """N stamps (RGBA, 300 px or more, not letters) that show up on BACKGROUND: light ones
    on black, darker ones on white."""
    found = []
    for path in sorted(root.rglob("*.png")):
        if "alphabets" in path.parts or path in taken:
            continue
        image = Image.open(path)
        if image.mode != "RGBA" or max(image.size) < 300:
            continue
        rgba = np.asarray(image)
        level = rgba[..., :3][rgba[..., 3] > 128].mean()
        if (level >= 100) if background == 0 else (level <= 180):
            found.append(path)
    picked = rng.sample(found, n)
    taken.update(picked)
    return picked


# Defects ---------------------------------------------------------------------------------


def at_640(rgb: np.ndarray) -> float:
    """How many pixels of this picture make one pixel at 640 px (strengths are given at 640)."""
    return max(rgb.shape[:2]) / 640


def gaussian_blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), sigma * at_640(rgb))


def disk_blur(rgb: np.ndarray, radius: float) -> np.ndarray:
    """Defocus through a round aperture: the mean over a disk."""
    r = max(1, round(radius * at_640(rgb)))
    disk = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    cv2.circle(disk, (r, r), r, 1.0, -1)
    return cv2.filter2D(rgb, -1, disk / disk.sum(), borderType=cv2.BORDER_REFLECT)


def motion_blur(rgb: np.ndarray, length: float, angle: float) -> np.ndarray:
    """A shake of LENGTH px along ANGLE degrees: the mean along a line."""
    n = max(3, round(length * at_640(rgb)) | 1)
    line = np.zeros((n, n), np.float32)
    c, dx, dy = n // 2, np.cos(np.radians(angle)) * (n // 2), np.sin(np.radians(angle)) * (n // 2)
    cv2.line(line, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return cv2.filter2D(rgb, -1, line / line.sum(), borderType=cv2.BORDER_REFLECT)


def underexposed(rgb: np.ndarray, gain: float, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """A night shot too dark: y = 255 (gain x)^gamma, then sensor noise: shot noise (its
    variance grows with the level) and read noise, each channel on its own."""
    y = 255 * (gain * rgb.astype(np.float32) / 255) ** gamma
    read = rng.uniform(1.5, 4.0)
    noisy = y + rng.normal(0, 1, y.shape) * np.sqrt(read**2 + 0.8 * y)
    return to_uint8(noisy)


def blown_out(rgb: np.ndarray, gain: float, flare: float) -> np.ndarray:
    """Overexposed: gain then clipped at white, with FLARE of veiling glare (less contrast)."""
    y = np.minimum(255, gain * rgb.astype(np.float32))
    return to_uint8(y * (1 - flare) + 255 * flare)


def blank(kind: str, tint: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A frame with nothing in it: one flat colour (TINT), a lens cap, a white wall."""
    w, h = [(640, 480), (800, 600), (1024, 768), (480, 640)][rng.integers(4)]
    if kind == "flat":
        level, noise = tint, rng.uniform(1, 3)
    elif kind == "lens cap":
        level, noise = np.full(3, rng.uniform(2, 10)), rng.uniform(1, 3)
    else:  # white wall, a little darker toward the corners
        level, noise = np.full(3, rng.uniform(215, 240)), rng.uniform(1, 2)
    yy, xx = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
    falloff = 1 - (0.08 if kind == "white wall" else 0.0) * (xx**2 + yy**2) / 2
    frame = level[None, None, :] * falloff[..., None]
    return to_uint8(frame + rng.normal(0, noise, (h, w, 3)))


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Rngs:
    """The build's two random sources, both from --seed."""

    py: random.Random
    np: np.random.Generator


def make_defocus(rgb: np.ndarray, s: float, rngs: Rngs) -> tuple[np.ndarray, str]:
    if rngs.py.random() < 0.5:
        return gaussian_blur(rgb, s), f"gaussian sigma={s:.1f} px at 640"
    return disk_blur(rgb, 1.6 * s), f"disk radius={1.6 * s:.1f} px at 640"


def make_motion(rgb: np.ndarray, s: float, rngs: Rngs) -> tuple[np.ndarray, str]:
    angle = rngs.py.uniform(0, 180)
    return motion_blur(rgb, s, angle), f"line {s:.0f} px at 640, {angle:.0f} deg"


def make_dark(rgb: np.ndarray, s: float, rngs: Rngs) -> tuple[np.ndarray, str]:
    gamma = rngs.py.uniform(1.0, 1.4)
    return underexposed(rgb, s, gamma, rngs.np), f"gain={s:.2f} gamma={gamma:.2f} + noise"


def make_bright(rgb: np.ndarray, s: float, rngs: Rngs) -> tuple[np.ndarray, str]:
    flare = rngs.py.choice((0.0, 0.0, 0.15, 0.3))
    return blown_out(rgb, s, flare), f"gain={s:.2f} clipped, flare={flare:.2f}"


Maker = Callable[[np.ndarray, float, Rngs], tuple[np.ndarray, str]]
# Made defects, per kind: how many, the range of strengths, the maker(picture, strength).
DEFECTS: dict[str, tuple[int, float, float, Maker]] = {
    "defocus": (30, 2, 8, make_defocus),  # sigma in px at 640 (a disk's radius is 1.6 sigma)
    "motion": (30, 9, 31, make_motion),  # line length in px at 640
    "dark": (25, 0.08, 0.3, make_dark),  # gain
    "bright": (25, 2.5, 5, make_bright),  # gain
}


def spread(lo: float, hi: float, n: int, rng: random.Random) -> list[float]:
    """N strengths evenly over [LO, HI], in random order."""
    values = [float(v) for v in np.linspace(lo, hi, n)]
    rng.shuffle(values)
    return values


# The set ---------------------------------------------------------------------------------


class Writer:
    """Writes pictures under neutral names and keeps their truth."""

    def __init__(self, out: Path, rng: random.Random) -> None:
        self.images = out / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        if any(self.images.iterdir()):
            raise SystemExit(f"{self.images} is not empty: build the set in a new folder")
        self.rng = rng
        self.truth: dict[str, Truth] = {}

    def add(self, rgb: np.ndarray, truth: Truth) -> None:
        ext = "png" if self.rng.random() < 0.15 else "jpg"
        name = f"{self.rng.getrandbits(32):08x}.{ext}"
        while name in self.truth:
            name = f"{self.rng.getrandbits(32):08x}.{ext}"
        Image.fromarray(rgb).save(self.images / name, quality=90)  # PNG ignores quality
        self.truth[name] = truth


def add_good(lib: Library, w: Writer, rng: random.Random) -> None:
    for kind, sources in GOOD.items():
        for source in sources:
            w.add(fit(load(lib.path(source), 0 if kind == "on_black" else 255), rng), Truth("good", kind, source))
    for source in HIGH_KEY:
        rgb, p = high_key(window(load(lib.path(source)), rng), rng.uniform(205, 235))
        w.add(
            fit(rgb, rng),
            Truth("good", "bright", source, f"high-key 1-(1-L)^{p:.1f}, mean gray {255 * gray(rgb).mean():.0f}"),
        )
    for source in NIGHT:
        rgb, gamma = night(window(load(lib.path(source)), rng), rng.uniform(25, 50))
        w.add(
            fit(rgb, rng), Truth("good", "dark", source, f"night L^{gamma:.1f}, mean gray {255 * gray(rgb).mean():.0f}")
        )
    root, taken = lib.roots["tuxpaint-stamps-default"], set[Path]()
    for kind, n in STAMPS_ON.items():
        background = 255 if kind == "on_white" else 0
        for path in stamps(root, background, n, taken, rng):
            share = rng.uniform(0.3, 0.85)
            w.add(
                on_background(Image.open(path).convert("RGBA"), background, share, rng),
                Truth(
                    "good",
                    kind,
                    f"tuxpaint-stamps-default:{path.relative_to(root)}",
                    f"object {share:.2f} of the longer side",
                ),
            )


def add_defects(lib: Library, w: Writer, rngs: Rngs) -> None:
    rng = rngs.py
    pictures = {s: fit(load(lib.path(s)), rng) for s in DEFECT_SOURCES}
    for kind, (n, lo, hi, make) in DEFECTS.items():
        # a dim picture made 2.5x brighter is not blown out: those are left out of "bright"
        usable = [s for s in DEFECT_SOURCES if kind != "bright" or pictures[s].mean() >= 80]
        rng.shuffle(usable)
        for i, strength in enumerate(spread(lo, hi, n, rng)):
            source = usable[i % len(usable)]
            rgb, how = make(pictures[source], strength, rngs)
            w.add(rgb, Truth("defect", kind, source, how))
    for source, kind in SHIPPED_BLURRED.items():
        w.add(fit(load(lib.path(source)), rng), Truth("defect", kind, source, "as shipped"))
    for style, n in BLANKS.items():
        for _ in range(n):
            source = rng.choice(DEFECT_SOURCES)  # a flat frame takes its colour from a photo
            tint = pictures[source].reshape(-1, 3).mean(axis=0)
            w.add(blank(style, tint, rngs.np), Truth("defect", "blank", source if style == "flat" else "none", style))


def build(out: Path, seed: int, samples_python: str) -> dict[str, Truth]:
    rngs = Rngs(random.Random(seed), np.random.default_rng(seed))
    lib = Library.installed(samples_python)
    writer = Writer(out, rngs.py)
    add_good(lib, writer, rngs.py)
    add_defects(lib, writer, rngs)
    files = {name: asdict(t) for name, t in sorted(writer.truth.items())}
    (out / "truth.json").write_text(
        json.dumps({"seed": seed, "packages": lib.versions, "files": files}, indent=1) + "\n"
    )
    return writer.truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--samples-python",
        default="/work/q-venv/bin/python",
        help="a Python with scikit-image and scikit-learn installed",
    )
    args = parser.parse_args()
    truth = build(args.out, args.seed, args.samples_python)
    labels = [t.label for t in truth.values()]
    print(f"{args.out / 'images'}: {labels.count('good')} good, {labels.count('defect')} defects")


if __name__ == "__main__":
    main()
