"""What every command of `refinery` shares: the command group, its options, error handling
(one line, an exit code), settings, the model, the cache, progress bars and Ctrl-C.

Each command parses options, makes one library call, and turns refinery's errors into
one-line messages. Heavy modules are imported inside the commands that need them, so
`refinery --help` is instant and the runner never sees torch.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from refinery import __version__
from refinery.errors import ConfigError, RefineryError
from refinery.io.names import printable

if TYPE_CHECKING:
    from refinery.config import Config
    from refinery.io.cache import FeatureCache
    from refinery.runner.session import Embedder

log = logging.getLogger("refinery")

# Exit codes: 0 success, 1 refinery error (bad model, parity failure, ...), 2 usage error,
# 3 finished but some input files could not be read or moved (each named on an error line),
# 130 stopped by Ctrl-C or SIGTERM (the report covers what was done; the journal is whole).
EXIT_FILE_ERRORS = 3
EXIT_INTERRUPTED = 130


class SettingError(click.ClickException):
    """A bad setting (config file or --set): a usage error, exit code 2, one line."""

    exit_code = 2


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn RefineryError into click's one-line error (exit code 1; 2 for a bad setting),
    Ctrl-C into exit code 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as e:
            raise SettingError(printable(e)) from e
        except RefineryError as e:
            raise click.ClickException(printable(e)) from e
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A click callback: NaN and infinity pass click's FloatRange, and no option wants them."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --set, --model, --device, --batch-size: shared by every command that embeds."""
    func = click.option(
        "--set",
        "assignments",
        multiple=True,
        metavar="SECTION.KEY=VALUE",
        help="Override one setting, e.g. --set semantic.threshold=0.96 (repeatable).",
    )(func)
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="A refinery TOML config (default: `refinery config --show`).",
    )(func)
    func = click.option(
        "--batch-size", type=click.IntRange(1), default=None, help="Images per model call (config: model.batch_size)."
    )(func)
    func = click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda", "coreml"]),
        default=None,
        help="Execution provider; auto = CoreML on Apple Silicon, CUDA on NVIDIA, else CPU.",
    )(func)
    func = click.option(
        "--model", "model", default=None, help="An exported .onnx model, or 'default' for the one that ships."
    )(func)
    return func


@contextmanager
def stop_on_signal() -> Iterator[threading.Event]:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets; the library checks it between batches and
    between files, so a run stops with its report, cache and journal whole. A second Ctrl-C
    quits at once."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log.warning("stopping after the work under way (Ctrl-C again to quit at once)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _ClickHandler(logging.Handler):
    """Log records as plain lines on stderr, through tqdm so progress bars stay whole."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        tqdm.write(prefix + printable(record.getMessage()), file=sys.stderr)


def echo(text: str = "", err: bool = False, lines: bool = False) -> None:
    """click.echo for refinery's output: what a name holds is shown, never acted on by the
    terminal (refinery/io/names.py), a newline in it too, so a name cannot forge a line. With
    `lines`, `text` is several lines whose names were escaped already: its line breaks stay."""
    click.echo(printable(text, keep_newlines=lines), err=err)


class _Group(click.Group):
    """The command group, whose usage errors show a name escaped like every other line."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as e:
            setattr(e, "message", printable(e.message))  # noqa: B010 (typeshed marks it final)
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group)
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


def settings(
    config_path: Path | None,
    assignments: tuple[str, ...],
    model: str | None,
    device: str | None,
    batch_size: int | None,
) -> Config:
    """The config file, then --set overrides, then the named flags."""
    import dataclasses

    from refinery.config import apply_overrides, load_config

    cfg = apply_overrides(load_config(config_path), list(assignments))
    return dataclasses.replace(cfg, model=cfg.model.override(model=model, device=device, batch_size=batch_size))


def make_embedder(cfg: Config) -> Embedder:
    from refinery.runner.session import embedder_for

    return embedder_for(cfg.model)


def progress_bar(ctx: click.Context, label: str, total: int, unit: str = "img") -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, desc=printable(label), unit=unit, disable=ctx.obj["quiet"] or None, file=sys.stderr, leave=False
    )


class ProgressBars:
    """A progress reporter for the library (label, total) -> advance; closes its bars on exit."""

    def __init__(self, ctx: click.Context):
        self.ctx = ctx
        self.bars: list[Any] = []

    def __call__(self, label: str, total: int, unit: str = "img") -> Callable[[int], None]:
        bar = progress_bar(self.ctx, label, total, unit)
        self.bars.append(bar)
        advance: Callable[[int], None] = bar.update
        return advance

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars:
            bar.close()


def open_cache(cfg: Config, embedder: Embedder, folder: Path, variant: str = "") -> FeatureCache | None:
    """The feature cache for this model and folder, or None when switched off."""
    from refinery.io import cache

    return cache.open_cache(cfg, embedder, folder, variant)
