"""The adversarial pass of issue 24 beyond its list, kept as tests: every file a command reads
(a config, a decisions file, a report, an index) may be a FIFO, a device, nested past the
parser, not UTF-8 or damaged; every number option may be NaN; serve's port may be taken.
Each is one line and an exit code, never a hang, a traceback or a memory blow-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import draw_picture, run_cli

CPU = ("--device", "cpu")


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.lower().startswith("error:")]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(3):
        draw_picture(i, (160, 120)).save(root / f"p{i}.jpg")
    return root


@pytest.fixture(scope="module")
def index(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "idx"
    assert run_cli("index", str(photos), "--out", str(out), *CPU).returncode == 0
    return out


@pytest.mark.parametrize("make", ["fifo", "device", "not utf-8", "too deep", "nul in a path"])
def test_a_config_file_of_any_shape_is_one_line(photos: Path, tmp_path: Path, make: str) -> None:
    config = tmp_path / "c.toml"
    if make == "fifo":
        os.mkfifo(config)
    elif make == "device":
        config = Path("/dev/zero")
    elif make == "not utf-8":
        config.write_bytes(b"[run]\nworkers = 1\n# \xff\xfe\n")
    elif make == "too deep":
        config.write_text("x = " + "[" * 5000 + "]" * 5000)
    else:
        config.write_text('[run]\ncache_dir = "a\\u0000b"\n')
    proc = run_cli("dedup", str(photos), "--config", str(config), *CPU, timeout=60)
    assert proc.returncode == 2 and str(config) in one_error_line(proc)


@pytest.mark.parametrize("command", ["apply", "review"])
@pytest.mark.parametrize("make", ["fifo", "device", "too deep"])
def test_a_decisions_file_or_report_of_any_shape_is_one_line(tmp_path: Path, command: str, make: str) -> None:
    path = tmp_path / "d.json"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "device":
        path = Path("/dev/zero")
    else:
        path.write_text("[" * 100_000 + "]" * 100_000)
    args = ["--html", str(tmp_path / "p.html")] if command == "review" else []
    proc = run_cli(command, str(path), *args, timeout=60)
    assert proc.returncode == 1 and str(path) in one_error_line(proc)


def rehash(index: Path, name: str) -> None:
    """index.json made to vouch for a damaged part: its hashes prove nothing against a hand."""
    meta = json.loads((index / "index.json").read_text())
    data = (index / name).read_bytes()
    meta["parts"][name] = {**meta["parts"][name], "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (index / "index.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("make", ["fifo", "too deep", "damaged faiss", "damaged pixels"])
def test_a_damaged_index_is_one_line(index: Path, photos: Path, tmp_path: Path, make: str) -> None:
    bad = tmp_path / "idx"
    shutil.copytree(index, bad)
    if make == "fifo":
        (bad / "index.json").unlink()
        os.mkfifo(bad / "index.json")
    elif make == "too deep":
        (bad / "index.json").write_text("[" * 100_000 + "]" * 100_000)
    else:
        name = "embedding.faiss" if make == "damaged faiss" else "pixels.npy"
        (bad / name).write_bytes((bad / name).read_bytes()[:300])
        rehash(bad, name)
    proc = run_cli("search", str(bad), str(photos / "p0.jpg"), "--device", "cpu", timeout=60)
    assert proc.returncode == 1 and str(bad) in one_error_line(proc)


@pytest.mark.parametrize(
    "args",
    [
        ("frames", "TMP/v.avi", "--out", "TMP/o", "--fps", "nan"),
        ("serve", "IDX", "--max-upload-mb", "nan"),
        ("serve", "IDX", "--max-upload-mb", "inf"),
    ],
)
def test_a_number_option_must_be_finite(index: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    args = tuple(str(index) if a == "IDX" else a.replace("TMP", str(tmp_path)) for a in args)
    proc = run_cli(*args, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is not a finite number" in proc.stderr or "is not in the range" in proc.stderr


def test_serve_on_a_taken_port_is_one_line(index: Path) -> None:
    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("serve", str(index), "--port", str(port), "--device", "cpu", timeout=60)
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in one_error_line(proc)
