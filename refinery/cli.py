"""The `refinery` command. Each command parses options, makes one library call, and
turns refinery's errors into one-line messages. Heavy modules are imported inside the
commands that need them, so `refinery --help` is instant and the runner never sees torch.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from refinery import __version__
from refinery.errors import RefineryError

log = logging.getLogger("refinery")

# Exit codes: 0 success, 1 refinery error (bad model, parity failure, ...), 2 usage error,
# 3 finished but some input files could not be read (each named in the log).
EXIT_FILE_ERRORS = 3


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn RefineryError into click's one-line error (exit code 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RefineryError as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--model, --device, --batch-size: shared by every command that embeds."""
    func = click.option("--batch-size", type=click.IntRange(1), default=None,
                        help="Images per model call (config: model.batch_size).")(func)
    func = click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "coreml"]), default=None,
                        help="Execution provider; auto = CoreML on Apple Silicon, CUDA on NVIDIA, else CPU.")(func)
    func = click.option("--model", "model", default=None,
                        help="An exported .onnx model, or 'default' for the one that ships.")(func)
    return func


class _ClickHandler(logging.Handler):
    """Log records as plain lines on stderr, through tqdm so progress bars stay whole."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        tqdm.write(prefix + record.getMessage(), file=sys.stderr)


@click.group()
@click.version_option(__version__, prog_name="refinery")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Errors only; no progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Clean large image datasets: quality, exact/near and semantic duplicates."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    root = logging.getLogger("refinery")
    root.handlers[:] = [_ClickHandler()]
    root.setLevel(level)
    root.propagate = False
    ctx.obj = {"quiet": quiet}


@main.command("embed")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output .npz with arrays `paths` (relative to FOLDER) and `vectors` (float32).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="A refinery TOML config (default: the shipped configs/refinery.toml).")
@model_options
@click.pass_context
@handle_errors
def embed_cmd(ctx: click.Context, folder: Path, out: Path, config_path: Path | None,
              model: str | None, device: str | None, batch_size: int | None) -> None:
    """Embed every image under FOLDER with the runner (onnxruntime, no torch).

    Example: refinery embed photos/ --out vectors.npz
    """
    from tqdm import tqdm

    from refinery.config import load_config
    from refinery.images import list_images
    from refinery.runner.embed import embed_folder, save_npz
    from refinery.runner.session import Embedder

    cfg = load_config(config_path).model.override(model=model, device=device, batch_size=batch_size)
    embedder = Embedder(cfg.path, device=cfg.device, batch_size=cfg.batch_size, threads=cfg.threads)
    total = len(list_images(folder))
    with tqdm(total=total, unit="img", disable=ctx.obj["quiet"] or None, file=sys.stderr) as bar:
        result = embed_folder(folder, embedder, progress=bar.update)
    save_npz(result, out)
    log.info("wrote %s: %d vectors of %d-d; %d files unreadable",
             out, len(result.paths), result.vectors.shape[1], len(result.errors))
    if result.errors:
        ctx.exit(EXIT_FILE_ERRORS)


@main.command("export-model")
@click.option("--arch", default="fastreid-r50-ibn", show_default=True,
              help="Architecture to export; `refinery export-model --list` shows them.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint file (fastreid: default configs/vehicleid_bot_R50-ibn.pth; "
                   "ImageNet archs: the weights inside their package).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Output prefix: writes PREFIX.onnx, PREFIX.json, PREFIX.mlpackage. "
                   "Default: models/<arch>.")
@click.option("--format", "formats", default="onnx,coreml", show_default=True,
              help="Comma-separated: onnx, coreml.")
@click.option("--opset", type=click.IntRange(17), default=18, show_default=True, help="ONNX opset.")
@click.option("--fp16", is_flag=True, help="Also write PREFIX.fp16.onnx (float16 weights).")
@click.option("--int8", "int8_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Also write PREFIX.int8.onnx, static QDQ calibrated on images in this folder.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Real images to check parity on (default: synthetic pictures).")
@click.option("--stem-pool", type=click.Choice(["pad", "ceil"]), default=None,
              help="fastreid stem max-pool; default from the checkpoint's layout (old zoo: pad).")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow full unpickling of a checkpoint that holds more than tensors.")
@click.option("--list", "list_only", is_flag=True, help="List the architectures and exit.")
@handle_errors
def export_model_cmd(arch: str, checkpoint: Path | None, out: Path | None, formats: str, opset: int,
                     fp16: bool, int8_dir: Path | None, images: Path | None, stem_pool: str | None,
                     trust_checkpoint: bool, list_only: bool) -> None:
    """Export a PyTorch model to ONNX (and Core ML) once, and prove parity.

    Example: refinery export-model --checkpoint configs/vehicleid_bot_R50-ibn.pth --out models/vehicleid
    """
    from refinery.export.registry import ARCHS, get_arch

    if list_only:
        for a in ARCHS.values():
            click.echo(f"{a.name:20s} {a.description}\n{'':20s} weights: {a.weights}")
        return
    get_arch(arch)  # fail on an unknown name before importing torch
    try:
        from refinery.export.pipeline import ExportOptions, export_model
    except ImportError as e:
        raise click.ClickException(f"export needs PyTorch and friends ({e.name} is missing): "
                                   "pip install 'refinery[export]'") from e

    opts = ExportOptions(
        arch=arch, out=out or Path("models") / arch, checkpoint=checkpoint,
        formats=tuple(f.strip() for f in formats.split(",") if f.strip()), opset=opset, fp16=fp16,
        int8_calibration=int8_dir, images=images, stem_pool=stem_pool,
        trust_checkpoint=trust_checkpoint)
    result = export_model(opts, step=lambda s: log.info("%s ...", s))
    log.info("parity on %s", result.parity_source)
    for report in result.parity:
        click.echo(report.line())
    if result.int8:
        click.echo(result.int8.line())
    if result.coreml_note:
        click.echo(result.coreml_note)
    for path in result.files:
        click.echo(f"wrote {path}")
