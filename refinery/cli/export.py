"""`refinery export-model`: a PyTorch checkpoint to ONNX and Core ML, once (extra [export])."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from refinery import install_hint
from refinery.cli.common import (
    echo,
    handle_errors,
    main,
)
from refinery.errors import RefineryError
from refinery.io.outputs import Kind, Output, check_outputs

if TYPE_CHECKING:
    from refinery.export.pipeline import ExportResult

log = logging.getLogger("refinery")


@contextmanager
def export_lock(folder: Path) -> Iterator[None]:
    """One export at a time into `folder`: a second would replace files the first is still
    checking (a CLIP export's towers are bound to each other by their hashes). The lock is on
    the folder itself (flock), so no lock file is left there."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RefineryError(
                f"{folder}: another `refinery export-model` is writing there; wait for it to "
                "finish, or give another --out"
            ) from None
        yield
    finally:
        os.close(fd)


def export_outputs(prefix: Path, formats: tuple[str, ...], fp16: bool, int8: bool, clip: bool) -> list[Output]:
    """Every file an export will write under its prefix (a Core ML package is checked by the
    Core ML export: only an earlier package is replaced)."""
    models = [prefix.with_suffix(".onnx")] if clip or "onnx" in formats or fp16 or int8 else []
    if clip:
        models.append(prefix.with_suffix(".text.onnx"))
    if fp16:
        models.append(prefix.with_suffix(".fp16.onnx"))
    if int8:
        models.append(prefix.with_suffix(".int8.onnx"))
    outputs = [Output(m, "--out", Kind.ONNX) for m in models] + [
        Output(m.with_suffix(".json"), "--out", Kind.SPEC) for m in models
    ]
    if clip:
        outputs.append(Output(prefix.with_suffix(".vocab.txt.gz"), "--out", Kind.VOCAB))
    return outputs


@main.command("export-model")
@click.option(
    "--arch",
    default="fastreid-r50-ibn",
    show_default=True,
    help="Architecture to export; `refinery export-model --list` shows them.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file (fastreid: default configs/vehicleid_bot_R50-ibn.pth; "
    "ImageNet archs: the weights inside their package; CLIP: an open_clip checkpoint).",
)
@click.option(
    "--pretrained",
    default=None,
    metavar="TAG",
    help="CLIP only: weights open_clip downloads by name (needs internet), e.g. laion2b_s34b_b79k.",
)
@click.option(
    "--calibrate",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A labelled corpus (images/ and truth.json, as the shared bench/make_corpus.py writes): record this "
    "model's semantic threshold in its spec.",
)
@click.option(
    "--image-size",
    type=click.IntRange(32),
    default=None,
    hidden=True,
    help="CLIP only: another input side than the architecture's (tests use small ones).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Output prefix: writes PREFIX.onnx, PREFIX.json, PREFIX.mlpackage. Default: models/<arch>.",
)
@click.option("--format", "formats", default="onnx,coreml", show_default=True, help="Comma-separated: onnx, coreml.")
@click.option("--opset", type=click.IntRange(17), default=18, show_default=True, help="ONNX opset.")
@click.option("--fp16", is_flag=True, help="Also write PREFIX.fp16.onnx (float16 weights).")
@click.option(
    "--int8",
    "int8_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Also write PREFIX.int8.onnx, static QDQ calibrated on images in this folder.",
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Real images to check parity on (default: synthetic pictures).",
)
@click.option(
    "--stem-pool",
    type=click.Choice(["pad", "ceil"]),
    default=None,
    help="fastreid stem max-pool; default from the checkpoint's layout (old zoo: pad).",
)
@click.option(
    "--trust-checkpoint", is_flag=True, help="Allow full unpickling of a checkpoint that holds more than tensors."
)
@click.option("--list", "list_only", is_flag=True, help="List the architectures and exit.")
@handle_errors
def export_model_cmd(
    arch: str,
    checkpoint: Path | None,
    pretrained: str | None,
    calibrate: Path | None,
    image_size: int | None,
    out: Path | None,
    formats: str,
    opset: int,
    fp16: bool,
    int8_dir: Path | None,
    images: Path | None,
    stem_pool: str | None,
    trust_checkpoint: bool,
    list_only: bool,
) -> None:
    """Export a PyTorch model to ONNX (and Core ML) once, and prove parity.

    Example: refinery export-model --checkpoint configs/vehicleid_bot_R50-ibn.pth --out models/vehicleid

    CLIP (search by words): refinery export-model --arch openclip-vit-b-32 --pretrained laion2b_s34b_b79k
    --out models/clip writes models/clip.onnx (images), models/clip.text.onnx (words) and the vocabulary.
    """
    from refinery.export.registry import ARCHS, get_arch

    if list_only:
        for a in ARCHS.values():
            echo(f"{a.name:20s} {a.description}\n{'':20s} weights: {a.weights}", lines=True)
        echo(
            f"{'openclip:NAME':20s} any other open_clip model with its own text transformer: a built-in "
            "name (ViT-L-14) or local-dir:FOLDER"
        )
        return
    clip = bool(get_arch(arch).open_clip_name)  # an unknown name fails here, before torch is imported
    out = out or Path("models") / arch
    wanted = tuple(f.strip() for f in formats.split(",") if f.strip())
    # Before torch is imported: a refusal is instant.
    check_outputs(
        export_outputs(out, wanted, fp16, int8_dir is not None, clip), inputs=[checkpoint, images, int8_dir, calibrate]
    )
    try:
        from refinery.export.pipeline import ExportOptions, export_model

        if clip:
            from refinery.export.openclip import export_clip
    except ImportError as e:
        raise click.ClickException(
            f"export needs PyTorch and friends ({e.name} is missing): {install_hint('export')}"
        ) from e

    opts = ExportOptions(
        arch=arch,
        out=out,
        checkpoint=checkpoint,
        formats=wanted,
        opset=opset,
        fp16=fp16,
        int8_calibration=int8_dir,
        images=images,
        stem_pool=stem_pool,
        trust_checkpoint=trust_checkpoint,
        calibrate=calibrate,
        pretrained=pretrained,
        image_size=image_size,
    )
    step = lambda s: log.info("%s ...", s)  # noqa: E731
    with export_lock(Path(opts.out).parent):
        try:
            result = export_clip(opts, get_arch(arch), step) if clip else export_model(opts, step)
        except OSError as e:  # a full disk, a folder that went away: each file goes in whole or not at all
            raise RefineryError(
                f"{e.filename or Path(opts.out).parent}: cannot write the model: {e.strerror or e}; "
                "the export stopped, and no file it wrote is half-written"
            ) from None
    tell_result(result)


def tell_result(result: ExportResult) -> None:
    """What an export proved and wrote, a line each."""
    log.info("parity on %s", result.parity_source)
    if result.calibration:
        echo(result.calibration)
    else:
        from refinery.config import SemanticConfig

        log.info(
            "semantic threshold not calibrated: dedup will use semantic.threshold (%.3f, chosen for the "
            "shipped MobileNetV2); --calibrate CORPUS records one for this model",
            SemanticConfig().threshold,
        )
    for report in result.parity:
        echo(report.line())
    if result.int8:
        echo(result.int8.line())
    if result.coreml_note:
        echo(result.coreml_note)
    for path in result.files:
        echo(f"wrote {path}")
