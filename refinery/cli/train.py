"""`refinery train`: fine-tune an embedding on identity folders (extra [train])."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from refinery import install_hint
from refinery.cli.common import (
    echo,
    handle_errors,
    main,
    progress_bar,
    settings,
)
from refinery.errors import RefineryError

log = logging.getLogger("refinery")


@main.command("train")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for checkpoint.pt, model.onnx (+ .json), start.onnx and heldout/.",
)
@click.option(
    "--arch",
    type=click.Choice(["mobilenetv2", "resnet50", "fastreid-r50-ibn"]),
    default=None,
    help="Backbone (default: train.arch, mobilenetv2).",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Backbone weights (fastreid-r50-ibn needs one; mobilenetv2 defaults to its ImageNet weights).",
)
@click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs (default: train.epochs).")
@click.option("--faces", is_flag=True, help="Crop the largest face first (Haar cascade), as retrieval does.")
@click.option("--resume", is_flag=True, help="Go on from OUT/checkpoint.pt (same settings; epochs may grow).")
@click.option("--no-eval", is_flag=True, help="Skip the before/after table on the held-out identities.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a setting, e.g. --set train.margin=0.3 (see `refinery config --show`).",
)
@click.pass_context
@handle_errors
def train_cmd(
    ctx: click.Context,
    folder: Path,
    out: Path,
    arch: str | None,
    checkpoint: Path | None,
    epochs: int | None,
    faces: bool,
    resume: bool,
    no_eval: bool,
    config_path: Path | None,
    assignments: tuple[str, ...],
) -> None:
    """Fine-tune an embedding with a triplet loss on FOLDER's identity sub-folders (extra [train]).

    One sub-folder per identity; a share of the identities (train.test_share) is held out, by
    name, for a before/after `refinery eval`. Writes OUT/model.onnx, which `refinery dedup
    --model` and `refinery index --model` take as it is.

    Example: refinery train people/ --out runs/people --epochs 3
    """
    from refinery.config import apply_overrides
    from refinery.dedup.actions import check_destination
    from refinery.io.outputs import Kind, Output, check_outputs

    check_destination(folder, out, "--out")  # OUT/heldout inside FOLDER would be taken for an identity
    check_outputs(
        [Output(out / "checkpoint.pt", "--out", Kind.CHECKPOINT)]
        + [
            Output(out / f"{stem}{suffix}", "--out", kind)
            for stem in ("model", "start")
            for suffix, kind in ((".onnx", Kind.ONNX), (".json", Kind.SPEC))
        ],
        inputs=[folder, checkpoint, config_path],
    )
    try:
        from refinery.train.loop import train
    except ImportError as e:
        raise RefineryError(f"refinery train needs the [train] extra: {install_hint('train')} ({e})") from None
    cfg = apply_overrides(
        settings(config_path, assignments, None, None, None),
        [f"train.arch={arch}"] * bool(arch) + [f"train.epochs={epochs}"] * bool(epochs),
    )
    bars: list[Any] = []

    def progress(label: str, total: int) -> Callable[[float], None]:
        bars.append(progress_bar(ctx, label, total))
        bar = bars[-1]
        bar.unit = "batch"

        def advance(loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(1)

        return advance

    try:
        result = train(folder, out, cfg.train, checkpoint, faces, resume, progress, evaluate=not no_eval)
    finally:
        for bar in bars:
            bar.close()
    echo(
        f"trained on {len(result.train_identities)} identities, held out {len(result.test_identities)}; "
        f"mean loss per epoch: {', '.join(f'{x:.4f}' for x in result.losses)}"
    )
    if result.table:
        echo(result.table, lines=True)
    echo(f"wrote {result.model} (use: refinery dedup DIR --model {result.model})")
