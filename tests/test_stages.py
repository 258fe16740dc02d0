"""Each funnel stage on its own: features, quality, exact, near, semantic, keep, grouping."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import draw_picture, extract
from refinery.ann import similar_pairs
from refinery.config import Config, NearConfig, QualityConfig
from refinery.dedup.groups import choose_keeper, components, star_groups
from refinery.dedup.stages.near import near_pairs
from refinery.dedup.stages.quality import judge
from refinery.dedup.vectors import VectorStore
from refinery.features import Features, thumb_correlation
from refinery.io.scan import find_images, scan
from refinery.spec import ModelSpec

SPEC = ModelSpec.load(Path(__file__).parent.parent / "refinery" / "models" / "default.json")


def features(path: str = "x.jpg", **kw: object) -> Features:
    base = dict(
        path=path,
        file_size=1000,
        sha256="0" * 64,
        width=640,
        height=480,
        sharpness=100.0,
        brightness=120.0,
        edge_density=0.05,
        dhash=0,
        phash=0,
        thumb=b"",
        edge_width=2.2,
        smear_width=2.6,
        smear_angle=0.0,
        cross_width=2.2,
        light=240.0,
        shade=20.0,
        white=0.0,
        white_edge=1.0,
        detail=0.5,
        noise=1.0,
    )
    base.update(kw)
    return Features(**base)  # type: ignore[arg-type]


def save(im: Image.Image, path: Path, **kw: object) -> Path:
    im.save(path, **kw)
    return path


@pytest.mark.parametrize(
    "kw, says",
    [
        ({"detail": 0.001}, "blank: detail in 0.10% of it"),
        ({"light": 10.0}, "too dark: its brightest parts reach gray 10 of 255 (under 32)"),
        ({"light": 40.0, "noise": 2.0}, "too dark: its brightest parts reach gray 40 of 255, 20x its noise"),
        ({"light": 40.0, "noise": 0.5}, None),  # a dark but clean design: nothing lost in noise
        ({"shade": 200.0}, "burnt out: even its darkest detail is gray 200"),
        ({"shade": 180.0}, None),  # pale wood, a high-key picture
        ({"white": 0.6, "white_edge": 0.05}, "burnt out: 60% of it clipped to white, fading into the rest"),
        ({"white": 0.6, "white_edge": 0.05, "detail": 0.1}, None),  # a pale design with a white field
        ({"edge_width": 6.2, "smear_width": 7.0}, "blurred: even its sharpest edges are 6.2 px wide"),
        ({"edge_width": 4.1, "sharpness": 13.0}, "blurred: even its sharpest edges are 4.1 px wide (over 3.9 px"),
        ({"edge_width": 4.1, "sharpness": 60.0}, None),  # soft edges, but fine detail elsewhere: a soft scan
        ({"edge_width": 2.2, "sharpness": 3.0}, None),  # little fine detail, but crisp edges: a sky over a horizon
        ({"smear_width": 9.3, "smear_angle": 30.0}, "motion blur: edges smeared 9.3 px at 30 degrees"),
        # Soft across the smear too: a soft subject in front of one sharp pattern, no motion.
        ({"smear_width": 9.3, "cross_width": 7.0}, None),
        ({"smear_width": 9.3, "cross_width": 0.0}, None),  # nothing across it to compare with
        ({"white": 0.9, "white_edge": 0.9}, None),  # an object on a white background
        ({"clipped": 0.3, "clipped_colour": 0.25, "white_edge": 0.4}, "burnt out: 30% of it clipped to white, fading"),
        ({"clipped": 0.3, "clipped_colour": 0.0, "white_edge": 0.4}, None),  # colours fade to white together
        ({"clipped": 0.8, "clipped_colour": 0.25, "white_edge": 0.95}, None),  # a coloured object on white
        ({"brightness": 10.0, "light": 250.0}, None),  # a logo on black: its mean gray says nothing
        ({"edge_width": 0.0, "smear_width": 0.0}, None),  # no edge at all: smooth, not blurred
        ({}, None),
    ],
)
def test_quality_reasons_say_what_was_measured_against_what(kw: dict, says: str | None) -> None:
    reason = judge(features(**kw), QualityConfig())
    assert (reason is None) if says is None else (reason is not None and reason.text.startswith(says)), reason
    if reason is not None:  # the code a program reads says what the words say
        assert reason.text.startswith(reason.code.value.replace("_", " ") + ":"), reason
    assert judge(features(**kw), QualityConfig(enabled=False)) is None


def motion_blur(im: Image.Image, length: int, angle: float) -> Image.Image:
    import cv2

    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return Image.fromarray(cv2.filter2D(np.asarray(im), -1, kernel / kernel.sum()))


def test_quality_judges_real_pictures_by_the_detail_they_lost(tmp_path: Path) -> None:
    """Defects made from a drawn picture are caught; the same picture, an object on white and
    one on black pass whatever their mean gray level."""
    sharp = draw_picture(1, (320, 240))
    on_white, on_black = Image.new("RGB", (320, 240), "white"), Image.new("RGB", (320, 240), "black")
    for canvas in (on_white, on_black):
        canvas.paste(draw_picture(5, (90, 70)), (115, 85))

    def judged(im: Image.Image, name: str) -> str | None:
        reason = judge(extract(save(im, tmp_path / name), name, SPEC)[0], QualityConfig())
        return reason.text if reason else None

    assert judged(sharp, "s.png") is None
    assert judged(on_white, "w.png") is None and judged(on_black, "k.png") is None
    assert (judged(sharp.filter(ImageFilter.GaussianBlur(4)), "b.png") or "").startswith("blurred")
    assert (judged(motion_blur(sharp, 15, 30), "m.png") or "").startswith("motion blur")
    assert (judged(Image.eval(sharp, lambda v: v // 20), "d.png") or "").startswith("too dark")
    assert (judged(Image.eval(sharp, lambda v: 230 + v // 10), "o.png") or "").startswith("burnt out")
    # Exposure pushed past white in colour (each channel times 3, clipped) fades into its white
    # through clipped colours; the same picture made high-key (every channel moved toward
    # white by the same curve) keeps its colours to the end.
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    photo = np.stack([120 + 90 * np.sin(x / 37), 120 + 90 * np.sin(y / 29 + 1), 120 + 90 * np.sin((x + y) / 53 + 2)], 2)
    photo[(x % 97 < 3) | (y % 89 < 3)] = 30  # a sharp dark grid over smooth colours: not blurred
    blown = Image.fromarray(np.minimum(255, 2.5 * photo).astype(np.uint8))
    gray = photo.mean(axis=2, keepdims=True) / 255
    high_key = Image.fromarray((255 - (255 - photo) * (1 - gray) ** 2).astype(np.uint8))
    assert judged(Image.fromarray(photo.astype(np.uint8)), "c.png") is None
    assert "through clipped colours" in (judged(blown, "x.png") or "")
    assert judged(high_key, "h.png") is None
    assert (judged(Image.new("RGB", (320, 240), (90, 120, 60)), "f.png") or "").startswith("blank")


def test_hashes_and_thumbnails_survive_resizing_and_reencoding(tmp_path: Path) -> None:
    im = draw_picture(2, (320, 240))
    a, _ = extract(save(im, tmp_path / "a.png"), "a.png", SPEC)
    b, _ = extract(save(im.resize((160, 120)), tmp_path / "b.jpg", quality=40), "b.jpg", SPEC)
    c, _ = extract(save(draw_picture(3, (320, 240)), tmp_path / "c.png"), "c.png", SPEC)
    assert bin(a.phash ^ b.phash).count("1") <= 4 and bin(a.dhash ^ b.dhash).count("1") <= 6
    assert thumb_correlation(a.thumb, b.thumb) > 0.99
    assert thumb_correlation(a.thumb, c.thumb) < 0.9
    assert a.sha256 != b.sha256 and (a.width, b.width) == (320, 160)


def test_fast_paths_give_what_opencv_gives() -> None:
    """dHash's area means and the Laplacian's variance from int16 are shortcuts: they must give
    the figures OpenCV's own INTER_AREA and float64 Laplacian give, on any picture size."""
    import cv2

    from refinery.features import Edges, area_mean, laplacian_variance

    rng = np.random.default_rng(0)
    for size in [(320, 240), (301, 199), (17, 320), (9, 8), (10, 300)]:  # shrinking, as dHash does
        gray = np.asarray(draw_picture(int(rng.integers(100)), (320, 240)).convert("L").resize(size))
        noisy = np.clip(gray + rng.normal(0, 20, gray.shape), 0, 255).astype(np.uint8)
        for g in (gray, noisy):
            area = cv2.resize(g, (9, 8), interpolation=cv2.INTER_AREA).astype(np.float32)
            assert np.abs(area_mean(g, 9, 8) - area).max() <= 0.5 + 1e-3, size
            _, std = cv2.meanStdDev(cv2.Laplacian(g, cv2.CV_64F))
            assert laplacian_variance(g) == pytest.approx(float(std[0, 0]) ** 2, rel=1e-9)
            # Canny on the shared gradients is Canny on the picture.
            edges = Edges.of(g)
            assert set(edges.centres.tolist()) == set(np.flatnonzero(cv2.Canny(g, 20, 40)).tolist())


