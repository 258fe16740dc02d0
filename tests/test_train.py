"""`refinery train`: the identity split, the triplet sampler, the losses on hand-made vectors,
and a tiny real training run through the CLI whose ONNX the runner loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import draw_picture, run_cli, snapshot

torch = pytest.importorskip("torch", reason="training needs the [train] extra")

from refinery.train import data  # noqa: E402
from refinery.train.loss import batch_hard_loss, triplet_loss  # noqa: E402


def test_identities_split_by_name_never_share_a_side() -> None:
    names = [f"person_{k:03d}" for k in range(50)]
    train, test = data.split_identities(names, 0.2)
    assert not set(train) & set(test) and sorted(train + test) == names
    assert 4 <= len(test) <= 18  # ~a fifth
    again_train, again_test = data.split_identities(list(reversed(names)) + ["newcomer"], 0.2)
    assert set(test) <= set(again_test) and set(train) <= set(again_train)  # adding one moves no other
    assert data.split_identities(["a", "b"], 0.5) == (["a", "b"], [])  # training needs two


def test_pk_batches_and_random_triplets_are_valid() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), [2, 3, 4, 5, 6, 7])
    batches = data.pk_batches(labels, p=3, k=4, rng=rng)
    assert len(batches) == len(labels) // 12
    for rows in batches:
        ids, counts = np.unique(labels[rows], return_counts=True)
        assert len(ids) == 3 and (counts == 4).all()
        triplets = data.random_triplets(labels[rows], rng)
        assert len(triplets) == len(rows)
        a, p, n = labels[rows][triplets].T
        assert (a == p).all() and (a != n).all() and (triplets[:, 0] != triplets[:, 1]).all()


def test_losses_on_hand_made_vectors() -> None:
    e = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    d = torch.cdist(e, e)
    # anchor 0: hardest positive 1 (d 0.894), hardest negative 2 (d 1.414)
    # anchor 1: positive 0 (0.894), negative 2 (0.632); anchor 2: positive 3 (1.414), negative 1 (0.632)
    # anchor 3: positive 2 (1.414), negative 1 (1.789)
    margin = 0.3
    expected = torch.relu(
        torch.stack([d[0, 1] - d[0, 2], d[1, 0] - d[1, 2], d[2, 3] - d[2, 1], d[3, 2] - d[3, 1]]) + margin
    ).mean()
    assert batch_hard_loss(e, labels, margin).item() == pytest.approx(expected.item(), abs=1e-5)
    assert triplet_loss(e[:1], e[1:2], e[2:3], margin).item() == pytest.approx(
        max(0.0, (d[0, 1] - d[0, 2]).item() + margin), abs=1e-5
    )
    assert batch_hard_loss(e, torch.zeros(4, dtype=torch.long), margin).item() == 0  # no negatives: no loss


def identity_folder(root: Path, identities: int = 6, per_identity: int = 4) -> Path:
    for k in range(identities):
        folder = root / f"id_{k}"
        folder.mkdir(parents=True)
        base = draw_picture(k, (64, 64))
        for j in range(per_identity):
            base.rotate(4 * j).save(folder / f"{j}.png")
    (root / "loner").mkdir()
    draw_picture(99, (64, 64)).save(root / "loner" / "only.png")
    return root


def test_train_writes_a_model_the_runner_loads_and_resumes(tmp_path: Path) -> None:
    from refinery.runner.session import Embedder

    folder, out = identity_folder(tmp_path / "ids"), tmp_path / "run"
    tiny = [
        "--set",
        "train.input_size=32",
        "--set",
        "train.dim=16",
        "--set",
        "train.hidden=32",
        "--set",
        "train.identities_per_batch=3",
        "--set",
        "train.pictures_per_identity=2",
        "--set",
        "train.test_share=0.34",
    ]
    first = run_cli("train", str(folder), "--out", str(out), "--epochs", "1", *tiny, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "loner: one picture only, left out" in first.stderr
    assert "| embedding:model |" in first.stdout and "| embedding:start |" in first.stdout
    embedder = Embedder(out / "model.onnx", device="cpu")
    assert embedder.spec.output_dim == 16 and embedder.spec.normalized
    vectors = embedder.embed(np.random.default_rng(0).uniform(0, 255, (3, 3, 32, 32)).astype(np.float32))
    assert vectors.shape == (3, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    train_ids = torch.load(out / "checkpoint.pt", weights_only=True)["train_identities"]
    held_out = {p.name for p in (out / "heldout").iterdir()}
    assert held_out and not held_out & set(train_ids) and "loner" not in train_ids

    again = run_cli("train", str(folder), "--out", str(out), "--epochs", "1", *tiny, "--no-eval")
    assert again.returncode == 1 and "pass --resume" in again.stderr
    resumed = run_cli("train", str(folder), "--out", str(out), "--epochs", "2", "--resume", "--no-eval", *tiny)
    assert resumed.returncode == 0, resumed.stderr
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epochs_done"] == 2 and len(state["losses"]) == 2

    # The trained model drops into dedup as it is.
    report = tmp_path / "r.json"
    dedup = run_cli("dedup", str(folder), "--model", str(out / "model.onnx"), "--report", str(report), "--no-cache")
    assert dedup.returncode == 0, dedup.stderr
    assert json.loads(report.read_text())["summary"]["model"] == "model.onnx"


def test_too_few_identities_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "ids"
    (folder / "only").mkdir(parents=True)
    for j in range(3):
        draw_picture(j, (32, 32)).save(folder / "only" / f"{j}.png")
    proc = run_cli("train", str(folder), "--out", str(tmp_path / "run"))
    assert proc.returncode == 1 and "training needs at least 2" in proc.stderr


@pytest.mark.parametrize("arch", ["mobilenetv2", "resnet50", "fastreid-r50-ibn"])
def test_each_backbone_gives_a_unit_embedding_with_its_early_stages_frozen(arch: str, tmp_path: Path) -> None:
    from refinery.export.fastreid import write_random_checkpoint
    from refinery.train.model import EmbeddingNet, build_backbone, freeze

    checkpoint = None
    if arch == "fastreid-r50-ibn":
        checkpoint = tmp_path / "r50ibn.pth"
        write_random_checkpoint(checkpoint)
    backbone = build_backbone(arch, checkpoint)
    model = EmbeddingNet(backbone, dim=8, hidden=16).eval()
    frozen = freeze(backbone, backbone.frozen_default)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64) * 255)
    assert out.shape == (2, 8) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    assert frozen and all(not p.requires_grad for m in frozen for p in m.parameters())
    assert any(p.requires_grad for p in backbone.stages[-1].parameters())


def test_faces_crops_first_and_names_pictures_without_one(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "ids", identities=2, per_identity=2)  # shapes: no faces in them
    proc = run_cli("train", str(folder), "--out", str(tmp_path / "run"), "--faces", "--no-eval")
    assert proc.returncode == 1
    assert "id_0/0.png: no face found, left out" in proc.stderr
    assert "no readable pictures" in proc.stderr


def test_only_what_refinery_put_into_heldout_is_taken_away(tmp_path: Path) -> None:
    from refinery.errors import RefineryError
    from refinery.train.loop import HELDOUT_LIST, _clear_heldout

    heldout = tmp_path / "heldout"
    (heldout / "anna").mkdir(parents=True)
    (heldout / "anna" / "1.jpg").write_bytes(b"linked by refinery")
    (heldout / "anna" / "notes.txt").write_text("the user's")
    with pytest.raises(RefineryError, match="was not made by refinery train"):
        _clear_heldout(heldout)  # no list: not refinery's folder
    assert (heldout / "anna" / "1.jpg").exists()
    (heldout / HELDOUT_LIST).write_text('["anna/1.jpg", "../../victim.txt"]')
    (tmp_path / "victim.txt").write_text("precious")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "thesis.txt").write_text("precious too")
    (heldout / "linked").symlink_to(tmp_path / "elsewhere")  # a folder on the list's way, planted as a link
    (heldout / HELDOUT_LIST).write_text('["anna/1.jpg", "../../victim.txt", "linked/thesis.txt"]')
    _clear_heldout(heldout)
    assert not (heldout / "anna" / "1.jpg").exists() and (heldout / "anna" / "notes.txt").exists()
    assert (tmp_path / "victim.txt").read_text() == "precious"
    assert (tmp_path / "elsewhere" / "thesis.txt").read_text() == "precious too"


def test_train_writes_over_nothing_of_the_users(tmp_path: Path) -> None:
    """Refused in one line before anything is trained: OUT inside the identities, a user's file
    at one of OUT's names."""
    folder = identity_folder(tmp_path / "ids")
    before = snapshot(folder)
    proc = run_cli("train", str(folder), "--out", str(folder / "run"))
    assert proc.returncode == 1 and "is inside the scanned folder" in proc.stderr
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"my own model")
    proc = run_cli("train", str(folder), "--out", str(out))
    assert proc.returncode == 1 and "already exists and is not a model refinery exported" in proc.stderr
    assert (out / "model.onnx").read_bytes() == b"my own model" and snapshot(folder) == before
