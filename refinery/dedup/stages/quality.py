"""Stage 1, quality: too blurred, too dark, burnt out. A millisecond a picture; no network."""

from __future__ import annotations

from typing import Protocol

from refinery.config import QualityConfig
from refinery.dedup.decisions import KEEP, REMOVE
from refinery.dedup.state import Run, StageStats


class Measured(Protocol):
    """What the quality stage looks at (a picture's Features; a video frame's measures)."""

    width: int
    height: int
    brightness: float
    sharpness: float


def judge(f: Measured, cfg: QualityConfig) -> str | None:
    """Why `f` fails the quality stage, or None if it passes."""
    if min(f.width, f.height) < cfg.min_side:
        return f"too small: {f.width}x{f.height} px, a side under {cfg.min_side}"
    if f.brightness < cfg.min_brightness:
        return f"too dark: mean gray {f.brightness:.1f} < {cfg.min_brightness}"
    if f.brightness > cfg.max_brightness:
        return f"burnt out: mean gray {f.brightness:.1f} > {cfg.max_brightness}"
    if f.sharpness < cfg.min_sharpness:
        return f"blurred: Laplacian variance {f.sharpness:.2f} < {cfg.min_sharpness}"
    return None


def run_quality(run: Run, stages: dict[str, StageStats]) -> None:
    """Stage 1: mark what the pass judged too blurred, dark, bright or small (judged there,
    from the one decode of each file)."""
    decisions = run.decisions
    stages["quality"].seen = len(run.judged())
    for row, reason in run.quality.items():
        if decisions.code[row] == KEEP:
            decisions.remove(row, "quality", reason)
    stages["quality"].removed = len(decisions.rows(REMOVE))