def test_edge_density_drops_when_a_copy_is_blurred_or_smeared() -> None:
    """The keep rule prefers the copy with the most strong edges: a blurred or smeared copy of a
    picture keeps weak edges (its gentle slopes), and must still count fewer."""
    from refinery.features import Edges, gray_work

    sharp = draw_picture(4, (640, 480))
    for soft in (sharp.filter(ImageFilter.GaussianBlur(2)), motion_blur(sharp, 9, 20)):
        assert Edges.of(gray_work(soft)).density() < 0.8 * Edges.of(gray_work(sharp)).density()


def hashes(*values: int) -> np.ndarray:
    return np.array(values, np.uint64)


def test_near_pairs_radius_is_inclusive_in_either_hash() -> None:
    cfg = NearConfig(max_phash=2, max_dhash=1)
    far = 0xFFFF_FFFF_0000_0000
    thumbs = np.tile(np.arange(256, dtype=np.uint8), (4, 1))  # all alike: only the hashes decide
    pairs = near_pairs(
        hashes(0, 0b11, far, 0b111),  # 0-1: pHash 2 bits; 1-3: 1 bit; 0-3: 3 bits
        hashes(0, far, 0b1, 0b11 | far),
        thumbs,
        cfg,
    )  # 0-2: dHash 1 bit
    assert {tuple(p) for p in pairs.tolist()} == {(0, 1), (0, 2), (1, 3)}


