"""Every command of an installed refinery, run as a user runs it, from outside the checkout so
that only the installed package can be imported: `python tests/smoke.py runtime` with the
python of a venv holding the wheel and its [serve] extra and no torch (every command but
export-model and train), `python tests/smoke.py torch` with one that has the [export,train,clip]
extras too (those two, and search by words through a CLIP model they export); `all` both.

It makes its own pictures and a short video, runs each command through the `refinery`
executable beside that python, checks the exit code and what it must have written, and prints
one line a command; it fails if the CLI registers a command it did not run.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REFINERY = str(Path(sys.executable).with_name("refinery"))


def picture(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.uniform(30, 220, 3) + np.linspace(0, 1, w)[None, :, None] * rng.uniform(-60, 60, 3)
    im = Image.fromarray(np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        draw.rectangle(
            [x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))],
            fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
    return im


ran: set[str] = set()  # the commands run so far


def run(*args: str, expect: int = 0, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([REFINERY, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != expect:
        sys.exit(f"smoke: `refinery {' '.join(args)}` exited {proc.returncode}, not {expect}:\n{proc.stderr[-2000:]}")
    print(f"smoke: refinery {args[0]} ok", flush=True)
    ran.add(args[0])
    return proc


def registered() -> set[str]:
    """The commands the installed CLI registers (its group, as `refinery --help` lists them)."""
    from refinery.cli.main import main as group

    return set(group.commands)


def video(path: Path) -> Path:
    """A 2-second clip of 20 frames: a still street with a box that crosses it once."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    street = np.asarray(picture(40))[..., ::-1]
    for k in range(20):
        frame = street.copy()
        if 5 <= k < 15:
            frame[40:80, 10 * k - 40 : 10 * k] = (20, 200, 240)
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def search_over_http(index: Path, query: Path) -> None:
    """`refinery serve` starts, and answers one search."""
    port = free_port()
    server = subprocess.Popen(
        [REFINERY, "serve", str(index), "--port", str(port), "--device", "cpu"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n3\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + query.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/search",
            data=body,
            method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    results = json.load(answer)["results"]
                    break
            except (ConnectionError, urllib.error.URLError):
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"smoke: refinery serve did not answer:\n{server.stderr.read().decode()[-2000:]}")
                time.sleep(0.3)
        if len(results) != 3:
            sys.exit(f"smoke: refinery serve answered {results}")
        print("smoke: refinery serve ok", flush=True)
        ran.add("serve")
    finally:
        server.terminate()
        server.wait(timeout=30)


# The commands that need torch (the [export] and [train] extras): run by `--part torch` from
# the test venv; every other command by `--part runtime` from a venv that has no torch at all.
TORCH_SIDE = {"export-model", "train"}


def make_photos(work: Path) -> Path:
    photos = work / "photos"
    photos.mkdir()
    for k in range(6):
        picture(k).save(photos / f"p{k}.png")
    (photos / "p0_copy.png").write_bytes((photos / "p0.png").read_bytes())
    return photos


def make_classes(work: Path) -> Path:
    classes = work / "classes"
    for c in range(3):
        (classes / f"c{c}").mkdir(parents=True)
        for j in range(5):
            picture(10 * c).rotate(3 * j).save(classes / f"c{c}" / f"{j}.png")
    return classes


def runtime(work: Path, photos: Path, classes: Path) -> None:
    """Every command but the torch side's, from an install without torch."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        sys.exit("smoke: the runtime part runs where torch is not installed, as a user's runner would")
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    run("--version")
    run("config", "--show")
    run("dedup", str(photos), "--report", str(work / "r.json"), "--device", "cpu")
    run("dedup", str(photos), "--move-rejects-to", str(work / "rejects"), "--device", "cpu")
    if (work / "rejects" / "p0_copy.png").read_bytes() != before["p0_copy.png"]:
        sys.exit("smoke: dedup did not move the copy")
    run("undo", str(work / "rejects"))
    if {p.name: p.read_bytes() for p in photos.iterdir()} != before:
        sys.exit("smoke: undo did not restore the folder")
    run("review", str(work / "r.json"), "--html", str(work / "review.html"))
    if "<html" not in (work / "review.html").read_text(encoding="utf-8").lower():
        sys.exit("smoke: review wrote no page")
    run("apply", str(work / "r.json"), "--move-rejects-to", str(work / "applied"))
    if (work / "applied" / "p0_copy.png").read_bytes() != before["p0_copy.png"]:
        sys.exit("smoke: apply did not move the copy")
    run("undo", str(work / "applied"))
    run("frames", str(video(work / "street.avi")), "--out", str(work / "frames"))
    if not 1 <= len(list((work / "frames").glob("*.jpg"))) < 20:
        sys.exit("smoke: frames kept no frame, or every one")
    run("embed", str(photos), "--out", str(work / "v.npz"), "--device", "cpu")
    run("index", str(photos), "--out", str(work / "index"), "--device", "cpu")
    found = run("search", str(work / "index"), str(photos / "p3.png"), "-k", "1", "--device", "cpu")
    if "p3.png" not in found.stdout:
        sys.exit(f"smoke: search did not find the query itself:\n{found.stdout}")
    run("eval", str(classes), "--methods", "embedding,pixel-l1", "--device", "cpu")
    search_over_http(work / "index", photos / "p3.png")


def torch_side(work: Path, photos: Path, classes: Path) -> None:
    """export-model and train (the [export], [train] and [clip] extras), then search by words
    through the CLIP model exported."""
    run("export-model", "--list")
    tiny = [
        "train.input_size=32",
        "train.dim=8",
        "train.hidden=16",
        "train.identities_per_batch=2",
        "train.pictures_per_identity=2",
        "train.test_share=0.34",
    ]
    settings = [arg for setting in tiny for arg in ("--set", setting)]
    run("train", str(classes), "--out", str(work / "run"), "--epochs", "1", "--no-eval", *settings)
    # CLIP (the [clip] extra): a tiny random-init open_clip model, then search by words.
    tiny_clip = Path(__file__).resolve().parent / "data" / "tinyclip"
    clip = str(work / "clip" / "tiny")
    run("export-model", "--arch", f"openclip:local-dir:{tiny_clip}", "--out", clip, "--format", "onnx")
    index = str(work / "clip-index")
    run("index", str(photos), "--model", clip + ".onnx", "--out", index, "--device", "cpu")
    found = run("search", index, "--text", "a red truck at night", "-k", "2")
    if found.stdout.count(".png") != 2:
        sys.exit(f"smoke: search --text did not answer two pictures:\n{found.stdout}")


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else "all"  # runtime, torch or all
    expected = {"runtime": registered() - TORCH_SIDE, "torch": TORCH_SIDE, "all": registered()}[part]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos, classes = make_photos(work), make_classes(work)
        if part in ("runtime", "all"):
            runtime(work, photos, classes)
        if part in ("torch", "all"):
            torch_side(work, photos, classes)
    if expected - ran:
        sys.exit(f"smoke: the CLI registers commands this part does not run: {sorted(expected - ran)}")


if __name__ == "__main__":
    main()
