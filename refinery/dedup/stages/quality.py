"""Stage 1, quality: blank, too dark, burnt out, blurred - detail lost, not a level.

A person keeps a product on white, a logo on black, a night street with lit windows and a
smooth sky with a sharp horizon; what they drop has lost its detail: to one flat colour, to
black, to white, to a defocus that widens every edge, to a smear that widens the edges of
one direction. Each is judged from figures measured once on the picture 320 px across
(refinery/features.py quality_figures; a few milliseconds), and each reason says what was
measured against what. No network, no model.
"""

from __future__ import annotations

from dataclasses import dataclass

from refinery.config import QualityConfig
from refinery.dedup.decisions import KEEP, REMOVE, StageName
from refinery.dedup.funnel import Funnel
from refinery.features import Features
from refinery.reasons import Reason, ReasonCode

TOO_SMALL, TOO_DARK, BLANK = ReasonCode.TOO_SMALL, ReasonCode.TOO_DARK, ReasonCode.BLANK
BURNT_OUT, BLURRED, MOTION_BLUR = ReasonCode.BURNT_OUT, ReasonCode.BLURRED, ReasonCode.MOTION_BLUR


@dataclass(frozen=True, slots=True)
class Measures:
    """What the quality stage looks at of a video frame. A picture's Features carry the same
    figures (features.quality_figures and colour_clipping measure both)."""

    width: int
    height: int
    sharpness: float
    edge_width: float
    smear_width: float
    smear_angle: float
    cross_width: float
    light: float
    shade: float
    white: float
    white_edge: float
    clipped: float
    clipped_colour: float
    detail: float
    noise: float


def judge(f: Features | Measures, cfg: QualityConfig) -> Reason | None:
    """Why `f` fails the quality stage (a code, and words a user reads), or None if it passes."""
    if not cfg.enabled:
        return None
    if min(f.width, f.height) < cfg.min_side:
        return Reason(TOO_SMALL, f"too small: {f.width}x{f.height} px, a side under {cfg.min_side}")
    return _lost_to_black(f, cfg) or _lost_to_white(f, cfg) or _lost_to_blur(f, cfg)


def _lost_to_black(f: Features | Measures, cfg: QualityConfig) -> Reason | None:
    """Too dark (no light, or none above the noise), or blank (one flat colour)."""
    if f.light < cfg.min_light:
        return Reason(
            TOO_DARK,
            f"too dark: its brightest parts reach gray {f.light:.0f} of 255 (under "
            f"{cfg.min_light:.0f}): the detail is lost to black",
        )
    if f.detail < cfg.min_detail:
        return Reason(BLANK, f"blank: detail in {f.detail:.2%} of it (under {cfg.min_detail:.1%}): one flat colour")
    if f.light < cfg.dark_light and f.light < cfg.min_light_to_noise * f.noise:
        return Reason(
            TOO_DARK,
            f"too dark: its brightest parts reach gray {f.light:.0f} of 255, "
            f"{f.light / f.noise:.0f}x its noise (under {cfg.min_light_to_noise:g}x): what "
            "detail there is, is lost in the noise",
        )
    return None


def _lost_to_white(f: Features | Measures, cfg: QualityConfig) -> Reason | None:
    """Burnt out: washed out, or clipped to white and fading into it."""
    if f.shade > cfg.max_shade:
        return Reason(
            BURNT_OUT,
            f"burnt out: even its darkest detail is gray {f.shade:.0f} of 255 (over "
            f"{cfg.max_shade:.0f}): washed out to white",
        )
    if f.white >= cfg.max_white and f.white_edge < cfg.min_white_edge and f.detail >= cfg.min_white_detail:
        return Reason(
            BURNT_OUT,
            f"burnt out: {f.white:.0%} of it clipped to white, fading into the rest (a crisp "
            f"edge on {f.white_edge:.0%} of its border, under {cfg.min_white_edge:.0%}): the "
            "detail is lost to white",
        )
    if (
        f.clipped >= cfg.max_clipped
        and f.clipped_colour >= cfg.min_clipped_colour
        and f.white_edge < cfg.max_clipped_edge
    ):
        return Reason(
            BURNT_OUT,
            f"burnt out: {f.clipped:.0%} of it clipped to white, fading into it through "
            f"clipped colours (on {f.clipped_colour:.0%} of its border, over "
            f"{cfg.min_clipped_colour:.0%}): the detail is lost to white",
        )
    return None


def _lost_to_blur(f: Features | Measures, cfg: QualityConfig) -> Reason | None:
    """Blurred in every direction (or soft and without fine detail), or smeared in one."""
    if f.edge_width > cfg.max_edge_width:
        return Reason(
            BLURRED,
            f"blurred: even its sharpest edges are {f.edge_width:.1f} px wide in every direction "
            f"(over {cfg.max_edge_width:g} px, seen 320 px across)",
        )
    if f.edge_width > cfg.soft_edge_width and f.sharpness < cfg.min_soft_detail:
        return Reason(
            BLURRED,
            f"blurred: even its sharpest edges are {f.edge_width:.1f} px wide (over "
            f"{cfg.soft_edge_width:g} px, seen 320 px across) and it holds little fine detail "
            f"(Laplacian variance {f.sharpness:.1f}, under {cfg.min_soft_detail:g})",
        )
    if (
        f.cross_width > 0
        and f.smear_width > cfg.max_smear_width
        and f.smear_width > cfg.min_smear_ratio * f.cross_width
    ):
        return Reason(
            MOTION_BLUR,
            f"motion blur: edges smeared {f.smear_width:.1f} px at {f.smear_angle:.0f} "
            f"degrees (over {cfg.max_smear_width:g} px, "
            f"{f.smear_width / f.cross_width:.1f}x as wide as across it, seen 320 px across)",
        )
    return None


class Quality:
    """Stage 1: removes what is blank, too dark, burnt out, blurred or too small. Each picture
    is judged by `judge` once, where the pass decodes it (whether it is worth embedding
    hangs on it); this stage marks those judgments among the files the run judges."""

    name = StageName.QUALITY

    def run(self, funnel: Funnel) -> None:
        run, stats = funnel.run, funnel.stats[self.name]
        decisions = run.decisions
        stats.seen = len(run.kept_rows())
        for row, defect in run.quality.items():
            if decisions.code[row] == KEEP:
                decisions.remove(row, self.name, defect.text, reason_code=defect.code)
        stats.removed = len(decisions.rows(REMOVE))
