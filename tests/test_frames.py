"""`refinery frames`: videos written by the tests (OpenCV's VideoWriter: MJPG in AVI, mp4v in
MP4) from known scenes, thinned while they are read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from test_review import browser  # noqa: F401  (a fixture)
from test_scenes import PERSON, Thing, background

from conftest import run_cli
from refinery.config import load_config

W, H, FPS = 480, 270, 10.0


def frame_pixels(bg: np.ndarray, things: list[Thing], rng: np.random.Generator) -> np.ndarray:
    """One BGR frame: the background, the things as ellipses, fresh noise."""
    image = bg.copy()
    for t in things:
        cv2.ellipse(image, (int(t.x), int(t.y)), (int(t.size / 3), int(t.size / 2)), 0, 0, 360, t.colour, -1)
    return np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)[..., ::-1].copy()


def scenes(standing: int = 20, walking: int = 14) -> list[list[Thing]]:
    """A person standing still for `standing` frames, then walking by twice their width a
    frame (14 frames cross the picture)."""
    parked = Thing(0, 60, 200, 40, (200, 40, 40))
    walk = [[parked, Thing(9, 40 + 30 * k, 100, 22, (20, 20, 220))] for k in range(walking)]
    return [[parked, PERSON]] * standing + walk


def write_video(path: Path, frames: list[list[Thing]], fourcc: str, cut_to: int = 0) -> Path:
    """The frames on one camera's background; with `cut_to`, on the background of that seed
    from there on (another shot)."""
    rng = np.random.default_rng(1)
    first, other = background(21), background(22)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (W, H))
    assert writer.isOpened()
    for k, things in enumerate(frames):
        writer.write(frame_pixels(other if cut_to and k >= cut_to else first, things, rng))
    writer.release()
    return path


@pytest.mark.parametrize(("fourcc", "suffix"), [("MJPG", ".avi"), ("mp4v", ".mp4")])
def test_the_frames_to_keep_are_written_with_their_times(tmp_path: Path, fourcc: str, suffix: str) -> None:
    video = write_video(tmp_path / f"cam{suffix}", scenes(), fourcc)
    out, report = tmp_path / "out", tmp_path / "r.json"
    proc = run_cli("frames", str(video), "--out", str(out), "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())["videos"][0]
    written = {w["frame"]: w for w in data["written"]}
    assert sum(1 for f in written if f < 20) == 1  # the person standing: one frame kept
    assert all(f in written for f in range(20, 34))  # walking by twice their width: every frame
    for w in data["written"]:
        assert w["name"] == f"cam_t{w['frame'] / FPS:010.3f}.jpg" and (out / w["name"]).is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(w["name"] for w in data["written"])
    span = data["skipped"][0]
    assert span["frames"] == 19 and span["kept_as"] in {w["name"] for w in data["written"]}
    assert span["start"] < span["end"] <= 1.9


def test_bad_videos_are_one_line_each_and_the_rest_goes_on(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.avi", scenes(5, 5), "MJPG")
    truncated = tmp_path / "truncated.avi"
    data = write_video(tmp_path / "long.avi", scenes(20, 20), "MJPG").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "empty.avi").write_bytes(b"")
    proc = run_cli(
        "frames",
        str(truncated),
        str(tmp_path / "notes.mp4"),
        str(tmp_path / "empty.avi"),
        str(good),
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert any("notes.mp4" in e for e in errors) and any("empty.avi" in e for e in errors)
    assert any("truncated.avi" in e for e in errors)
    assert any(p.name.startswith("good_t") for p in (tmp_path / "out").iterdir())


def test_a_frame_already_in_out_is_never_overwritten(tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", scenes(3, 0), "MJPG")
    out = tmp_path / "out"
    out.mkdir()
    (out / "cam_t000000.000.jpg").write_bytes(b"someone else's")
    proc = run_cli("frames", str(video), "--out", str(out), "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 3 and "not overwritten" in proc.stderr
    assert (out / "cam_t000000.000.jpg").read_bytes() == b"someone else's"
    assert json.loads((tmp_path / "r.json").read_text())["videos"][0]["taken"] == ["cam_t000000.000.jpg"]


def test_two_videos_of_one_name_keep_apart_and_a_second_run_writes_nothing_again(tmp_path: Path) -> None:
    """camA/clip.avi and camB/clip.avi: frames named camA_clip_t... and camB_clip_t... (the
    report says each video's name); the same run again finds every frame already there, byte
    for byte, says so in one line a video and exits 0."""
    videos = []
    for camera, seed in (("camA", 3), ("camB", 6)):
        (tmp_path / camera).mkdir()
        videos.append(write_video(tmp_path / camera / "clip.avi", scenes(seed, 4), "MJPG"))
    out, report = tmp_path / "out", tmp_path / "r.json"
    proc = run_cli("frames", *map(str, videos), "--out", str(out), "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())["videos"]
    assert [v["name"] for v in data] == ["camA_clip", "camB_clip"]
    assert all(w["name"].startswith(v["name"] + "_t") for v in data for w in v["written"])
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(first) == sum(len(v["written"]) for v in data) and "frames are named camA_clip_t" in proc.stdout

    again = run_cli("frames", *map(str, videos), "--out", str(out), "--report", str(report))
    assert again.returncode == 0 and "error" not in again.stderr, again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # nothing new, nothing touched
    for v, line in zip(data, again.stdout.splitlines(), strict=True):
        assert f"0 written ({len(v['written'])} already in {out}, the same bytes: not written again)" in line
    assert all(w["already"] for v in json.loads(report.read_text())["videos"] for w in v["written"])


def test_a_picture_is_refused_in_one_line_and_the_videos_go_on(tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", scenes(3, 2), "MJPG")
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.full((64, 64, 3), 128, np.uint8))
    proc = run_cli("frames", str(tmp_path / "photo.jpg"), str(video), "--out", str(tmp_path / "out"))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 3 and errors == [
        f"error: {tmp_path / 'photo.jpg'}: a picture, not a video: `refinery dedup` judges pictures"
    ]
    assert any(p.name.startswith("cam_t") for p in (tmp_path / "out").iterdir())


def test_video_names_tell_same_named_videos_apart_by_their_folders(tmp_path: Path) -> None:
    from refinery.video.folder import video_names

    paths = [tmp_path / "a" / "x" / "clip.avi", tmp_path / "b" / "x" / "clip.avi", tmp_path / "c" / "other.avi"]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert video_names(paths) == ["a_x_clip", "b_x_clip", "other"]
    assert video_names([paths[0], paths[0]]) == ["clip", "clip"]  # the same file twice: one name
    assert video_names([paths[2]]) == ["other"]


def test_dedup_names_a_video_and_leaves_it(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_video(folder / "cam.mp4", scenes(3, 0), "mp4v")
    cv2.imwrite(str(folder / "photo.jpg"), frame_pixels(background(21), [], np.random.default_rng(0)))
    report = tmp_path / "r.json"
    proc = run_cli("dedup", str(folder), "--report", str(report), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    line, _ = json.loads(report.read_text())["files"]
    assert line["path"] == "cam.mp4" and line["decision"] == "skip" and "refinery frames" in line["reason"]
    assert line["reason_code"] == "video"


def test_ctrl_c_leaves_every_written_frame_whole_and_a_report(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from PIL import Image

    from conftest import REPO

    walk = scenes(0, 14)
    video = write_video(tmp_path / "long.avi", [walk[k % 14] for k in range(1500)], "MJPG")
    out, report = tmp_path / "out", tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "refinery", "frames", str(video), "--out", str(out), "--report", str(report)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*.jpg"))) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    data = json.loads(report.read_text())["videos"][0]
    assert data["interrupted"] and 0 < data["frames"] < 1500
    files = sorted(out.iterdir())
    assert [p.name for p in files] == sorted(w["name"] for w in data["written"])
    for p in files:
        Image.open(p).load()  # whole: every one decodes


def test_a_still_scene_across_two_windows_is_kept_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows of 16 frames: the 20 frames of the person standing still cross a window's end,
    and are decided together with the next window's (one frame kept, not one a window)."""
    from refinery.config import Config
    from refinery.video import thin
    from refinery.video.extract import thin_video

    monkeypatch.setattr(thin, "WINDOW", 16)
    monkeypatch.setattr(thin, "CARRY", 4)
    monkeypatch.setattr(thin, "LEARN_EVERY", 1)
    video = write_video(tmp_path / "cam.avi", scenes(standing=20, walking=14)[::-1], "MJPG")  # walks, then stands
    out = tmp_path / "out"
    out.mkdir()
    result = thin_video(video, out, Config())
    kept = [w.frame for w in result.written]
    assert sum(1 for f in kept if f >= 14) == 1 and all(f in kept for f in range(14)), kept


def test_cut_waits_for_groups_that_reach_the_end_and_never_holds_more_than_half() -> None:
    from refinery.video.thin import CARRY, _cut

    n = 256
    assert _cut(n, []) == n - CARRY  # nothing joined: the last CARRY frames wait
    assert _cut(n, [(200, 250)]) == 200  # a group reaching the end waits whole
    assert _cut(n, [(10, 250)]) == n // 2  # but never more than half the window
    assert _cut(n, [(5, 6)]) == n - CARRY


def test_html_shows_each_kept_frame_beside_its_skipped_spans(tmp_path: Path) -> None:
    from test_review import page_data

    video = write_video(tmp_path / "cam.avi", scenes(standing=20, walking=3), "MJPG")
    out, page = tmp_path / "out", tmp_path / "r.html"
    proc = run_cli("frames", str(video), str(tmp_path / "nothing.mp4"), "--out", str(out), "--html", str(page))
    assert proc.returncode == 3 and f"wrote {page}" in proc.stdout, proc.stderr
    data = page_data(page)
    assert data["note"] and "4 written" in data["summary"]  # no buttons, no decisions to save: a note instead
    # every frame written, in time order, each with the spans skipped as its duplicates
    group, *alone = data["groups"]
    assert [data["files"][g["keeper"]]["path"] for g in data["groups"]] == [
        "cam_t000000.000.jpg",
        "cam_t000002.000.jpg",
        "cam_t000002.100.jpg",
        "cam_t000002.200.jpg",
    ]
    assert data["video"] and all(g["members"] == [] for g in alone)
    keeper, [span] = data["files"][group["keeper"]], [data["files"][i] for i in group["members"]]
    assert (out / keeper["path"]).is_file() and span["kept_as"] == keeper["path"]
    assert span["path"].startswith("cam ") and span["path"].endswith("19 frames skipped")
    assert span["thumb"] is not None and span["diff"] is not None  # the span's own picture, never on disk
    assert 0 <= span["scores"]["largest_move"] <= load_config().scenes.max_shift
    [error] = [data["files"][i] for i in data["errors"]]
    assert error["path"].endswith("nothing.mp4") and error["reason"] == "no such file"


def test_the_html_page_shows_spans_without_buttons(tmp_path: Path, browser: tuple[Any, Path]) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    video = write_video(tmp_path / "cam.avi", scenes(standing=20, walking=3), "MJPG")
    page = tmp_path / "r.html"
    assert run_cli("frames", str(video), "--out", str(tmp_path / "out"), "--html", str(page)).returncode == 0
    driver, _ = browser
    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.documentElement.dataset.firstPageMs"))
    tiles = driver.find_elements(By.CSS_SELECTOR, "figure.tile")
    assert [t.get_attribute("data-path") for t in tiles] == [
        "cam_t000000.000.jpg",
        "cam 0.100-1.900 s: 19 frames skipped",
        "cam_t000002.000.jpg",
        "cam_t000002.100.jpg",
        "cam_t000002.200.jpg",
    ]  # every frame written, in time order
    assert driver.execute_script("return [...document.querySelectorAll('#list img')].every(i => i.naturalWidth > 0)")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#list img")) == 6  # 4 frames, a span, where the span differs
    decisions = [t.find_element(By.CLASS_NAME, "decision").text for t in tiles[:3]]
    assert decisions == ["written", "skipped: the same frame as cam_t000000.000.jpg", "written"]  # worded for video
    assert not driver.find_elements(By.CSS_SELECTOR, "button[data-act]")
    assert not driver.find_element(By.ID, "save").is_displayed()
    assert "never written" in driver.find_element(By.ID, "help").text


def test_after_a_cut_to_another_view_frames_are_judged_as_pictures(tmp_path: Path) -> None:
    """30 frames of the camera, then 20 of a still other shot: those are outside the camera's
    view, so the near stage's picture test judges them (one kept), as dedup would."""
    video = write_video(tmp_path / "film.avi", scenes(standing=20, walking=10) + [[]] * 20, "MJPG", cut_to=30)
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert run_cli("frames", str(video), "--out", str(out), "--report", str(report)).returncode == 0
    data = json.loads(report.read_text())["videos"][0]
    kept = [w["frame"] for w in data["written"]]
    assert sum(1 for f in kept if f >= 30) == 1 and all(f in kept for f in range(20, 30)), kept
    [shot] = [s for s in data["skipped"] if s["start"] >= 3.0]
    assert shot["frames"] == 19 and shot["test"] == "picture" and shot["score"] >= 0.99
    assert shot["why"].startswith("a near copy of film_t")
    assert data["skipped"][0]["test"] == "scene" and data["skipped"][0]["frames"] == 19


def test_a_full_disk_is_one_line_and_leaves_every_written_frame_whole(tmp_path: Path) -> None:
    """The frames cannot be written (files over 8 KB refused, as a full disk refuses them):
    one line naming the frame and why, no temporary file left, the next video not read."""
    import resource
    import subprocess
    import sys

    from conftest import REPO

    first = write_video(tmp_path / "a.avi", scenes(3, 3), "MJPG")
    second = write_video(tmp_path / "b.avi", scenes(3, 3), "MJPG")
    out = tmp_path / "out"

    def small_files() -> None:  # in the child: writes past 8 KB fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    proc = subprocess.run(
        [sys.executable, "-m", "refinery", "frames", str(first), str(second), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        preexec_fn=small_files,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr and proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors[0].startswith(f"error: {first}: cannot write {out / 'a_t000000.000.jpg'}: File too large")
    assert errors[1] == f"error: stopped: nothing more can be written into {out}; 1 more video not read"
    assert list(out.iterdir()) == []  # nothing half-written, no temporary name left
