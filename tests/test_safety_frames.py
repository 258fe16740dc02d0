"""`refinery frames` on hostile videos and names: one `error:` line each, and the rest goes on.

Real videos (OpenCV's VideoWriter, MJPG in AVI, 64x48), real files and folders, the real CLI in
a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from conftest import REPO, run_cli

W, H, FPS = 64, 48, 10.0


def write_clip(path: Path, frames: int = 20, kind: str = "cuts") -> Path:
    """A small MJPG clip: "cuts", every frame a new picture (each one kept); "still", one
    picture (fresh noise each frame: one kept); "drift", a fixed camera and a square moving a
    pixel a frame (frames a few apart are one scene). Written under a plain name, then
    renamed to `path` (any bytes): OpenCV never sees a hostile name here."""
    rng = np.random.default_rng(7)
    plain = path.parent / f".clip-{os.getpid()}.avi"
    writer = cv2.VideoWriter(str(plain), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert writer.isOpened()
    ground = None
    for k in range(frames):
        if ground is None or kind == "cuts":
            ground = cv2.resize(rng.uniform(30, 220, (6, 8, 3)), (W, H), interpolation=cv2.INTER_CUBIC)
        image = ground.copy()
        x = 10 + k if kind == "drift" else 20
        cv2.rectangle(image, (x, 14), (x + 12, 30), (30, 30, 220), -1)
        writer.write(np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8))
    writer.release()
    os.rename(plain, path)
    return path


def errors_of(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr's lines; each must be an `error:` line (no tracebacks, no library chatter)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert all(line.startswith("error: ") for line in lines), proc.stderr
    return lines


def names_in(folder: Path) -> list[bytes]:
    return sorted(os.listdir(os.fsencode(folder)))


def test_a_video_whose_name_is_not_utf8_is_read_between_two_good_ones(tmp_path: Path) -> None:
    """OpenCV crashed (SIGSEGV) on the surrogate-escaped name, and the videos after it were
    never read; now it is read like any other, and its frames get names that are UTF-8."""
    first = write_clip(tmp_path / "first.avi")
    odd = write_clip(tmp_path / os.fsdecode(b"caf\xe9 \xff.avi"))
    last = write_clip(tmp_path / "last.avi")
    out, report = tmp_path / "out", tmp_path / "r.json"
    proc = run_cli("frames", str(first), str(odd), str(last), "--out", str(out), "--report", str(report), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert errors_of(proc) == []
    videos = json.loads(report.read_text())["videos"]
    assert [len(v["written"]) for v in videos] == [20, 20, 20]
    names = names_in(out)
    assert len(names) == 60 and len({n[: -len(b"_t000000.000.jpg")] for n in names}) == 3
    for name in names:
        name.decode("utf-8")  # every name is UTF-8: no byte of the odd name carried over undecoded
        Image.open(out / os.fsdecode(name)).load()
    assert "caf\\xe9 \\xff.avi: 20 frames looked at" in proc.stdout  # escaped where it is printed


def test_long_names_are_shortened_by_bytes_and_the_next_video_is_read(tmp_path: Path) -> None:
    """A 250-character name made frame names over 255 bytes: the run stopped as if `out` were
    full. Stems are cut by bytes (a UTF-8 name counts bytes), each keeps its own frames."""
    ascii_long = write_clip(tmp_path / ("v" * 246 + ".avi"))
    ascii_twin = write_clip(tmp_path / ("v" * 245 + "w.avi"))  # the same first 245 characters
    utf8_long = write_clip(tmp_path / ("é" * 125 + ".avi"), kind="still")  # 250 bytes + .avi
    last = write_clip(tmp_path / "last.avi")
    out, report = tmp_path / "out", tmp_path / "r.json"
    proc = run_cli(
        "frames",
        str(ascii_long),
        str(ascii_twin),
        str(utf8_long),
        str(last),
        "--out",
        str(out),
        "--report",
        str(report),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert errors_of(proc) == []
    videos = json.loads(report.read_text())["videos"]
    assert [len(v["written"]) for v in videos] == [20, 20, 1, 20]
    names = names_in(out)
    assert len(names) == 61 and all(len(n) <= 255 for n in names)
    for video in videos:
        assert all((out / w["name"]).is_file() for w in video["written"])
    stems = [{w["name"].rsplit("_t", 1)[0] for w in video["written"]} for video in videos]
    assert all(len(s) == 1 for s in stems) and len(set.union(*stems)) == 4  # the twins stay apart
    assert next(iter(stems[2])).startswith("é" * 50)


def test_out_renamed_away_mid_run_is_one_line_and_the_report_covers_what_was_done(tmp_path: Path) -> None:
    video = write_clip(tmp_path / "long.avi", frames=3000)
    after = write_clip(tmp_path / "after.avi")
    out, moved, report = tmp_path / "out", tmp_path / "moved", tmp_path / "r.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "refinery",
            "frames",
            str(video),
            str(after),
            "--out",
            str(out),
            "--report",
            str(report),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(p.suffix == ".jpg" for p in out.iterdir())) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before a frame was written"
        time.sleep(0.01)
    proc.send_signal(signal.SIGSTOP)  # out goes away between two windows' writes
    out.rename(moved)
    proc.send_signal(signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=60)
    finished = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    [line] = errors_of(finished)
    assert line.startswith(f"error: {video}: ") and "went away" in line and str(out) in line, line
    assert "1 more video not read" in line
    assert proc.returncode == 1, stderr
    [data] = json.loads(report.read_text())["videos"]
    assert "went away" in data["error"] and 0 < len(data["written"]) < 3000
    assert sorted(p.name for p in moved.iterdir()) == sorted(w["name"] for w in data["written"])
    for p in moved.iterdir():
        Image.open(p).load()  # whole: every one decodes
    assert not out.exists()


def test_out_removed_before_the_next_video_stops_the_run_in_one_line(tmp_path: Path) -> None:
    """In-process, at a known frame: the folder is removed while a video is read."""
    import shutil

    from refinery.config import Config
    from refinery.video.extract import thin_video

    video = write_clip(tmp_path / "cam.avi", frames=300)
    out = tmp_path / "out"
    out.mkdir()

    def progress(name: str, total: int, rate: float) -> Callable[[int], None]:
        read = [0]

        def advance(n: int) -> None:
            read[0] += n
            if read[0] == 280:  # after the first window's frames were written
                shutil.rmtree(out)

        return advance

    result = thin_video(video, out, Config(), progress=progress)
    assert result.cannot_write and "went away" in result.error
    assert 0 < len(result.written) < 300
    again = thin_video(video, out, Config())  # the next video: the folder is not there
    assert again.cannot_write and "went away" in again.error and not again.written


def test_a_taken_name_is_never_overwritten_and_the_frame_goes_to_a_free_name(tmp_path: Path) -> None:
    """A still scene keeps one frame; its name is taken in `out`: the frame is written under
    a free name (not skipped with every frame of the scene), and the run says so once."""
    video = write_clip(tmp_path / "still.avi", kind="still")
    first = tmp_path / "first"
    assert run_cli("frames", str(video), "--out", str(first), timeout=120).returncode == 0
    [kept] = names_in(first)
    out, report = tmp_path / "out", tmp_path / "r.json"
    out.mkdir()
    (out / os.fsdecode(kept)).write_bytes(b"someone else's")
    (out / os.fsdecode(kept.replace(b".jpg", b".1.jpg"))).write_bytes(b"and this too")
    proc = run_cli("frames", str(video), "--out", str(out), "--report", str(report), timeout=120)
    assert proc.returncode == 3, proc.stderr
    [line] = errors_of(proc)
    free = kept.replace(b".jpg", b".2.jpg").decode()
    assert kept.decode() in line and "not overwritten" in line and free in line, line
    assert (out / kept.decode()).read_bytes() == b"someone else's"
    [data] = json.loads(report.read_text())["videos"]
    assert data["taken"] == [kept.decode()]
    assert [w["name"] for w in data["written"]] == [free]
    assert (out / free).read_bytes() == (first / kept.decode()).read_bytes()
    assert data["skipped"][0]["kept_as"] == free and data["skipped"][0]["frames"] == 19


def test_a_taken_keeper_after_the_frames_it_stands_for_is_named_as_written(tmp_path: Path) -> None:
    """A scene's keeper may come after frames it stands for (its most typical frame): those
    frames' span must name the file the keeper went to, not the taken name."""
    video = write_clip(tmp_path / "drift.avi", kind="drift")
    first, report = tmp_path / "first", tmp_path / "r.json"
    assert run_cli("frames", str(video), "--out", str(first), "--report", str(report), timeout=120).returncode == 0
    [data] = json.loads(report.read_text())["videos"]
    times, spans = {w["name"]: w["t"] for w in data["written"]}, data["skipped"]
    later = [s for s in spans if s["kept_as"] and times[s["kept_as"]] > s["end"]]
    assert later, spans  # the case under test happens in this clip
    keeper = later[0]["kept_as"]
    out = tmp_path / "out"
    out.mkdir()
    (out / keeper).write_bytes(b"someone else's")
    proc = run_cli("frames", str(video), "--out", str(out), "--report", str(report), timeout=120)
    assert proc.returncode == 3, proc.stderr
    [data] = json.loads(report.read_text())["videos"]
    free = keeper.replace(".jpg", ".1.jpg")
    assert data["taken"] == [keeper] and (out / keeper).read_bytes() == b"someone else's"
    assert [s["kept_as"] for s in data["skipped"]] == [free if s["kept_as"] == keeper else s["kept_as"] for s in spans]
    assert [w["name"] for w in data["written"]] == [free if n == keeper else n for n in times]
    assert [w["frame"] for w in data["written"]] == sorted(w["frame"] for w in data["written"])  # in time order
    assert sorted(p.name for p in out.iterdir()) == sorted([keeper, *(w["name"] for w in data["written"])])


