"""The runtime CLI through its real entry point, and proof that it never imports torch."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from conftest import REPO, run_cli


def test_embed_writes_paths_and_vectors(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.npz"
    proc = run_cli("embed", str(image_dir), "--out", str(out), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "CPUExecutionProvider" in proc.stderr  # which provider ran is logged
    data = np.load(out)
    assert sorted(data["paths"]) == sorted(p.relative_to(image_dir).as_posix() for p in image_dir.rglob("*.*"))
    assert "sub/pic_7.jpg" in set(data["paths"])
    assert data["vectors"].shape == (8, 1280) and data["vectors"].dtype == np.float32


def test_embed_names_the_bad_file_and_goes_on(messy_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.npz"
    proc = run_cli("embed", str(messy_dir), "--out", str(out))
    assert proc.returncode == 3, proc.stderr  # finished, but a file could not be read
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "broken.jpg" in error_lines[0]
    assert len(np.load(out)["paths"]) == 3


def test_asking_for_cuda_without_it_fails_in_one_line(image_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("embed", str(image_dir), "--out", str(tmp_path / "v.npz"), "--device", "cuda")
    assert proc.returncode == 1
    assert "image-refinery[gpu]" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "v.npz").exists()


# Shadows the real torch: records any attempt (even one a try/except would swallow), then fails.
TORCH_TRAP = """print("TORCH_IMPORT_ATTEMPTED")\nraise ImportError("torch was imported by the runtime path")\n"""

NO_TORCH_RUN = textwrap.dedent("""
    import sys
    from refinery.cli.main import main
    try:
        for args in {runs!r}:
            main(args, standalone_mode=False)
    finally:
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("TORCH_MODULES=" + ",".join(leaked))
""")


@pytest.mark.parametrize("command", ["embed", "dedup", "index+search+eval"])
def test_runtime_never_imports_torch(command: str, image_dir: Path, tmp_path: Path) -> None:
    """Run the runtime commands with a trap shadowing torch, then list what entered sys.modules."""
    out = tmp_path / "out"
    classes = tmp_path / "classes"  # two classes of four pictures, for eval
    for i, picture in enumerate(sorted(image_dir.rglob("*.*"))):
        (classes / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        (classes / "ab"[i % 2] / picture.name).write_bytes(picture.read_bytes())
    runs = {
        "embed": [["embed", str(image_dir), "--out", str(out), "--device", "cpu"]],
        "dedup": [["dedup", str(image_dir), "--report", str(out), "--device", "cpu"]],
        "index+search+eval": [
            ["index", str(image_dir), "--out", str(out), "--sift", "--device", "cpu"],
            [
                "search",
                str(out),
                str(image_dir / "pic_1.jpg"),
                "--method",
                "sift",
                "--html",
                str(tmp_path / "sheet.html"),
            ],
            ["search", str(out), str(image_dir / "pic_1.jpg"), "--device", "cpu"],
            ["eval", str(classes), "--methods", "embedding,pixel-l1", "--device", "cpu"],
        ],
    }
    assert_no_torch(runs[command], tmp_path)
    assert out.exists()


def assert_no_torch(runs: list[list[str]], tmp_path: Path) -> str:
    """Run the CLI on each of `runs` in one fresh process with a trap shadowing torch; its output."""
    trap = tmp_path / "trap"
    (trap / "torch").mkdir(parents=True, exist_ok=True)
    (trap / "torch" / "__init__.py").write_text(TORCH_TRAP)
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH_RUN.format(runs=runs)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(trap), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_IMPORT_ATTEMPTED" not in proc.stdout
    assert "TORCH_MODULES=\n" in proc.stdout
    return proc.stdout


def test_search_by_words_never_imports_torch(clip_model: Path, image_dir: Path, tmp_path: Path) -> None:
    """A CLIP model end to end without torch: index, search --text (tokenizer and text tower), dedup."""
    out = tmp_path / "index"
    model = ["--model", str(clip_model), "--device", "cpu"]
    stdout = assert_no_torch(
        [
            ["index", str(image_dir), "--out", str(out), *model],
            ["search", str(out), "--text", "a red truck at night", "-k", "3"],
            ["dedup", str(image_dir), *model],
        ],
        tmp_path,
    )
    hits = re.findall(r"^ +[123]  +-?[\d.]+  (\S+)$", stdout.split('query: "a red truck at night"')[1], re.M)
    assert len(hits) == 3 and len(set(hits)) == 3  # whichever three a random-init CLIP ranks first


def test_base_install_does_not_depend_on_torch() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert "torch" not in base and "coremltools" not in base and "onnx>" not in base
    assert any(d.startswith("torch") for d in project["optional-dependencies"]["export"])


def test_help_is_instant_and_lists_commands() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("embed", "export-model", "dedup", "undo", "config"):
        assert command in proc.stdout


def test_fully_cached_run_never_loads_the_model(image_dir: Path, tmp_path: Path) -> None:
    """A second dedup of an unchanged folder takes every vector from the cache: no session,
    not even an onnxruntime import (a fifth of a warm run's time)."""
    args = ["dedup", str(image_dir), "--report", str(tmp_path / "r.json"), "--device", "cpu"]
    script = textwrap.dedent(f"""
        import sys
        from refinery.cli.main import main
        try:
            main({args!r}, standalone_mode=False)
        finally:
            print("ORT_LOADED=" + str("onnxruntime" in sys.modules))
    """)
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env)
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env)
    assert first.returncode == second.returncode == 0, second.stderr
    assert "ORT_LOADED=True" in first.stdout
    assert "ORT_LOADED=False" in second.stdout and "8 from the cache" in second.stdout
