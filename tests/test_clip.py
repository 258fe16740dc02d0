"""CLIP through the export-once, onnxruntime-only path: two towers, refinery's tokenizer,
search by words, a model's own semantic threshold.

The models are random-init: tests/data/tinyclip (2 layers, 32-d, 32x32 input) exported by
the real CLI (the `clip_model` fixture), and the named architectures at a small input.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_CLIP, draw_picture, needs_open_clip, run_cli
from refinery.errors import ModelError, NoTextTower
from refinery.retrieval.index import RetrievalIndex
from refinery.runner.session import Embedder
from refinery.runner.text import TextEmbedder, text_tower_of
from refinery.spec import ModelSpec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def parity_lines(stdout: str) -> dict[str, dict[str, float]]:
    """{label: {figure: value}} from export-model's parity lines."""
    found = {}
    for line in stdout.splitlines():
        if "min centred cosine" in line:
            label, _, figures = line.partition(": ")
            parts = [p.strip().rsplit(" ", 1) for p in figures.split(",")[1:]]
            found[label] = {name: float(value) for name, value in parts}
    return found


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pictures")
    for i in range(6):
        draw_picture(i).save(root / f"p{i}.png")
    draw_picture(0).save(root / "p0_copy.png")
    return root


@pytest.fixture(scope="module")
def clip_index(clip_model: Path, pictures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clipindex") / "index"
    proc = run_cli("index", str(pictures), "--model", str(clip_model), "--out", str(out), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return out


def test_export_writes_two_towers_and_the_vocabulary(clip_model: Path) -> None:
    image = ModelSpec.load(clip_model.with_suffix(".json"))
    text_path = clip_model.with_suffix(".text.onnx")
    assert image.text_model == text_path.name and text_path.is_file()
    assert clip_model.with_suffix(".vocab.txt.gz").is_file()
    assert image.input_size == (32, 32) and image.output_dim == 32 and not image.normalized
    text = TextEmbedder(text_path, device="cpu")
    assert text.spec.output_dim == 32 and text.spec.context_length == 77
    assert text.spec.vocab == clip_model.with_suffix(".vocab.txt.gz").name


@pytest.mark.slow
@needs_open_clip
def test_export_parity_of_both_towers_and_calibration(tmp_path: Path) -> None:
    """Both towers within fp32 parity of open_clip, and a threshold calibrated on a labelled corpus."""
    corpus = tmp_path / "corpus"
    (corpus / "images").mkdir(parents=True)
    files = {}
    for i in range(8):  # four groups: an original and a shifted copy each
        draw_picture(i).save(corpus / "images" / f"o{i}.jpg")
        files[f"o{i}.jpg"] = {"group": i, "role": "original"}
        draw_picture(i).rotate(3).save(corpus / "images" / f"s{i}.jpg")
        files[f"s{i}.jpg"] = {"group": i, "role": "semantic"}
    (corpus / "truth.json").write_text(json.dumps({"files": files}))
    prefix = tmp_path / "m" / "tiny"
    proc = run_cli(
        "export-model",
        "--arch",
        f"openclip:local-dir:{TINY_CLIP}",
        "--out",
        str(prefix),
        "--format",
        "onnx",
        "--calibrate",
        str(corpus),
    )
    assert proc.returncode == 0, proc.stderr
    figures = parity_lines(proc.stdout)
    assert set(figures) == {"onnx text fp32", "onnx fp32"}
    for label, f in figures.items():
        assert f["min centred cosine"] >= 0.9999 and f["max rel diff"] <= 1e-3, (label, f)
    threshold = ModelSpec.load(prefix.with_suffix(".json")).semantic_threshold
    assert threshold is not None and 0.5 <= threshold <= 1.0
    assert f"semantic threshold {threshold:.3f}" in proc.stdout
    # The threshold is just above the most similar different pair, as the runner sees them.
    vectors = Embedder(prefix.with_suffix(".onnx"), device="cpu").embed(
        np.stack([load(corpus / "images" / n, prefix) for n in sorted(files)])
    )
    groups = np.array([files[n]["group"] for n in sorted(files)])
    sims = vectors @ vectors.T
    most = max(sims[a, b] for a in range(len(groups)) for b in range(a + 1, len(groups)) if groups[a] != groups[b])
    assert most < threshold <= max(0.5, most + 0.0011) or threshold == 1.0


def load(path: Path, prefix: Path) -> np.ndarray:
    from refinery.io.images import load_input

    return load_input(path, ModelSpec.load(prefix.with_suffix(".json")))


WRITE_CHECKPOINT = """
import sys, torch
from refinery.export.openclip import load_clip
state = load_clip(sys.argv[1], image_size=64).model.state_dict()
torch.save(state, sys.argv[2])
state.pop(sorted(state)[0])
torch.save(state, sys.argv[3])
"""


@pytest.mark.slow
@needs_open_clip
@pytest.mark.parametrize("arch", ["openclip-vit-b-32", "openclip-rn50"])
def test_named_architectures_export_with_parity(arch: str, tmp_path: Path) -> None:
    """The full-width towers from a local checkpoint (random init, written here) at a 64-pixel
    input, to keep CI fast; a checkpoint that lacks a key is refused in one line."""
    import subprocess
    import sys

    from conftest import REPO

    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    name = {"openclip-vit-b-32": "ViT-B-32", "openclip-rn50": "RN50"}[arch]
    subprocess.run([sys.executable, "-c", WRITE_CHECKPOINT, name, str(good), str(bad)], check=True, cwd=REPO)
    prefix = tmp_path / arch
    proc = run_cli(
        "export-model",
        "--arch",
        arch,
        "--image-size",
        "64",
        "--checkpoint",
        str(bad),
        "--out",
        str(prefix),
        "--format",
        "onnx",
    )
    assert proc.returncode == 1 and "cannot build" in proc.stderr and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Missing key(s)" in errors[0], proc.stderr
    proc = run_cli(
        "export-model",
        "--arch",
        arch,
        "--image-size",
        "64",
        "--checkpoint",
        str(good),
        "--out",
        str(prefix),
        "--format",
        "onnx",
    )
    assert proc.returncode == 0, proc.stderr
    assert "random weights" not in proc.stderr
    figures = parity_lines(proc.stdout)
    assert set(figures) == {"onnx text fp32", "onnx fp32"}
    for label, f in figures.items():
        assert f["min centred cosine"] >= 0.9999 and f["max rel diff"] <= 1e-3, (label, f)
    spec = ModelSpec.load(prefix.with_suffix(".json"))
    assert spec.input_size == (64, 64) and spec.output_dim == (1024 if "rn50" in arch else 512)
    assert spec.source == "good.pt" and spec.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()


def test_text_search_ranks_by_cosine(clip_model: Path, clip_index: Path) -> None:
    """`search --text`: the pictures in order of cosine to the text tower's vector."""
    proc = run_cli("search", str(clip_index), "--text", "a red truck at night", "--text", "", "-k", "7", "--json")
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    assert [a["query"] for a in answers] == ["a red truck at night", ""]  # the words as given
    index = RetrievalIndex.load(clip_index, device="cpu")
    text = text_tower_of(clip_model, index.embedder.spec, "cpu")
    images = Embedder(clip_model, device="cpu")
    from refinery.io.images import load_input

    vectors = images.embed(np.stack([load_input(index.root / p, images.spec) for p in index.paths]))
    for answer, words in zip(answers, ["a red truck at night", ""], strict=True):
        cosine = dict(zip(index.paths, vectors @ text.embed([words])[0], strict=True))
        scores = [r["score"] for r in answer["results"]]
        assert sorted({r["path"] for r in answer["results"]}) == sorted(index.paths)  # k = all 7
        assert np.allclose(scores, [cosine[r["path"]] for r in answer["results"]], atol=1e-3)  # decoded apart
        assert scores == sorted(scores, reverse=True)
        assert [r["rank"] for r in answer["results"]] == list(range(1, 8))


def test_text_search_of_a_non_clip_index_is_refused_in_one_line(pictures: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    assert run_cli("index", str(pictures), "--out", str(out), "--device", "cpu").returncode == 0
    proc = run_cli("search", str(out), "--text", "a red truck")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "has no text tower" in proc.stderr and "openclip" in proc.stderr
    with pytest.raises(NoTextTower):
        RetrievalIndex.load(out, device="cpu").search_text("a red truck")


def test_text_needs_the_embedding_method(clip_index: Path) -> None:
    proc = run_cli("search", str(clip_index), "--text", "a dog", "--method", "pixel-l1")
    assert proc.returncode == 2 and "embedding only" in proc.stderr
    proc = run_cli("search", str(clip_index))
    assert proc.returncode == 2 and "--text" in proc.stderr


@pytest.fixture
def clip_copy(clip_model: Path, tmp_path: Path) -> Path:
    """The exported files, copied where a test may spoil them."""
    for path in clip_model.parent.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / clip_model.name


def test_a_replaced_text_tower_is_refused(clip_copy: Path, tmp_path: Path) -> None:
    text = clip_copy.with_suffix(".text.onnx")
    text.write_bytes(text.read_bytes() + b"\0")
    spec = Embedder(clip_copy, device="cpu").spec
    with pytest.raises(ModelError, match="not the text tower .* was exported with"):
        text_tower_of(clip_copy, spec, "cpu")


def test_a_missing_or_changed_vocabulary_is_refused(clip_copy: Path) -> None:
    vocab = clip_copy.with_suffix(".vocab.txt.gz")
    spec = Embedder(clip_copy, device="cpu").spec
    vocab.write_bytes(vocab.read_bytes()[:-10])
    with pytest.raises(ModelError, match="not the vocabulary"):
        text_tower_of(clip_copy, spec, "cpu")
    vocab.unlink()
    with pytest.raises(ModelError, match="is not beside it"):
        text_tower_of(clip_copy, spec, "cpu")


def test_a_spec_cannot_point_the_text_tower_elsewhere(clip_copy: Path) -> None:
    sidecar = clip_copy.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    for bad in ("../tiny.text.onnx", "/etc/passwd", ".."):
        data["text_model"] = bad
        sidecar.write_text(json.dumps(data))
        with pytest.raises(ModelError, match="text_model must be a file name beside the model"):
            Embedder(clip_copy, device="cpu")


def test_dedup_takes_the_threshold_the_model_carries(clip_copy: Path, pictures: Path, tmp_path: Path) -> None:
    """A calibrated threshold in the spec is dedup's default; --set semantic.threshold still wins."""
    proc = run_cli("dedup", str(pictures), "--model", str(clip_copy), "--device", "cpu")
    assert proc.returncode == 0 and "carries no calibrated semantic threshold" in proc.stderr
    spec = ModelSpec.load(clip_copy.with_suffix(".json")).replace(semantic_threshold=0.97)
    spec.save(clip_copy.with_suffix(".json"))
    rewrite_metadata(clip_copy, spec)
    report = tmp_path / "r.json"
    proc = run_cli("dedup", str(pictures), "--model", str(clip_copy), "--report", str(report), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["summary"]["semantic_threshold"] == 0.97
    assert "semantic threshold 0.970, calibrated for" in proc.stderr
    proc = run_cli(
        "dedup",
        str(pictures),
        "--model",
        str(clip_copy),
        "--report",
        str(report),
        "--device",
        "cpu",
        "--set",
        "semantic.threshold=0.9",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["summary"]["semantic_threshold"] == 0.9
    summary = json.loads(report.read_text())["summary"]
    assert summary["removed_by_stage"]["exact"] == 1  # p0_copy.png: the funnel runs on a CLIP model


def rewrite_metadata(model: Path, spec: ModelSpec) -> None:
    """Write `spec` into the ONNX file's metadata too (the runner checks they agree)."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(model))
    del proto.metadata_props[:]
    for key, value in spec.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(model))


def test_image_tower_converts_to_coreml(tmp_path: Path) -> None:
    """The image tower through the Core ML path (predictions are checked on macOS only)."""
    coremltools = pytest.importorskip("coremltools")
    prefix = tmp_path / "tiny"
    proc = run_cli(
        "export-model", "--arch", f"openclip:local-dir:{TINY_CLIP}", "--out", str(prefix), "--format", "onnx,coreml"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Core ML: converted" in proc.stdout
    desc = coremltools.utils.load_spec(str(prefix.with_suffix(".mlpackage"))).description
    assert [i.name for i in desc.input] == ["images"] and [o.name for o in desc.output] == ["features"]
    ranges = [(r.lowerBound, r.upperBound) for r in desc.input[0].type.multiArrayType.shapeRange.sizeRanges]
    assert ranges == [(1, 64), (3, 3), (32, 32), (32, 32)]


def test_eval_asks_each_class_by_words(clip_model: Path, tmp_path: Path) -> None:
    """`eval --methods text`: one prompt per class over the gallery; a model without words says so."""
    for i in range(8):
        (tmp_path / "c" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        draw_picture(i).save(tmp_path / "c" / "ab"[i % 2] / f"p{i}.png")
    out = tmp_path / "eval.json"
    proc = run_cli(
        "eval",
        str(tmp_path / "c"),
        "--models",
        str(clip_model),
        "--methods",
        "embedding,text",
        "--json",
        str(out),
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(out.read_text())["methods"][f"text:{clip_model.stem}"]
    assert scores["queries"] == 2 and 0 <= scores["map"] <= 1
    proc = run_cli("eval", str(tmp_path / "c"), "--methods", "text", "--device", "cpu")
    assert proc.returncode == 1 and "has no text tower" in proc.stderr


@needs_open_clip
def test_a_second_export_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    """Two exports at once would replace each other's towers mid-check: the second stops in one line."""
    import fcntl
    import os

    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running export holds it
        proc = run_cli(
            "export-model",
            "--arch",
            f"openclip:local-dir:{TINY_CLIP}",
            "--out",
            str(tmp_path / "m"),
            "--format",
            "onnx",
        )
    finally:
        os.close(fd)
    assert proc.returncode == 1 and "another `refinery export-model` is writing there" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@needs_open_clip
def test_weights_that_cannot_be_had_are_one_line(tmp_path: Path) -> None:
    """No network here: an unknown release and a local-dir model given other weights are refused
    before anything is fetched or written."""
    proc = run_cli(
        "export-model", "--arch", "openclip-vit-b-32", "--pretrained", "nosuchtag", "--out", str(tmp_path / "m")
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert proc.returncode == 1 and len(errors) == 1 and "laion2b_s34b_b79k" in errors[0], proc.stderr
    proc = run_cli(
        "export-model",
        "--arch",
        f"openclip:local-dir:{TINY_CLIP}",
        "--pretrained",
        "openai",
        "--out",
        str(tmp_path / "m"),
    )
    assert proc.returncode == 1 and "takes its weights from its folder" in proc.stderr
    proc = run_cli("export-model", "--arch", f"openclip:local-dir:{TINY_CLIP}", "--fp16", "--out", str(tmp_path / "m"))
    assert proc.returncode == 1 and "--fp16 and --int8 are not made for CLIP towers" in proc.stderr
    assert not list(tmp_path.glob("m*"))