def test_near_pairs_need_the_thumbnails_to_agree() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, 256).astype(np.uint8)
    thumbs = np.stack(
        [
            base,
            np.clip(base.astype(int) + 2, 0, 255).astype(np.uint8),  # same picture
            rng.integers(0, 256, 256).astype(np.uint8),  # another object, same hashes
            np.full(256, 7, np.uint8),
            np.full(256, 7, np.uint8),
            np.full(256, 9, np.uint8),
        ]
    )
    pairs = near_pairs(np.zeros(6, np.uint64), np.zeros(6, np.uint64), thumbs, NearConfig())
    assert pairs.tolist() == [[0, 1], [3, 4]]  # flat thumbnails: only equal ones


def test_near_pairs_beyond_exact_up_to_are_the_same_pairs() -> None:
    """The IVF search over thumbnails finds what the hash search + confirmation finds:
    groups of near copies among pictures with close hashes but other thumbnails."""
    rng = np.random.default_rng(1)
    n_groups = 120
    base = rng.integers(0, 256, (n_groups, 256))
    copies = [np.clip(base + rng.integers(-3, 4, base.shape), 0, 255) for _ in range(3)]
    impostors = np.clip(base // 2 + rng.integers(0, 128, base.shape), 0, 255)  # same hashes, other picture
    flat = np.full((4, 256), 5)
    thumbs = np.concatenate([base, *copies, impostors, flat]).astype(np.uint8)
    group_hash = rng.integers(0, 2**63, n_groups, dtype=np.int64).astype(np.uint64)
    ph = np.concatenate([group_hash] * 5 + [np.zeros(4, np.uint64)])
    ph[n_groups : 4 * n_groups] ^= np.uint64(1) << rng.integers(0, 64, 3 * n_groups).astype(np.uint64)
    dh = rng.integers(0, 2**63, len(ph), dtype=np.int64).astype(np.uint64)
    exact = near_pairs(ph, dh, thumbs, NearConfig())
    approx = near_pairs(ph, dh, thumbs, NearConfig(exact_up_to=0, nprobe=4))
    assert len(exact) == n_groups * 6 + 6  # each group of 4: 6 pairs; 4 equal flat thumbnails: 6
    assert exact.tolist() == approx.tolist()


def test_similar_pairs_uses_the_threshold() -> None:
    v = np.array([[1, 0, 0], [0.96, 0.28, 0], [0, 1, 0]], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    pairs = similar_pairs(v, 0.95)
    assert [(a, b) for a, b, _ in pairs] == [(0, 1)]
    assert pairs[0][2] == pytest.approx(0.96, abs=1e-4)


def test_blocked_search_on_disk_finds_what_one_search_in_memory_finds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(1000, 64)).astype(np.float32)
    v[500:] = v[:500] + 0.05 * rng.normal(size=(500, 64))  # 500 close pairs, across blocks
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    with VectorStore(64, tmp_path) as store:
        store.append(v[:300])
        assert store.append(v[300:]) == range(300, 1000)
        shuffled = rng.permutation(1000)
        np.testing.assert_array_equal(store.rows(shuffled), v[shuffled].astype(np.float16).astype(np.float32))
        in_memory = similar_pairs(v.astype(np.float16).astype(np.float32), 0.9)
        blocked = similar_pairs(lambda a, b: store.rows(np.arange(a, min(b, 1000))), 0.9, count=1000, block=128)
    assert len(in_memory) >= 500 and blocked == in_memory


def test_star_groups_cut_chains() -> None:
    # 0~1 and 1~2, but 0 and 2 are unlike: with keeper 0, 2 must not go as 0's duplicate.
    close = {(0, 1), (1, 2)}
    groups, splits = star_groups([(0, 1), (1, 2)], choose=min, close=lambda a, b: (min(a, b), max(a, b)) in close)
    assert [(g.keeper, g.subjects) for g in groups] == [(0, [1])]
    assert splits == 1  # 2 was released; alone, it is kept


def test_components() -> None:
    assert components([(0, 1), (1, 2), (4, 5)]) == [[0, 1, 2], [4, 5]]


def test_keep_rule_prefers_sharp_then_large_then_detailed_then_name() -> None:
    fs = [
        features("b.jpg", edge_density=0.09, sharpness=5.0),  # most detail but blurred
        features("c.jpg", edge_density=0.05),
        features("a.jpg", edge_density=0.07, width=320, height=240),  # downsized copy
        features("d.jpg", edge_density=0.06),
    ]
    assert choose_keeper([0, 1, 2, 3], fs, min_sharpness=10.0) == 3
    assert choose_keeper([1, 3], fs, 10.0) == 3
    assert choose_keeper([1, 1], fs, 10.0) == 1
    twins = [features("z.jpg"), features("y.jpg")]
    assert choose_keeper([0, 1], twins, 10.0) == 1  # ties go to the first name


def test_scan_finds_images_by_content(tmp_path: Path) -> None:
    draw_picture(0).save(tmp_path / "photo.dat", format="PNG")  # image with an odd name
    draw_picture(1).save(tmp_path / "b.JPG")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".hidden").mkdir()
    draw_picture(2).save(tmp_path / ".hidden" / "c.png")
    os.symlink(tmp_path / "b.JPG", tmp_path / "link.jpg")
    assert [p.name for p in find_images(tmp_path)] == ["b.JPG", "photo.dat"]