def test_hostile_paths_are_one_line_each_and_the_run_goes_on(tmp_path: Path) -> None:
    good = write_clip(tmp_path / "good.avi")
    folder = tmp_path / "folder.avi"
    folder.mkdir()
    fifo = tmp_path / "fifo.avi"
    os.mkfifo(fifo)  # nobody writes to it: reading it would wait forever
    dangling = tmp_path / "dangling.avi"
    dangling.symlink_to(tmp_path / "gone.avi")
    (tmp_path / "zero.avi").write_bytes(b"")
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(good.read_bytes()[:5000])
    (tmp_path / "text.mp4").write_text("not a video\n")
    linked = tmp_path / "linked.avi"
    linked.symlink_to(good)  # a link to a video is read: the user named it
    hostile = [folder, fifo, dangling, tmp_path / "zero.avi", truncated, tmp_path / "text.mp4"]
    out, report = tmp_path / "out", tmp_path / "r.json"
    proc = run_cli(
        "frames", *map(str, hostile), str(good), str(linked), "--out", str(out), "--report", str(report), timeout=120
    )
    assert proc.returncode == 3, proc.stderr
    errors = errors_of(proc)
    assert [e.split(": ")[1] for e in errors] == list(map(str, hostile)), errors
    assert "a folder" in errors[0] and "not a regular file" in errors[1] and "no such file" in errors[2]
    assert "an empty file" in errors[3]
    videos = json.loads(report.read_text())["videos"]
    assert [bool(v["error"]) for v in videos] == [True] * 6 + [False, False]
    assert len(videos[6]["written"]) == 20 and videos[7]["error"] is None
