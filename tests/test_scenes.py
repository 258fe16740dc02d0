"""Whole frames from fixed cameras: frames of one scene are compared by what stands in front
of its background. Scenes are drawn here: a textured background, small objects, fresh sensor
noise, exposure drift and JPEG encoding on every frame."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import draw_picture, extract, run_cli
from refinery.config import ScenesConfig, load_config
from refinery.dedup.grays import Grays
from refinery.dedup.stages.background import Background, Front, Region, pixel_median
from refinery.dedup.stages.scenes import _distances, _leaders, _ViewFeatures, analyse, shift
from refinery.dedup.table import FeatureTable
from refinery.features import median
from refinery.views import _middle_in, view_match, view_matches

W, H = 480, 270


@dataclass(frozen=True)
class Thing:
    """An object in a frame: a track number, its centre, its size (longest side), its colour."""

    track: int
    x: float
    y: float
    size: int
    colour: tuple[int, int, int]


def background(seed: int, dots: bool = False) -> np.ndarray:
    """A drawn picture; with `dots`, behind a grid of bright dots 12 px apart (a busy,
    sharp background that a shift of a pixel or two changes everywhere)."""
    bg = np.asarray(draw_picture(seed, (W, H)), np.float32)
    if dots:
        yy, xx = np.mgrid[0:H, 0:W]
        bg = np.where((((yy % 12) - 6) ** 2 + ((xx % 12) - 6) ** 2 <= 12)[..., None], 235.0, bg)
    return bg


def frame(
    bg: np.ndarray, things: list[Thing], rng: np.random.Generator, light: float | np.ndarray = 1.0, shake: float = 0.0
) -> bytes:
    """One JPEG frame: the background, the things (ellipses 1.5 times as tall as wide), a
    brightness (or a light map, H x W x 1), the whole frame shifted by up to `shake` px in
    each direction, fresh noise."""
    im = Image.fromarray(bg.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for t in things:
        w, h = t.size / 1.5, t.size
        draw.ellipse([t.x - w / 2, t.y - h / 2, t.x + w / 2, t.y + h / 2], fill=t.colour)
    pixels = np.asarray(im, np.float32)
    if shake:
        dx, dy = rng.uniform(-shake, shake, 2)
        pixels = cv2.warpAffine(
            pixels, np.array([[1, 0, dx], [0, 1, dy]], np.float32), (W, H), borderMode=cv2.BORDER_REPLICATE
        )
    pixels = pixels * light + rng.normal(0, 2.0, (H, W, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def scene_folder(
    root: Path,
    seed: int,
    frames: int,
    extra: dict[str, list[Thing]] | None = None,
    light: dict[str, float | np.ndarray] | None = None,
    cloud: bool = False,
    shake: float = 0.0,
    dots: bool = False,
) -> dict[str, list[Thing]]:
    """`frames` frames of one camera with people passing (their truth by name), plus `extra`
    frames as given; file names in random order, as a folder gives them. With `cloud`, a
    cloud's shade crosses the view over the frames; with `shake`, every frame is shifted by
    up to that many px (wind on the camera's pole); `dots`: a busy background."""
    rng = np.random.default_rng(seed)
    bg = background(seed, dots)
    parked = Thing(0, 60, 200, 40, (200, 40, 40))
    truth: dict[str, list[Thing]] = {}
    for t in range(frames):
        things = [parked]
        for track, (start, speed, y, size) in enumerate(((0, 6, 120, 24), (frames // 3, -9, 180, 30)), start=1):
            x = (20 + speed * (t - start)) if speed > 0 else (W - 20 + speed * (t - start))
            if t >= start and 15 < x < W - 15:
                things.append(Thing(track, x, y, size, (30 * track, 200, 90)))
        name = f"{seed}_{rng.integers(1 << 40):012x}.jpg"
        truth[name] = things
        if cloud:
            light = {**(light or {}), name: shade(t / (frames - 1))}
    truth.update(extra or {})
    root.mkdir(parents=True, exist_ok=True)
    for name, things in truth.items():
        (root / name).write_bytes(
            frame(bg, things, rng, (light or {}).get(name, float(rng.uniform(0.98, 1.02))), shake)
        )
    return truth


def shade(progress: float) -> np.ndarray:
    """A cloud's shade: a soft diagonal band a quarter of the frame wide, 75% light at its
    middle, PROGRESS (0..1) of its way across the frame. H x W x 1."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    along = (xx + 0.5 * yy) / (W + 0.5 * H)  # 0..1 across the frame, at an angle
    return (1 - 0.25 * np.exp(-0.5 * ((along - (1.4 * progress - 0.2)) / 0.1) ** 2))[..., None]


def judged(root: Path, names: list[str], cfg: ScenesConfig):  # noqa: ANN201 - a Scenes
    """The scene analysis of the files `names` under `root`, as the dedup run does it."""
    from refinery.runner.session import Embedder

    spec = Embedder("default", device="cpu").spec
    table = FeatureTable(names)
    for row, name in enumerate(names):
        table.put(row, extract(root / name, name, spec)[0])
    return analyse(Grays(root, table, spec), np.arange(len(names)), cfg)


PERSON = Thing(9, 200, 100, 22, (20, 20, 220))  # 22 px wide in a 480 px frame: under 5%


def standing(seed: int, count: int = 4) -> dict[str, list[Thing]]:
    """`count` frames of a person standing still: the same frame, `count` times."""
    return {f"{seed}_still_{k}.jpg": [Thing(0, 60, 200, 40, (200, 40, 40)), PERSON] for k in range(count)}


def test_an_object_3_percent_wide_moved_by_twice_its_width_is_another_frame(tmp_path: Path) -> None:
    width = 0.03 * W * 1.5  # the ellipse is 2/3 as wide as its size: 3% of the frame wide
    a = Thing(9, 200, 100, int(width), (20, 20, 220))
    b = Thing(9, 200 + 2 * (width / 1.5), 100, int(width), (20, 20, 220))
    scene_folder(tmp_path, 1, 30, {"a.jpg": [a], "b.jpg": [b]})
    names = sorted(p.name for p in tmp_path.iterdir())
    scenes = judged(tmp_path, names, ScenesConfig())
    ia, ib = names.index("a.jpg"), names.index("b.jpg")
    assert scenes.judged_by_scene(ia, ib)
    assert not scenes.same(ia, ib) and scenes.shift(ia, ib) == math.inf  # no longer near itself: came and went


def test_the_same_things_under_fresh_noise_and_5_percent_more_light_are_one_frame(tmp_path: Path) -> None:
    scene_folder(tmp_path, 2, 30, {"a.jpg": [PERSON], "b.jpg": [PERSON]}, light={"a.jpg": 1.0, "b.jpg": 1.05})
    names = sorted(p.name for p in tmp_path.iterdir())
    scenes = judged(tmp_path, names, ScenesConfig())
    ia, ib = names.index("a.jpg"), names.index("b.jpg")
    assert scenes.judged_by_scene(ia, ib) and scenes.same(ia, ib)
    assert scenes.shift(ia, ib) < 0.05


def test_a_thin_person_who_swayed_is_the_same_frame_and_one_who_stepped_is_not(tmp_path: Path) -> None:
    """Displacement against the thing's own size, not an overlap of masks: a person a quarter
    as wide as tall moved sideways by 0.1 of their height keeps under half their mask in
    common (an overlap test calls them moved), yet stands where they stood; moved by 0.3 of
    their height they took a step."""
    thin = Thing(9, 240, 140, 60, (20, 20, 220))
    width = 60 / 1.5

    def person(x: float) -> list[Thing]:  # an ellipse as wide as a quarter of its height: two side by side
        return [Thing(9, x - width / 8, 140, 60, (20, 20, 220)), Thing(9, x + width / 8, 140, 60, (20, 20, 220))]

    extra = {"a.jpg": person(thin.x), "swayed.jpg": person(thin.x + 6), "stepped.jpg": person(thin.x + 18)}
    scene_folder(tmp_path, 12, 30, extra)
    names = sorted(p.name for p in tmp_path.iterdir())
    scenes = judged(tmp_path, names, ScenesConfig())
    a, swayed, stepped = (names.index(n) for n in ("a.jpg", "swayed.jpg", "stepped.jpg"))
    assert scenes.judged_by_scene(a, swayed) and scenes.judged_by_scene(a, stepped)
    assert 0.05 < scenes.shift(a, swayed) <= 0.15 and scenes.same(a, swayed)
    assert 0.2 < scenes.shift(a, stepped) < 0.5 and not scenes.same(a, stepped)
    tighter = judged(tmp_path, names, ScenesConfig(max_shift=0.05))
    assert not tighter.same(a, swayed)


def box_frame(*boxes: tuple[int, int, int, int]) -> Front:
    """A frame whose foreground is the given filled boxes (y0, x0, y1, x1)."""
    regions = tuple(Region(y0, x0, y1, x1, (y1 - y0) * (x1 - x0)) for y0, x0, y1, x1 in boxes)
    return Front(regions, 0.1, 0.1)


def test_shift_is_the_largest_move_of_a_thing_over_its_own_size() -> None:
    person = (100, 50, 160, 70)  # 60 tall, 20 wide
    assert shift(box_frame(), box_frame(), 0.15) == 0.0
    assert shift(box_frame(person), box_frame(), 0.15) == math.inf  # went
    assert shift(box_frame(person), box_frame(person), 0.15) == 0.0
    assert shift(box_frame(person), box_frame((100, 56, 160, 76)), 0.15) == pytest.approx(0.1)  # 6 px of 60
    assert shift(box_frame(person), box_frame((100, 90, 160, 110)), 0.15) == math.inf  # 40 px away: another
    # grew by 12 px (a fifth): moved a tenth, measured on the smaller
    assert shift(box_frame(person), box_frame((94, 50, 166, 70)), 0.15) == pytest.approx(0.1)
    # split in two by a lamp post in one frame: one thing, in place
    assert shift(box_frame(person), box_frame((100, 50, 160, 58), (100, 62, 160, 70)), 0.15) == 0.0
    # the largest move counts: one still, one moved by a third of its size
    still, moved = (10, 10, 40, 30), (10, 200, 40, 220)
    assert shift(box_frame(still, moved), box_frame(still, (10, 210, 40, 230)), 0.15) == pytest.approx(1 / 3)
    # a newcomer beside a standing person is a thing of its own that came
    assert shift(box_frame(person), box_frame(person, (10, 200, 40, 220)), 0.15) == math.inf


def test_a_fragment_beside_a_thing_is_part_of_its_move_not_a_thing_that_came() -> None:
    """A big thing that sways leaves slivers and crumbs along its outline that come and go
    from frame to frame: a region within max_shift of a thing's size of its box is part of
    that thing, not a newcomer; one further off is."""
    head = (40, 100, 190, 200)  # 150 tall
    crumb_beside = (45, 203, 50, 208)  # 3 px right of its box: within 0.15 x 150
    crumb_far = (45, 240, 50, 245)  # 40 px off
    assert shift(box_frame(head), box_frame(head, crumb_beside), 0.15) < 0.15
    assert shift(box_frame(head), box_frame(head, crumb_far), 0.15) == math.inf


def assert_one_scene_same_unless_moved(root: Path, one: str, same: str, moved: str) -> None:
    """Every file under `root` is a frame of one scene; `one` and `same` (the same things) are
    one frame, `one` and `moved` (a thing moved by twice its width) are not."""
    names = sorted(p.name for p in root.iterdir())
    scenes = judged(root, names, ScenesConfig())
    assert scenes.count == 1 and len(scenes.frames) == len(names)
    a, b, other = (names.index(n) for n in (one, same, moved))
    assert scenes.same(a, b) and scenes.shift(a, b) < 0.05
    assert not scenes.same(a, other)


def test_a_cloud_shade_crossing_the_view_is_light_not_foreground(tmp_path: Path) -> None:
    """As a cloud's shade crosses a fixed camera's view, every frame stays in the camera's
    scene, and a person in the shade is the same frame as the person in full light; moved
    by twice their width, they are not."""
    moved = Thing(9, PERSON.x + 2 * PERSON.size / 1.5, PERSON.y, PERSON.size, PERSON.colour)
    scene_folder(
        tmp_path,
        7,
        40,
        {"shaded.jpg": [PERSON], "lit.jpg": [PERSON], "moved.jpg": [moved]},
        light={"shaded.jpg": shade(0.3), "lit.jpg": 1.0, "moved.jpg": shade(0.3)},
        cloud=True,
    )
    assert_one_scene_same_unless_moved(tmp_path, "shaded.jpg", "lit.jpg", "moved.jpg")


def test_a_camera_shaken_by_3_px_keeps_its_view_still(tmp_path: Path) -> None:
    """Every frame of a fixed camera over a busy background shifted by up to 3 px (480 px
    across): frames are lined up on the background before their foregrounds are taken, so the
    same pale person is the same frame, however the camera shook, and moved by twice their
    width is not."""
    pale = Thing(9, PERSON.x, PERSON.y, PERSON.size, (150, 150, 150))  # little contrast with the dots
    moved = Thing(9, pale.x + 2 * pale.size / 1.5, pale.y, pale.size, pale.colour)
    scene_folder(tmp_path, 8, 40, {"a.jpg": [pale], "b.jpg": [pale], "moved.jpg": [moved]}, shake=3.0, dots=True)
    assert_one_scene_same_unless_moved(tmp_path, "a.jpg", "b.jpg", "moved.jpg")


@pytest.mark.parametrize("shape", [(180, 320), (235, 320), (320, 181), (320, 320), (17, 320), (320, 9), (3, 3)])
def test_a_background_of_any_size_judges_a_frame_of_its_size(shape: tuple[int, int]) -> None:
    """The light is measured on a grid of cells; a frame whose sides are no multiple of a cell
    (Megamind.avi is 320x235 at the stages' size), or smaller than one, is judged whole."""
    rng = np.random.default_rng(0)
    base = rng.uniform(30, 220, shape).astype(np.float32)
    frames = [base * rng.uniform(0.9, 1.1) + rng.normal(0, 2, shape).astype(np.float32) for _ in range(5)]
    background = Background.learn(frames, ScenesConfig())
    assert background.median.shape == shape
    assert background.frame(frames[0], ScenesConfig()).foreground < 0.05


def test_frames_are_lined_up_only_where_the_camera_shook() -> None:
    """A camera none of whose sampled frames moved is taken as still (its frames are not
    registered); one whose frames moved by 2 px is lined up, and a moved frame of it shows
    nothing in front."""
    rng = np.random.default_rng(3)
    bg = cv2.GaussianBlur(rng.uniform(20, 235, (180, 320)).astype(np.float32), (0, 0), 2)

    def shot(dx: float) -> np.ndarray:
        moved = cv2.warpAffine(
            bg, np.array([[1, 0, dx], [0, 1, 0]], np.float32), (320, 180), borderMode=cv2.BORDER_REPLICATE
        )
        return moved + rng.normal(0, 1.5, bg.shape).astype(np.float32)

    still = Background.learn([shot(0) for _ in range(12)], ScenesConfig())
    assert still.aligner.edges is None
    shaken = Background.learn([shot(float(rng.uniform(-2, 2))) for _ in range(12)], ScenesConfig())
    assert shaken.aligner.edges is not None
    assert shaken.frame(shot(2.0), ScenesConfig()).foreground < 0.01


def test_what_a_lined_up_frame_took_from_outside_itself_is_no_foreground() -> None:
    """A frame the camera's shake moved by 8 px is moved back; the strip it then lacks is
    filled from its own edge, which is no evidence: a bright band along the view's border
    that the strip hides is not something in front."""
    rng = np.random.default_rng(4)
    bg = cv2.GaussianBlur(rng.uniform(20, 235, (180, 320)).astype(np.float32), (0, 0), 2)
    bg[:, 310:] = 250.0

    def shot(dx: float) -> np.ndarray:
        moved = cv2.warpAffine(
            bg, np.array([[1, 0, dx], [0, 1, 0]], np.float32), (320, 180), borderMode=cv2.BORDER_REPLICATE
        )
        return moved + rng.normal(0, 1.5, bg.shape).astype(np.float32)

    shaken = Background.learn([shot(float(rng.uniform(-2, 2))) for _ in range(12)], ScenesConfig())
    assert shaken.frame(shot(-8.0), ScenesConfig()).regions == ()


def test_a_stack_of_frames_is_judged_as_each_frame_alone() -> None:
    """Background.frames measures a stack at once: the same regions, to the pixel, as one frame
    at a time - shaken, under a cloud's shade, with things in front, a cell too dark to read
    the light in, and a black frame (one gain for all)."""
    rng = np.random.default_rng(5)
    bg = cv2.GaussianBlur(rng.uniform(20, 235, (180, 320)).astype(np.float32), (0, 0), 2)
    bg[:30, :40] = 4.0  # unlit: no light is read there

    def shot(dx: float, light: float | np.ndarray = 1.0, things: int = 0) -> np.ndarray:
        moved = cv2.warpAffine(
            bg, np.array([[1, 0, dx], [0, 1, 0]], np.float32), (320, 180), borderMode=cv2.BORDER_REPLICATE
        )
        for _ in range(things):
            y, x = rng.integers(10, 160), rng.integers(10, 300)
            moved[y : y + 12, x : x + 8] = rng.uniform(0, 255)
        return moved * light + rng.normal(0, 1.5, bg.shape).astype(np.float32)

    cfg = ScenesConfig()
    background = Background.learn([shot(float(rng.uniform(-2, 2))) for _ in range(12)], cfg)
    frames = [
        shot(float(rng.uniform(-2, 2)), 1.0 if k % 3 else cv2.resize(shade(k / 12)[..., 0], (320, 180)), things=k % 4)
        for k in range(12)
    ] + [np.zeros((180, 320), np.float32)]
    alone = [background.frame(f, cfg) for f in frames]
    stacked = background.frames(frames, cfg)
    assert [(f.boxes, [r.area for r in f.regions]) for f in stacked] == [
        (f.boxes, [r.area for r in f.regions]) for f in alone
    ]
    assert sum(len(f.regions) for f in alone) >= 10


def test_a_background_holds_its_median_not_the_stack_it_came_from() -> None:
    """A scene's median (and the noise from it) is the per-pixel middle value of its sample,
    in an array of its own: a view into the sample's sorted copy kept 64 frames alive per
    background (15 MB at 320x180)."""
    rng = np.random.default_rng(7)
    stack = rng.uniform(0, 255, (64, 18, 32)).astype(np.float32)
    median = pixel_median(stack)
    np.testing.assert_array_equal(median, np.sort(stack, axis=0)[32])
    assert median.base is None or median.base.nbytes <= median.nbytes


def test_leader_clustering_puts_each_picture_with_a_leader_it_matches() -> None:
    """A picture joins a view whose leader it matches (within view_difference), and no leader
    matches a leader made before it: 1,500 thumbnails of 12 views, busy and in shade."""
    rng = np.random.default_rng(6)
    views = rng.uniform(20, 235, (12, 16, 16))
    thumbs = views[rng.integers(0, 12, 1500)] * rng.uniform(0.9, 1.1, (1500, 1, 1))
    thumbs += rng.normal(0, 4, thumbs.shape) + (rng.random((1500, 16, 16)) < 0.05) * 80
    looks = _ViewFeatures.of(np.clip(thumbs, 0, 255).astype(np.uint8).reshape(1500, 256))
    label = _leaders(looks, 0.05)
    leaders = [
        int(np.flatnonzero(label == view)[np.argmin(looks.level[label == view])]) for view in range(label.max() + 1)
    ]
    assert 12 <= len(leaders) < 1500
    for view, leader in enumerate(leaders):
        assert (_distances(looks[np.flatnonzero(label == view)], looks[[leader]]) <= 0.05).all()
        assert (_distances(looks[leaders[:view]], looks[[leader]]) > 0.05).all()


def test_a_view_of_too_few_pictures_is_no_scene_unless_told(tmp_path: Path) -> None:
    scene_folder(tmp_path, 3, 8)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert judged(tmp_path, names, ScenesConfig()).count == 0  # 8 pictures: judged as pictures
    assert judged(tmp_path, names, ScenesConfig(mode="frames")).count == 1
    assert judged(tmp_path, names, ScenesConfig(mode="crops", min_frames=2)).count == 0


def person_at(x: float) -> list[Thing]:
    """A person seen by a webcam: shoulders, a face and its eyes, 230 px tall in a 270 px frame."""
    return [
        Thing(0, x, 215, 150, (40, 60, 170)),
        Thing(0, x, 110, 120, (225, 180, 150)),
        Thing(0, x - 18, 95, 14, (30, 30, 30)),
        Thing(0, x + 18, 95, 14, (30, 30, 30)),
    ]


def webcam_folder(root: Path, frames: int) -> dict[str, tuple[float, bool]]:
    """A fixed webcam on a person who fills most of its height and sways (within 6% of their
    height, up to 7 px a frame), a small thing passing behind them in a quarter of the frames:
    {name: (the person's x, whether the thing is in the frame)}. Names in random order."""
    rng = np.random.default_rng(21)
    bg = background(21)
    truth: dict[str, tuple[float, bool]] = {}
    root.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        x = 240 + 14 * math.sin(t / 2)
        passing = frames // 2 <= t < frames // 2 + frames // 4
        things = [Thing(1, 60 + 6 * (t - frames // 2), 50, 24, (250, 250, 40))] if passing else []
        things += person_at(x)
        name = f"cam_{rng.integers(1 << 40):012x}.jpg"
        (root / name).write_bytes(frame(bg, things, rng))
        truth[name] = (x, passing)
    return truth


def test_a_person_filling_a_webcam_is_judged_by_what_stands_in_front(tmp_path: Path) -> None:
    """A talking head's person spans most of the frame, as an object on a crop does; yet a
    camera filming gives frames in quick succession (nearly every one has a twin), so the
    view is judged by the scene test: the person swaying is one frame, a small thing that
    passed behind them is not."""
    truth = webcam_folder(tmp_path, 40)
    names = sorted(truth)
    scenes = judged(tmp_path, names, ScenesConfig())
    assert len(scenes.frames) == len(names)
    alone = [names.index(n) for n in names if not truth[n][1]]
    passing = [names.index(n) for n in names if truth[n][1]]
    assert sum(scenes.same(alone[0], k) for k in alone[1:]) >= 0.5 * (len(alone) - 1)  # 20 of 29 today
    assert not any(scenes.same(alone[0], k) for k in passing)


def test_big_objects_on_one_background_window_are_crops_not_a_camera(tmp_path: Path) -> None:
    """Crops cut on one background window, each another big object: no frame has a twin, so
    the view is judged by the picture test (a different object at the same place is no
    swaying person)."""
    rng = np.random.default_rng(22)
    bg = background(22)
    for k in range(24):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        things = [Thing(k, 240 + rng.uniform(-20, 20), 135, int(rng.integers(170, 230)), colour)]
        (tmp_path / f"crop_{k:02d}.jpg").write_bytes(frame(bg, things, rng))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert judged(tmp_path, names, ScenesConfig()).frames == {}


def removed_and_report(root: Path, tmp_path: Path, *args: str) -> tuple[set[str], list[dict]]:
    report = tmp_path / "report.json"
    proc = run_cli("dedup", str(root), "--report", str(report), "--device", "cpu", *args)
    assert proc.returncode == 0, proc.stderr
    files = json.loads(report.read_text())["files"]
    return {f["path"] for f in files if f["decision"] == "remove"}, files


def same_things(a: list[Thing], b: list[Thing], tolerance: float) -> bool:
    """The shared scorer's rule (../shared/bench/score_sequences.py, `relation`): the same
    objects, each moved by at most `tolerance` of its size."""
    if len(a) != len(b):
        return False
    where = {t.track: t for t in b}
    return all(
        t.track in where and max(abs(t.x - where[t.track].x), abs(t.y - where[t.track].y)) <= tolerance * t.size
        for t in a
    )


def test_two_cameras_never_share_a_group(tmp_path: Path) -> None:
    """Two cameras, each a scene; even with a semantic threshold that makes their frames
    alike, no group holds frames of both."""
    root = tmp_path / "frames"
    camera = {
        **{name: 1 for name in scene_folder(root, 4, 24, standing(4))},
        **{name: 2 for name in scene_folder(root, 5, 24, standing(5))},
    }
    _, files = removed_and_report(root, tmp_path, "--set", "semantic.threshold=0.5")
    groups: dict[int, set[int]] = {}
    for f in files:
        if f["group"] is not None:
            groups.setdefault(f["group"], set()).add(camera[f["path"]])
    assert groups and all(len(cameras) == 1 for cameras in groups.values())


def test_a_sequence_is_thinned_and_loses_no_frame(tmp_path: Path) -> None:
    """End to end through the CLI: frames where the people stand the same are removed, and
    every removed frame is still shown by a kept one (each object within half its size),
    the shared scorer's rule for a lost frame."""
    root = tmp_path / "frames"
    truth = scene_folder(root, 6, 40, standing(6, 6))
    removed, files = removed_and_report(root, tmp_path)
    kept = [name for name in truth if name not in removed]
    lost = [name for name in removed if not any(same_things(truth[name], truth[k], 0.5) for k in kept)]
    assert lost == []
    assert len(set(standing(6, 6)) & removed) == 5  # thinned
    by_scene = [f for f in files if f["decision"] == "remove" and f["test"] == "scene"]
    assert by_scene and all("the same things at the same places" in f["reason"] for f in by_scene)
    assert all(f["kept_as"] not in removed for f in files if f["decision"] == "remove")


def test_mode_crops_judges_frames_as_pictures(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    scene_folder(root, 7, 24)
    _, files = removed_and_report(root, tmp_path, "--set", "scenes.mode=crops")
    assert all(f["test"] in (None, "picture") for f in files)
    assert load_config().scenes.mode == "auto"


@pytest.mark.parametrize("mode", ["auto", "frames"])
def test_a_frame_is_never_removed_as_a_copy_of_another_cameras_frame(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "frames"
    scene_folder(root, 8, 24, standing(8))
    scene_folder(root, 9, 24, standing(9))
    _, files = removed_and_report(root, tmp_path, "--set", f"scenes.mode={mode}", "--set", "semantic.threshold=0.5")
    seed = {f["path"]: f["path"].split("_")[0] for f in files}
    assert all(seed[f["path"]] == seed[f["kept_as"]] for f in files if f["kept_as"])


def test_a_reason_names_the_file_that_stays_and_the_evidence_against_it(tmp_path: Path) -> None:
    """A byte copy of a picture that is itself removed as a duplicate of a third one: its
    reason says first that it is its twin's bytes, then why the twin goes - against the third,
    its keeper, with what was measured against it (issue 28: a user reads "byte-identical to
    x.jpg" before anything else)."""
    from conftest import next_frame

    root = tmp_path / "photos"
    root.mkdir()
    x = draw_picture(11, (320, 240))
    x.save(root / "x.jpg", quality=92)
    (root / "x_copy.jpg").write_bytes((root / "x.jpg").read_bytes())
    next_frame(x).resize((400, 300)).save(root / "y.jpg", quality=92)  # larger: the keep rule keeps it
    _, files = removed_and_report(root, tmp_path, "--set", "semantic.threshold=0.9")
    line = {f["path"]: f for f in files}
    assert line["x.jpg"]["kept_as"] == line["x_copy.jpg"]["kept_as"] == "y.jpg"
    copy = line["x_copy.jpg"]
    assert copy["stage"] == "exact"
    assert copy["reason"] == f"identical bytes to x.jpg (SHA-256), which goes too: {line['x.jpg']['reason']}"
    assert line["x.jpg"]["reason"].startswith("looks like y.jpg (cosine")
    assert copy["scores"]["cosine"] >= 0.9 and copy["test"] == "picture"  # measured against its keeper


def wide_view(seed: int, width: int) -> np.ndarray:
    """A street a camera pans over: WIDTH px wide, H tall, shapes everywhere (RGB uint8)."""
    rng = np.random.default_rng(seed)
    im = Image.fromarray(np.asarray(draw_picture(seed, (width, H))))
    draw = ImageDraw.Draw(im)
    for _ in range(width // 25):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, H))
        w, h = int(rng.integers(30, 120)), int(rng.integers(30, 120))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
    return np.asarray(im)


def thumb(pixels: np.ndarray) -> np.ndarray:
    """The 16x16 gray thumbnail a dedup run keeps of a picture."""
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (16, 16), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("offset", [0, 24, 72, 110])
def test_view_match_finds_how_far_the_camera_panned(offset: int) -> None:
    street = wide_view(31, W + 200)
    moved, clean = view_match(thumb(street[:, :W]), thumb(street[:, offset : offset + W]), W, H)
    assert clean and moved == pytest.approx(offset / W, abs=0.03)


def test_view_matches_of_many_pairs_are_each_pair_alone_and_opencv_correlations() -> None:
    """The batched search gives each pair what it gives that pair alone, and its correlation
    is OpenCV's TM_CCOEFF_NORMED (to float32's rounding), whose peak it reports as clean."""
    street = wide_view(33, W + 200)
    views = [thumb(street[:, x : x + W]) for x in range(0, 200, 8)]
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(views), (3000, 2))  # three batches of VIEW_PAIRS, the last one short
    a, b = (np.stack([views[k].ravel() for k in pairs[:, side]]) for side in (0, 1))
    moved, clean = view_matches(a, b, np.full(len(a), W), np.full(len(a), H))
    for k in range(0, len(pairs), 97):
        assert view_match(a[k].tobytes(), b[k], W, H) == (moved[k], clean[k])
    assert clean.mean() > 0.5 and moved.max() < 0.3
    x, y = views[0].astype(np.float32), views[3].astype(np.float32)
    peak, _, _ = _middle_in(y[None], x[None])
    assert peak[0] == pytest.approx(cv2.matchTemplate(x, y[4:12, 4:12], cv2.TM_CCOEFF_NORMED).max(), abs=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_is_numpys(dtype: type) -> None:
    """features.median stands in for np.median where a frame is lined up: the same value and
    type, odd and even counts (the mean of the two middles), ties included."""
    rng = np.random.default_rng(5)
    for count in (1, 2, 3, 4, 7, 10, 2879, 2880):
        values = (rng.integers(0, 50, count) * rng.random()).astype(dtype)
        assert median(values) == np.median(values) and median(values).dtype == np.median(values).dtype


def test_view_match_finds_no_pan_in_a_mirrored_picture() -> None:
    picture = wide_view(32, W)
    assert not view_match(thumb(picture), thumb(picture[:, ::-1].copy()), W, H)[1]


def test_frames_of_a_panning_camera_are_one_picture_only_a_little_apart(tmp_path: Path) -> None:
    """A camera panning over a street: three frames 4 px apart, then three more a fifth of
    the frame further on (within the quarter of a frame that views.view_match follows).
    However alike the picture test finds them all (a semantic threshold of 0.5), a frame
    goes only for a keeper the camera panned at most max_shift (0.15) of the frame away from."""
    street = wide_view(33, W + 200)
    root = tmp_path / "pan"
    root.mkdir()
    rng = np.random.default_rng(33)
    where = {}
    for offset in (0, 4, 8, 104, 108, 112):
        name = f"{rng.integers(1 << 40):012x}.jpg"
        pixels = np.clip(street[:, offset : offset + W] + rng.normal(0, 2.0, (H, W, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / name, "JPEG", quality=90)
        where[name] = offset
    removed, files = removed_and_report(root, tmp_path, "--set", "semantic.threshold=0.5")
    assert len(removed) == 4  # each three frames a few px apart are one picture
    assert all(abs(where[f["path"]] - where[f["kept_as"]]) <= 8 for f in files if f["decision"] == "remove")


@pytest.mark.parametrize("still", [0, 24])
def test_a_walker_seen_by_a_panning_camera_is_not_lost(tmp_path: Path, still: int) -> None:
    """A camera panning 3 px a frame over a street while someone walks 6 px a frame across
    it: the frames' views are alike, but the walker is somewhere else in each. Each frame is
    measured against its own background (its neighbours lined up on it), so no frame goes
    for a keeper where the walker stands more than half their size away (they would be lost)
    - nor for one of the frames where the camera then stands still (a scene of its own)."""
    street = wide_view(34, W + 200)
    root = tmp_path / "pan"
    root.mkdir()
    rng = np.random.default_rng(34)
    walker_at = {}
    for t in range(40 + still):
        view = 3 * min(t, 39)
        x = 40 + 6 * t - view  # where the walker stands in the frame
        im = Image.fromarray(street[:, view : view + W].copy())
        ImageDraw.Draw(im).ellipse([x - 10, 150, x + 10, 180], fill=(250, 30, 30))
        pixels = np.clip(np.asarray(im, np.float32) + rng.normal(0, 2.0, (H, W, 3)), 0, 255).astype(np.uint8)
        name = f"{rng.integers(1 << 40):012x}.jpg"
        Image.fromarray(pixels).save(root / name, "JPEG", quality=90)
        walker_at[name] = x
    removed, files = removed_and_report(root, tmp_path)
    apart = [abs(walker_at[f["path"]] - walker_at[f["kept_as"]]) for f in files if f["decision"] == "remove"]
    assert max(apart, default=0) <= 15
