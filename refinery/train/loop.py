"""The training run: data, epochs with a progress bar, a checkpoint per epoch (resumable),
the export through export-model's code, and the before/after table on held-out identities."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from refinery.config import Config, TrainConfig
from refinery.errors import RefineryError
from refinery.export.builders import Built
from refinery.export.onnx import DEFAULT_OPSET
from refinery.export.pipeline import ExportResult, parity_images, spec_of, torch_outputs, write_onnx
from refinery.io.fileio import file_sha256, write_text_atomic
from refinery.io.outputs import CHECKPOINT_MARK, Kind, output_path
from refinery.train import data
from refinery.train.loss import batch_hard_loss, triplet_loss
from refinery.train.model import EmbeddingNet, PooledBackbone, build_backbone, freeze, keep_frozen_eval

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CROP_SLACK = 1.15  # pictures are kept this much larger than the input, for random crops

# (total steps) -> advance(loss) ; the CLI passes a progress bar
Progress = Callable[[str, int], Callable[[float], None]]


@dataclass
class TrainResult:
    out: Path
    model: Path  # the fine-tuned ONNX
    start: Path  # the starting backbone as ONNX (its pooled feature), for the table
    train_identities: list[str]
    test_identities: list[str]
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    table: str = ""  # refinery eval on the held-out identities, before and after


def train(
    folder: Path,
    out: Path,
    cfg: TrainConfig,
    checkpoint: Path | None = None,
    faces: bool = False,
    resume: bool = False,
    progress: Progress | None = None,
    evaluate: bool = True,
) -> TrainResult:
    """Fine-tune `cfg.arch` on `folder`'s identities into OUT/model.onnx (+ .json)."""
    out = Path(out)
    state_path = out / CHECKPOINT
    if state_path.exists() and not resume:
        raise RefineryError(f"{state_path} exists: pass --resume to go on from it, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    ids = data.find_identities(folder)
    train_ids, test_ids = data.split_identities(ids.names, cfg.test_share)
    crop = _face_crop() if faces else None
    side = round(cfg.input_size * CROP_SLACK)
    pictures, labels = data.load_pictures(ids, train_ids, side, crop)
    log.info(
        "training on %d pictures of %d identities; %d identities held out", len(pictures), len(train_ids), len(test_ids)
    )

    backbone = build_backbone(cfg.arch, checkpoint)
    start_model = PooledBackbone(build_backbone(cfg.arch, checkpoint).trunk)  # untouched copy for "before"
    model = EmbeddingNet(backbone, cfg.dim, cfg.hidden)
    frozen = freeze(backbone, backbone.frozen_default if cfg.frozen_stages < 0 else cfg.frozen_stages)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    first_epoch, losses = 0, list[float]()
    if resume and state_path.exists():
        first_epoch, losses = _load_state(state_path, model, optimizer, cfg, train_ids)
        log.info("resuming after epoch %d of %d", first_epoch, cfg.epochs)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    _optimizer_to(optimizer, device)
    log.info("training on %s", device)

    for epoch in range(first_epoch, cfg.epochs):
        epoch_rng = np.random.default_rng([cfg.seed, epoch])  # the same batches whether resumed or not
        losses.append(_epoch(model, frozen, optimizer, pictures, labels, cfg, epoch_rng, progress, epoch))
        _save_state(state_path, model, optimizer, cfg, train_ids, epoch + 1, losses)
        log.info("epoch %d/%d: mean loss %.4f", epoch + 1, cfg.epochs, losses[-1])

    model.cpu()  # exported and checked on the CPU, like every model the runner loads
    result = TrainResult(out, out / "model.onnx", out / "start.onnx", train_ids, test_ids, losses)
    source = f"refinery train {cfg.arch} on {Path(folder).name} ({len(train_ids)} identities, {cfg.epochs} epochs)"
    _export(model, result.model, cfg, source, file_sha256(state_path), cfg.dim, normalized=True)
    _export(start_model, result.start, cfg, backbone.source, "", backbone.channels, normalized=False)
    if evaluate and test_ids:
        result.table = _before_after(ids, test_ids, result, faces)
    return result


def _epoch(
    model: EmbeddingNet,
    frozen: list[torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    pictures: np.ndarray,
    labels: np.ndarray,
    cfg: TrainConfig,
    rng: np.random.Generator,
    progress: Progress | None,
    epoch: int,
) -> float:
    batches = data.pk_batches(labels, cfg.identities_per_batch, cfg.pictures_per_identity, rng)
    advance = progress(f"epoch {epoch + 1}/{cfg.epochs}", len(batches)) if progress else (lambda loss: None)
    model.train()
    keep_frozen_eval(frozen)
    device = next(model.parameters()).device
    total = 0.0
    for rows in batches:
        x = augment(pictures[rows], cfg.input_size, cfg.erasing, rng).to(device)
        y = torch.from_numpy(labels[rows]).to(device)
        embeddings = model(x)
        if cfg.mining == "batch-hard":
            loss = batch_hard_loss(embeddings, y, cfg.margin)
        elif cfg.mining == "random":
            t = torch.from_numpy(data.random_triplets(labels[rows], rng)).to(device)
            loss = triplet_loss(embeddings[t[:, 0]], embeddings[t[:, 1]], embeddings[t[:, 2]], cfg.margin)
        else:
            raise RefineryError(f"train.mining = {cfg.mining!r}: choose batch-hard or random")
        optimizer.zero_grad()
        torch.autograd.backward(loss)  # what loss.backward() runs, which torch leaves unannotated
        optimizer.step()
        total += loss.item()
        advance(loss.item())
    return total / len(batches)


def augment(pictures: np.ndarray, size: int, erasing: float, rng: np.random.Generator) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, size, size) float 0..255: a random crop (position and a
    little scale), a random horizontal flip, and random erasing with probability `erasing`
    (a rectangle of 2-20% of the picture filled with noise)."""
    n, side = len(pictures), pictures.shape[1]
    x = torch.from_numpy(pictures).permute(0, 3, 1, 2).float()
    out = torch.empty((n, 3, size, size))
    for i in range(n):
        crop = int(rng.integers(size, side + 1))
        top, left = (int(v) for v in rng.integers(0, side - crop + 1, 2))
        patch = x[i : i + 1, :, top : top + crop, left : left + crop]
        if crop != size:
            patch = torch.nn.functional.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False)
        if rng.random() < 0.5:
            patch = patch.flip(3)
        out[i] = patch[0]
        if rng.random() < erasing:
            area = rng.uniform(0.02, 0.2) * size * size
            aspect = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
            h, w = (min(size, max(1, int(round(v)))) for v in (np.sqrt(area * aspect), np.sqrt(area / aspect)))
            top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            out[i, :, top : top + h, left : left + w] = torch.from_numpy(
                rng.uniform(0, 255, (3, h, w)).astype(np.float32)
            )
    return out


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Adam's moments of a resumed run, loaded on the CPU, onto the training device."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)


def _save_state(
    path: Path,
    model: EmbeddingNet,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    train_ids: list[str],
    epochs_done: int,
    losses: list[float],
) -> None:
    with output_path(path, Kind.CHECKPOINT) as tmp:  # a kill while saving leaves the previous epoch's one
        torch.save(
            {
                "refinery": CHECKPOINT_MARK,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epochs_done": epochs_done,
                "losses": losses,
                "config": dataclasses.asdict(cfg),
                "train_identities": train_ids,
            },
            tmp,
        )


def _load_state(
    path: Path, model: EmbeddingNet, optimizer: torch.optim.Optimizer, cfg: TrainConfig, train_ids: list[str]
) -> tuple[int, list[float]]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    settings = {k: v for k, v in state["config"].items() if k != "epochs"}
    if settings != {k: v for k, v in dataclasses.asdict(cfg).items() if k != "epochs"}:
        raise RefineryError(
            f"{path} was trained with other settings ({settings}); resume with the same [train] "
            "settings (only epochs may grow)"
        )
    if state["train_identities"] != train_ids:
        raise RefineryError(f"{path} was trained on other identities; resume on the same folder")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epochs_done"]), list(state["losses"])


def _export(
    model: torch.nn.Module, path: Path, cfg: TrainConfig, source: str, sha256: str, dim: int, normalized: bool
) -> None:
    """PATH.onnx + PATH.json through export-model's writer (parity checked)."""
    built = Built(model.eval(), (cfg.input_size, cfg.input_size), dim, "bilinear", source, sha256)
    spec = spec_of(f"{cfg.arch}-triplet-{dim}" if normalized else cfg.arch, built, normalized)
    images, _ = parity_images(None, spec)
    write_onnx(built.model, spec, path, DEFAULT_OPSET, images, torch_outputs(built.model, images), ExportResult(spec))


def _before_after(ids: data.Identities, test_ids: list[str], result: TrainResult, faces: bool) -> str:
    """`refinery eval` on the held-out identities (linked into OUT/heldout) with the starting
    backbone and the fine-tuned model."""
    from refinery.retrieval.evaluate import evaluate, table

    heldout = result.out / "heldout"
    _clear_heldout(heldout)
    placed = []
    for name in test_ids:
        for rel in ids.pictures[name]:
            target = heldout / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if Path(os.path.realpath(target.parent)) != Path(os.path.realpath(heldout)) / Path(rel).parent:
                raise RefineryError(
                    f"{target.parent} is a symbolic link out of {heldout}; refinery puts held-out "
                    "pictures only into real folders there: move it, or choose another --out"
                )
            try:
                os.link(ids.root / rel, target)
            except FileExistsError:
                raise RefineryError(
                    f"{target} is in the way (not put there by refinery); move it, or choose another --out"
                ) from None
            except OSError:  # another filesystem
                shutil.copy2(ids.root / rel, target)
            placed.append(rel)
    write_text_atomic(heldout / HELDOUT_LIST, json.dumps(placed))
    cfg = dataclasses.replace(Config(), run=dataclasses.replace(Config().run, cache=False))
    scores = evaluate(
        heldout, cfg, [str(result.start), str(result.model)], ["embedding"], k=5, faces=faces, device="cpu"
    )
    return table(scores, 5)


HELDOUT_LIST = ".refinery-heldout.json"  # the pictures refinery put into OUT/heldout


def _clear_heldout(heldout: Path) -> None:
    """Take away what an earlier run put into OUT/heldout (the files its list names), and
    nothing else: a folder of that name that refinery did not make is refused."""
    if not heldout.exists():
        return
    listing = heldout / HELDOUT_LIST
    try:
        placed = json.loads(listing.read_text()) if listing.is_file() and not listing.is_symlink() else None
    except (OSError, ValueError):
        placed = None
    if not isinstance(placed, list) or not all(isinstance(rel, str) for rel in placed):
        raise RefineryError(f"{heldout} exists and was not made by refinery train; move it, or choose another --out")
    real = Path(os.path.realpath(heldout))
    for rel in placed:
        path = heldout / rel
        # Only a file really below heldout/: a folder in the list's way may be a link planted out.
        if (
            ".." not in Path(rel).parts
            and not Path(rel).is_absolute()
            and path.is_file()
            and not path.is_symlink()
            and Path(os.path.realpath(path)) == real / rel
        ):
            path.unlink()
    listing.unlink()
    for folder in sorted((p for p in heldout.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def _face_crop() -> data.Crop:
    from refinery.retrieval.faces import largest_face

    return largest_face