def test_scan_enters_folders_out_of_the_tree_only_when_asked_and_only_once(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    draw_picture(0).save(root / "a.jpg")
    draw_picture(1).save(outside / "b.jpg")
    (outside / "again").symlink_to(outside, target_is_directory=True)  # a loop through a folder link
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "out_too").symlink_to(outside, target_is_directory=True)

    plain = scan(root)
    assert [p.relative_to(root).as_posix() for p in plain.files] == ["a.jpg"]
    assert {s.path: s.decision for s in plain.skipped} == {"out": "skip", "out_too": "skip"}

    followed = scan(root, follow_symlinks=True)
    assert [p.relative_to(root).as_posix() for p in followed.files] == ["a.jpg", "out/b.jpg"]
    reasons = {s.path: s.reason for s in followed.skipped}
    assert set(reasons) == {"out/again", "out_too"} and all("already read" in r for r in reasons.values())


def test_default_config_file_matches_the_dataclasses() -> None:
    from refinery.config import load_config

    assert load_config() == Config()
    assert dataclasses.asdict(Config())["semantic"]["threshold"] > 0.9


def test_approximate_pairs_find_what_the_exact_search_finds() -> None:
    """Clusters of near copies among far pictures: the IVF search finds >= 99% of the exact
    pairs, and nothing the exact search would not (beyond float16 rounding)."""
    rng = np.random.default_rng(0)
    seeds = rng.normal(size=(400, 64)).astype(np.float32)
    copies = np.repeat(seeds, 8, axis=0) + rng.normal(0, 0.02, (3200, 64)).astype(np.float32)
    v = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    exact = {(i, j) for i, j, _ in similar_pairs(v, 0.95)}
    loose = {(i, j) for i, j, _ in similar_pairs(v, 0.948)}
    approx = {(i, j) for i, j, _ in similar_pairs(v, 0.95, exact_up_to=1000, nprobe=8, block=512)}
    assert len(exact) > 5000
    assert len(approx & exact) / len(exact) >= 0.99
    assert approx <= loose


