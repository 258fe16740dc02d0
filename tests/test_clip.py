"""CLIP through the export-once, onnxruntime-only path: two towers, refinery's tokenizer,
search by words, a model's own semantic threshold.

The models are random-init: tests/data/tinyclip (2 layers, 32-d, 32x32 input) exported by
the real CLI (the `clip_model` fixture), and the named architectures at a small input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_CLIP, draw_picture, run_cli
from refinery.errors import ModelError
from refinery.retrieval.index import RetrievalIndex
from refinery.runner.session import Embedder
from refinery.runner.text import NoTextTower, TextEmbedder, text_tower_of
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
    proc = run_cli("export-model", "--arch", f"openclip:local-dir:{TINY_CLIP}", "--out", str(prefix),
                   "--format", "onnx", "--calibrate", str(corpus))
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
        np.stack([load(corpus / "images" / n, prefix) for n in sorted(files)]))
    groups = np.array([files[n]["group"] for n in sorted(files)])
    sims = vectors @ vectors.T
    most = max(sims[a, b] for a in range(len(groups)) for b in range(a + 1, len(groups)) if groups[a] != groups[b])
    assert most < threshold <= max(0.5, most + 0.0011) or threshold == 1.0


def load(path: Path, prefix: Path) -> np.ndarray:
    from refinery.io.images import load_input

    return load_input(path, ModelSpec.load(prefix.with_suffix(".json")))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["openclip-vit-b-32", "openclip-rn50"])
def test_named_architectures_export_with_parity(arch: str, tmp_path: Path) -> None:
    """The full-width towers (random init) at a 64-pixel input, to keep CI fast."""
    prefix = tmp_path / arch
    proc = run_cli("export-model", "--arch", arch, "--image-size", "64", "--out", str(prefix), "--format", "onnx")
    assert proc.returncode == 0, proc.stderr
    assert "random weights" in proc.stderr
    figures = parity_lines(proc.stdout)
    assert set(figures) == {"onnx text fp32", "onnx fp32"}
    for label, f in figures.items():
        assert f["min centred cosine"] >= 0.9999 and f["max rel diff"] <= 1e-3, (label, f)
    spec = ModelSpec.load(prefix.with_suffix(".json"))
    assert spec.input_size == (64, 64) and spec.output_dim == (1024 if "rn50" in arch else 512)


def test_text_search_ranks_by_cosine(clip_model: Path, clip_index: Path) -> None:
    """`search --text`: the pictures in order of cosine to the text tower's vector."""
    proc = run_cli("search", str(clip_index), "--text", "a red truck at night", "--text", "", "-k", "7", "--json")
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    assert [a["query"] for a in answers] == ['"a red truck at night"', '""']
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
    spec = ModelSpec.load(clip_copy.with_suffix(".json")).replace(semantic_threshold=0.97)
    spec.save(clip_copy.with_suffix(".json"))
    rewrite_metadata(clip_copy, spec)
    report = tmp_path / "r.json"
    proc = run_cli("dedup", str(pictures), "--model", str(clip_copy), "--report", str(report), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["summary"]["semantic_threshold"] == 0.97
    assert "semantic threshold 0.970, calibrated for" in proc.stderr
    proc = run_cli("dedup", str(pictures), "--model", str(clip_copy), "--report", str(report), "--device", "cpu",
                   "--set", "semantic.threshold=0.9")
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
