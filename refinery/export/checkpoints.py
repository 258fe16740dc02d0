"""Reading PyTorch checkpoints strictly: every tensor placed, or a loud, specific error."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from refinery.errors import CheckpointMismatch, CheckpointNotFound


def read_tensors(path: Path, trust: bool = False, missing_hint: str = "") -> dict[str, torch.Tensor]:
    """The state dict in `path`: a plain one, or the `model` entry of a training checkpoint.

    Only tensors are unpickled unless `trust` is set. A `module.` prefix (DataParallel) is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFound(f"{path}: checkpoint not found" + (f". {missing_hint}" if missing_hint else ""))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:
        hint = "" if trust else " (if you trust this file, retry with --trust-checkpoint)"
        raise CheckpointMismatch(f"{path}: cannot read as a PyTorch checkpoint: {e}{hint}") from e
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatch(
            f"{path}: not a checkpoint of tensors: expected a state dict, or a dict whose 'model' entry is one"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_keys(
    expected: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    name: str,
    arch: str,
    optional: Iterable[str] = (),
    hints: Iterable[tuple[str, str]] = (),
) -> None:
    """Raise CheckpointMismatch unless `state` fills `expected` exactly, shapes included.

    `optional` keys may be absent (num_batches_tracked always may); `hints` are
    (substring of an unexpected key, advice) pairs added to the message when they match.
    """
    optional = set(optional)
    missing = [k for k in expected if k not in state and k not in optional and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or wrong_shape):
        return
    msg = f"{name}: checkpoint does not fit {arch}"
    for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            msg += f"\n  {title} ({len(keys)}): {shown}"
    for needle, advice in hints:
        if any(needle in k for k in unexpected):
            msg += f"\n  hint: {advice}"
            break
    raise CheckpointMismatch(msg)