def test_a_lossless_copy_stays_before_a_lossy_one_of_the_same_size(tmp_path: Path) -> None:
    """One photo as TIFF, BMP, PNG and WebP (lossy, quality 80): a lossless one stays - the
    WebP's artefacts must not pass for detail (a lossy WebP says nothing of its quality)."""
    photo = draw_picture(3, (480, 360)).filter(ImageFilter.DETAIL)
    names = ["p.tiff", "p.bmp", "p.png", "p.webp", "lossless.webp"]
    for name in names[:4]:
        save(photo, tmp_path / name, **({"quality": 80} if name.endswith("webp") else {}))
    save(photo, tmp_path / "lossless.webp", lossless=True)
    fs = [extract(tmp_path / name, name, SPEC)[0] for name in names]
    assert fs[3].compression > 0 and fs[4].compression == 0  # lossy WebP: unknown loss; lossless: none
    assert names[choose_keeper(range(4), fs, 10.0)] != "p.webp"
    assert choose_keeper([3, 4], fs, 10.0) == 4


def test_keep_policies_prefer_a_folder_then_the_policy_then_the_best() -> None:
    from refinery.config import KeepConfig
    from refinery.dedup.groups import KeepRule

    fs = [
        features("big.jpg", width=1280, height=960, file_size=900),
        features("old.jpg", file_size=500),
        features("new.jpg", file_size=700),
        features("originals/a.jpg", width=320, height=240),
    ]
    mtime = [200, 100, 300, 250]

    def keeper(**kw: object) -> str:
        return fs[KeepRule(fs, mtime, KeepConfig(**kw)).choose(range(4))].path  # type: ignore[arg-type]

    assert keeper() == keeper(policy="largest") == "big.jpg"
    assert keeper(policy="oldest") == "old.jpg" and keeper(policy="newest") == "new.jpg"
    assert keeper(prefer="originals", policy="newest") == "originals/a.jpg"  # the folder first
    rule = KeepRule(fs, mtime, KeepConfig(policy="oldest"))
    assert rule.why(1) == "kept: the oldest of its group" and KeepRule(fs, mtime, KeepConfig()).why(0) == ""
