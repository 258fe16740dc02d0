"""refinery's settings: a TOML file (refinery/configs/refinery.toml holds the defaults), then flags.

The dataclasses below are also the schema: each key's type is its annotation, and its allowed
range or choices sit in the field's metadata (`between`, `at_least`, `one_of`). `check` tests
one value against that; `validate` tests a whole Config, rules between keys included.
load_config, apply_overrides and ModelConfig.override all go through them, so a bad value is
a one-line ConfigError before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from refinery.errors import ConfigError, RefineryError
from refinery.io.fileio import read_regular
from refinery.io.names import is_plain_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def between(
    default: Any, low: float, high: float, doc: str = "", *, open_low: bool = False, open_high: bool = False
) -> Any:
    """A field whose value must lie in [low, high] (open at an end where told)."""
    return field(
        default=default, metadata={"low": low, "high": high, "open_low": open_low, "open_high": open_high, "doc": doc}
    )


def at_least(default: Any, low: float, doc: str = "") -> Any:
    """A field whose value must be `low` or more."""
    return field(default=default, metadata={"low": low, "doc": doc})


def one_of(default: str, *choices: str, doc: str = "") -> Any:
    """A field whose value must be one of `choices`."""
    return field(default=default, metadata={"choices": choices, "doc": doc})


@dataclass(frozen=True)
class ModelConfig:
    path: str = "default"  # "default" = refinery/models/default.onnx, else a path to an .onnx file
    device: str = one_of("auto", "auto", "cpu", "cuda", "coreml", doc="onnxruntime execution provider")
    # Per worker; 8 keeps onnxruntime's activations small and runs as fast as 32. Above 1024 one
    # batch of 224 px pictures alone takes gigabytes.
    batch_size: int = between(8, 1, 1024, "images per model call")
    threads: int = at_least(0, 0, "onnxruntime threads per model run; 0 = 1")

    def override(self, **flags: Any) -> ModelConfig:
        """A copy with every flag that was given (not None) put over the file's value, checked."""
        changes = {("path" if k == "model" else k): v for k, v in flags.items() if v is not None}
        schema = {name: (kind, meta) for name, kind, meta in _keys(ModelConfig)}
        unknown = sorted(changes.keys() - schema.keys())
        if unknown:
            raise ConfigError(f"no model setting(s) {', '.join(unknown)}; known: {', '.join(schema)}")
        return dataclasses.replace(self, **{k: check("model", k, v, *schema[k]) for k, v in changes.items()})


@dataclass(frozen=True)
class QualityConfig:
    # A defect is detail lost, not a level: each figure is measured on the gray picture 320 px
    # across (refinery/features.py quality_figures; docs/dedup.md, "Quality").
    enabled: bool = True  # false (or dedup --no-quality): every picture passes
    min_side: int = at_least(32, 1, "pixels; a picture with a shorter side is no photo to keep")
    # Blank: detail (a 3x3 neighbourhood of the picture reduced 4x spanning 6 gray levels) in
    # less than this share of it - one flat colour, a lens cap, a white wall.
    min_detail: float = between(0.003, 0, 1, "share of the picture with any detail")
    # Too dark: its brightest parts (99.5th percentile, noise averaged away) stay below this
    # gray level - the detail is lost to black. A logo on black or a night street with lit
    # windows reaches far above it.
    min_light: float = between(32.0, 0, 255, "gray level the brightest parts must reach")
    # Too dark, too, when what light there is stays under dark_light and within this many
    # times the noise (an underexposed shot's sensor noise; a clean dark design has none).
    dark_light: float = between(60.0, 0, 255, "gray level under which the noise is weighed")
    min_light_to_noise: float = at_least(60.0, 0, "brightest level over the noise's standard deviation")
    # Burnt out: at least this share is clipped to white with nothing in it ...
    max_white: float = between(0.3, 0, 1, "share of the picture clipped to white")
    # ... and that white fades into the picture rather than ending at a crisp edge (a product
    # on a white background ends at its outline; a blown-out sky or face does not) ...
    min_white_edge: float = between(0.2, 0, 1, "share of the white's border that is a crisp edge")
    # ... in a picture with detail elsewhere (a pale design with a white field is no blown photo) ...
    min_white_detail: float = between(0.3, 0, 1, "share of the picture with detail")
    # ... or even its darkest detail stays above this gray level (washed out to white).
    max_shade: float = between(190.0, 0, 255, "gray level the darkest detail must reach below")
    # Burnt out, in colour: at least this share clipped to white in every channel ...
    max_clipped: float = between(0.1, 0, 1, "share of the picture clipped to white in every channel")
    # ... fading into the rest through colours clipped in one channel (exposure clips a
    # colour's strongest channel first; a high-key picture's colours fade to white together) ...
    min_clipped_colour: float = between(0.1, 0, 1, "share of the clipped white's border in clipped colour")
    # ... that white not ending at an object's crisp outline (a product on white).
    max_clipped_edge: float = between(0.7, 0, 1, "share of the white's border that is a crisp edge")
    # Blurred: even its sharpest edges are wider than this, in every direction (defocus), in
    # pixels of the picture 320 px across (a clean step is 2 px, a Gaussian of sigma s ~2.5 s).
    max_edge_width: float = at_least(4.5, 0, "pixels, at 320 px across")
    # Blurred, too: its sharpest edges wider than this and ...
    soft_edge_width: float = at_least(3.9, 0, "pixels, at 320 px across")
    # ... little fine detail anywhere: the variance of the Laplacian (of the picture 320 px
    # across) under this. Either alone is no proof: a soft old scan has soft edges, a sky over
    # a sharp horizon little fine detail.
    min_soft_detail: float = at_least(20.0, 0, "variance of the Laplacian")
    # Motion blur: the sharpest edges of one direction wider than this ...
    max_smear_width: float = at_least(4.25, 0, "pixels, at 320 px across")
    # ... and this many times wider than across it (a smear leaves the edges across its path sharp).
    min_smear_ratio: float = at_least(1.5, 1, "smeared over across edge width")


@dataclass(frozen=True)
class NearConfig:
    # Candidates: close in either hash (Hamming distance of 64 bits, hence 0..64)...
    max_phash: int = between(8, 0, 64, "Hamming distance of the 64-bit pHash")
    max_dhash: int = between(10, 0, 64, "Hamming distance of the 64-bit dHash")
    # ...confirmed by the 16x16 gray thumbnails: on fixed-camera data different objects on
    # one background come within a few hash bits, but their thumbnails differ. A correlation
    # below 0 would match inverted pictures, never a copy.
    min_correlation: float = between(0.99, 0, 1, "correlation of 16x16 gray thumbnails")
    # Up to this many pictures the hashes propose candidates (exact, quadratic); beyond, the
    # thumbnails are searched in an IVF index probing `nprobe` lists (benchmarks/README.md).
    exact_up_to: int = at_least(100_000, 0, "pictures searched exactly; 0 = always the IVF index")
    nprobe: int = at_least(8, 1, "IVF lists searched per picture")


@dataclass(frozen=True)
class SemanticConfig:
    # Below 0.5 the cosine of unrelated pictures passes for every embedding model refinery
    # ships or trains: a threshold there merges almost the whole folder into one group.
    threshold: float = between(0.955, 0.5, 1.0, "cosine similarity above which two pictures are one")
    # Remove a picture only if it is itself similar to its group's keeper, not merely chained
    # to it through other pictures (A~B~C with A and C unlike).
    chain_guard: bool = True
    # Up to this many pictures the pair search is exact (quadratic); beyond, an IVF index
    # probes `nprobe` lists per picture (benchmarks/README.md, "Semantic stage at scale").
    exact_up_to: int = at_least(100_000, 0, "pictures searched exactly; 0 = always the IVF index")
    nprobe: int = at_least(8, 1, "IVF lists searched per picture")


@dataclass(frozen=True)
class KeepConfig:
    # Keepers must be at least this sharp (Laplacian variance) when a group offers one that is.
    min_sharpness: float = at_least(20.0, 0, "variance of the Laplacian a keeper should reach")
    # Which member of a group stays: best (sharp enough, most pixels, least lossy, most
    # detail, largest file), largest (pixels, then bytes), oldest or newest (modification
    # time); ties go on by best.
    policy: str = one_of("best", "best", "largest", "oldest", "newest", doc="which member of a group stays")
    # A folder (relative to the judged one) whose files stay before any other; "" for none.
    prefer: str = ""
    # Dataset splits, earliest first, e.g. "train,val,test": a file's split is the first folder
    # of its path named as one (train/cat/1.jpg, images/train/1.jpg); a group keeps the earliest
    # split's copy, and the run counts duplicates across and within splits; "" for none.
    splits: str = ""

    def split_names(self) -> tuple[str, ...]:
        return tuple(name for name in self.splits.split(",") if name)


@dataclass(frozen=True)
class ScenesConfig:
    """Whole frames from fixed cameras (refinery/dedup/stages/scenes.py): frames of one view are compared by
    what stands in front of their scene's background, not by whole-picture statistics."""

    # auto: a scene is at least min_frames pictures of one size that show one view; frames:
    # any two or more such pictures are a scene; crops: no scenes, every pair by the picture test.
    mode: str = one_of("auto", "auto", "frames", "crops", doc="how pictures of one fixed view are found")
    # A fixed camera gives hundreds of frames; a view of a dozen crops on one background window
    # (the labelled crop corpora have views of 10-18) is judged as pictures.
    min_frames: int = at_least(20, 2, "pictures of one view that make a scene (mode auto)")
    # Mean absolute difference of 8x8 gray thumbnails, each divided by its mean level (exposure
    # aside), at or below which two pictures show one view (their mean levels must also be within
    # 25%): frames of one camera stay under 0.051 however busy (synthetic sequences, seeds 0
    # and 1), another camera's are 0.158 or more unless its level differs.
    view_difference: float = between(0.05, 0.0, 1.0, "thumbnail difference at which a picture joins a view")
    sample: int = at_least(64, 3, "frames per scene its background (a per-pixel median) is learnt from")
    # A pixel is in front of the background when it differs from it by more than noise times
    # the pixel's own temporal noise (median absolute deviation over the sample) plus floor.
    noise: float = between(3.0, 0.5, 20.0, "times a pixel's own noise that make it foreground")
    floor: float = between(5.0, 0.0, 64.0, "gray levels always allowed as noise")
    # Foreground regions smaller than this share of the frame are noise (320x180: 17 pixels; an
    # object 3% of the frame wide is about 100).
    min_area: float = between(0.0003, 0.0, 0.1, "share of the frame below which a foreground region is noise")
    # Two frames are one when every thing in front of the background stands within this share
    # of its own size (its box's longer side, where it is smaller: a standing person's height)
    # of where it stood, and grew or shrank by at most twice that (a person 60 px tall: 9 px).
    # The labels of real footage and of make_sequences.py call a frame a duplicate at 0.15.
    # A camera that panned or tilted by more than this share of the picture shows another one.
    max_shift: float = between(
        0.15, 0.0, 1.0, "how far a thing may move, as a share of its own size, for two frames to be one"
    )
    # Crops on one background window can make a view: there, what stands in front is one big
    # object. A view whose frames' largest foreground region spans more than this share of the
    # frame's width or height in a quarter of them is crops, not a camera (labelled sequences
    # and vtest.avi: 0.27 at most; a view of 20 crops: 0.52): the picture test judges it -
    # unless it is footage, most of its frames with a twin (a talking head: 0.77-0.83).
    max_extent: float = between(0.4, 0.0, 1.0, "span of the largest foreground region that makes a view crops")
    # A frame more than this share in front of its background is no view of it (a crop that
    # happens to repeat): the picture test judges it.
    max_foreground: float = between(0.5, 0.0, 1.0, "share of foreground above which the picture test judges")
    # `refinery frames` has no embeddings to propose pairs as dedup's semantic stage does: two
    # frames of a video go to the scene test when their 16x16 gray thumbnails correlate this
    # much (docs/frames.md: 0.99, the near stage's own, kept 40% more frames than dedup on a
    # noisy, low-contrast camera).
    video_correlation: float = between(
        0.9, 0.0, 1.0, "thumbnail correlation at which refinery frames compares two frames by the scene test"
    )


@dataclass(frozen=True)
class RunConfig:
    # Threads that decode and run the model, a batch each; 0 = one per core. Over 1024 is a
    # typo, not a machine: each thread holds a model session and a batch of pictures.
    workers: int = between(0, 0, 1024, "threads; 0 = one per core")
    cache: bool = True  # keep per-file features and vectors between runs
    cache_dir: str = ""  # "" = ~/.cache/refinery/features (or $XDG_CACHE_HOME/refinery/features)
    # where a run keeps its temporary files (the vectors, float16); "" = the system's temp folder ($TMPDIR)
    scratch_dir: str = ""
    # The read-once pass keeps each picture's gray (57 KB a 960x540 frame) there too, for the
    # scene test, rather than decode it again (a fifth of a frame folder's time): up to this
    # many MB, never over half the free space there; 0 = decode again.
    scratch_grays_mb: int = at_least(2048, 0, "MB of scratch space for the pictures' gray kept from the first read")
    follow_symlinks: bool = False  # judge links to files and folders outside the folder too
    engine: str = one_of("local", "local", "ray", doc="local threads or a Ray cluster (extra [ray])")


@dataclass(frozen=True)
class TrainConfig:
    """`refinery train`: fine-tuning an embedding with a triplet loss (extra [train])."""

    arch: str = one_of("mobilenetv2", "mobilenetv2", "resnet50", "fastreid-r50-ibn", doc="backbone")
    dim: int = at_least(128, 1, "embedding size: pool -> linear -> ReLU -> linear(dim) -> L2 norm")
    hidden: int = at_least(512, 1, "width of the head's hidden layer")
    # Square model input in pixels (small: CPU-sized runs); the backbones downsample by 32.
    input_size: int = at_least(128, 32, "square model input, pixels")
    frozen_stages: int = at_least(-1, -1, "leading backbone stages left as they are; -1 = the arch's default")
    epochs: int = at_least(8, 1, "passes over the training identities")
    # A triplet needs two pictures of one identity and one of another: P >= 2 and K >= 2.
    identities_per_batch: int = at_least(8, 2, "P of a P x K batch")
    pictures_per_identity: int = at_least(4, 2, "K of a P x K batch")
    mining: str = one_of("batch-hard", "batch-hard", "random", doc="hardest triplets in the batch, or random ones")
    # Unit vectors are at most 2 apart, so a larger margin can never be met.
    margin: float = between(0.2, 0, 2, "of the triplet loss, in Euclidean distance of unit vectors", open_low=True)
    learning_rate: float = between(3e-4, 0, 1, "Adam's step size", open_low=True)
    erasing: float = between(0.5, 0, 1, "probability of random erasing per picture")
    # Both sides need identities: the training and the before/after evaluation.
    test_share: float = between(
        0.2, 0, 1, "share of identities held out for the before/after evaluation", open_low=True, open_high=True
    )
    seed: int = at_least(0, 0, "random seed; numpy's generators take no negative one")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    near: NearConfig = field(default_factory=NearConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    keep: KeepConfig = field(default_factory=KeepConfig)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    run: RunConfig = field(default_factory=RunConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def toml_value(value: Any) -> str:
    """A value as TOML writes it: true, 0.5, "text"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # TOML basic strings escape as JSON does
    return repr(value)


def _keys(cls: type) -> list[tuple[str, type, Mapping[str, Any]]]:
    """(name, type, metadata) of every key of a section."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], f.metadata) for f in dataclasses.fields(cls)]


_KINDS = {bool: "true or false", int: "a whole number (int)", float: "a number", str: "a string (in quotes)"}


def _allowed(meta: Mapping[str, Any]) -> str:
    """What a key's range or choices allow, in words ("" if anything of its type goes)."""
    if "choices" in meta:
        return "one of " + ", ".join(toml_value(c) for c in meta["choices"])
    if "high" in meta:
        low, high = meta["low"], meta["high"]
        if not (meta["open_low"] or meta["open_high"]):
            return f"between {low} and {high}"
        return (
            f"{'more than' if meta['open_low'] else 'at least'} {low} and "
            f"{'less than' if meta['open_high'] else 'at most'} {high}"
        )
    if "low" in meta:
        return f"{meta['low']} or more"
    return ""


def _in_range(value: Any, meta: Mapping[str, Any]) -> bool:
    if "choices" in meta:
        return value in meta["choices"]
    if "low" in meta and not (value > meta["low"] if meta.get("open_low") else value >= meta["low"]):
        return False
    if "high" in meta and not (value < meta["high"] if meta.get("open_high") else value <= meta["high"]):
        return False
    return True


def check(section: str, key: str, value: Any, kind: type, meta: Mapping[str, Any]) -> Any:
    """`value` as key `section.key` takes it (an int becomes a float where a float goes).

    Raises ConfigError, naming the key, the value and what is allowed, if the type is wrong
    (a bool is no number, a number no bool) or the value is out of range.
    """
    doc = f" ({meta['doc']})" if meta.get("doc") else ""
    allowed = _allowed(meta)

    def fail(what: str) -> ConfigError:
        return ConfigError(f"{section}.{key} = {toml_value(value)}: must be {what}{doc}")

    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            converted: Any = float(value)
        except OverflowError:
            converted = math.inf
    else:
        converted = value
    if kind not in _KINDS:  # pragma: no cover - a schema mistake, not a user's
        raise TypeError(f"{section}.{key}: no check for type {kind!r}")
    fits = isinstance(converted, kind) and not (kind is not bool and isinstance(converted, bool))
    if kind is float and fits:
        fits = math.isfinite(converted)
    if not fits:
        kind_text = "a finite number" if kind is float else _KINDS[kind]
        raise fail(allowed if "choices" in meta else ", ".join(filter(None, (kind_text, allowed))))
    if not _in_range(converted, meta):
        raise fail(allowed)
    if isinstance(converted, str) and "\x00" in converted:
        raise fail("text without a NUL character")
    return converted


def validate(cfg: Config) -> Config:
    """`cfg` with every key checked against its schema and the rules between keys (ConfigError if not)."""
    sections = {}
    for section in dataclasses.fields(cfg):
        current = getattr(cfg, section.name)
        sections[section.name] = dataclasses.replace(
            current,
            **{
                name: check(section.name, name, getattr(current, name), kind, meta)
                for name, kind, meta in _keys(type(current))
            },
        )
    prefer = sections["keep"].prefer.strip("/")
    if prefer and not is_plain_path(prefer):
        raise ConfigError(f"keep.prefer = {toml_value(prefer)}: must be a folder inside the judged one, e.g. originals")
    names = [name.strip() for name in sections["keep"].splits.split(",")] if sections["keep"].splits.strip() else []
    if any(not name or "/" in name or name in (".", "..") for name in names) or len(set(names)) != len(names):
        raise ConfigError(
            f"keep.splits = {toml_value(sections['keep'].splits)}: must be folder names, each once, "
            'earliest first, e.g. "train,val,test"'
        )
    sections["keep"] = dataclasses.replace(sections["keep"], prefer=prefer, splits=",".join(names))
    return Config(**sections)


def default_config_path() -> Path:
    return Path(str(resources.files("refinery.configs").joinpath("refinery.toml")))


# Settings that were replaced, and what to set instead.
RENAMED = {
    ("scenes", "min_overlap"): "two frames are now one when every thing moved at most scenes.max_shift "
    "of its own size (0.15); set that instead",
}


def load_config(path: Path | None = None) -> Config:
    """Read a TOML config and validate it; keys it leaves out keep their defaults; unknown keys are errors."""
    path = Path(path) if path else default_config_path()
    try:
        data = tomllib.loads(read_regular(path).decode("utf-8"))
    except RefineryError as e:
        raise ConfigError(str(e)) from None
    except (tomllib.TOMLDecodeError, ValueError) as e:  # ValueError: a file that is not UTF-8
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: cannot read config: nested too deeply") from None
    sections: dict[str, Any] = typing.get_type_hints(Config)
    unknown = sorted(set(data) - sections.keys())
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(sections)}")
    built = {}
    for name, cls in sections.items():
        values = data.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {name} must be a section ([{name}]), not a value")
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - known)
        for key in bad:
            if (name, key) in RENAMED:
                raise ConfigError(f"{path}: [{name}] {key} is gone: {RENAMED[name, key]}")
        if bad:
            raise ConfigError(
                f"{path}: unknown key(s) in [{name}]: {', '.join(bad)}; known: {', '.join(sorted(known))}"
            )
        built[name] = cls(**values)
    try:
        return validate(Config(**built))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def apply_overrides(cfg: Config, assignments: list[str]) -> Config:
    """`section.key=value` overrides (values in TOML syntax; bare words are strings), validated."""
    for text in assignments:
        key, sep, raw = text.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. semantic.threshold=0.92")
        current = getattr(cfg, section) if section in {f.name for f in dataclasses.fields(cfg)} else None
        schema = {k: (kind, meta) for k, kind, meta in _keys(type(current))} if current is not None else {}
        if (section, name) in RENAMED:
            raise ConfigError(f"--set {text!r}: {key.strip()} is gone: {RENAMED[section, name]}")
        if name not in schema:
            raise ConfigError(f"--set {text!r}: no setting {key.strip()!r}; see `refinery config --show`")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        value = check(section, name, value, *schema[name])
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(current, **{name: value})})  # type: ignore[arg-type,type-var]
    return validate(cfg)


def user_sets(section: str, key: str, path: Path | None, assignments: list[str] | tuple[str, ...]) -> bool:
    """Does the user's config file or a --set name `section.key`? (Both were read and checked already.)"""
    if any(a.partition("=")[0].strip() == f"{section}.{key}" for a in assignments):
        return True
    if path is None:
        return False
    try:
        values = tomllib.loads(Path(path).read_text()).get(section, {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(values, dict) and key in values


def to_toml(cfg: Config) -> str:
    """The settings as TOML text, every key written out, each with what it is and what it
    takes as a comment above it (docs/dedup.md and refinery/configs/refinery.toml say more)."""
    lines = []
    for section in dataclasses.fields(cfg):
        lines.append(f"[{section.name}]")
        current = getattr(cfg, section.name)
        for key, _, meta in _keys(type(current)):
            said = "; ".join(filter(None, (meta.get("doc", ""), _allowed(meta))))
            if said:
                lines.append(f"# {said}")
            lines.append(f"{key} = {toml_value(getattr(current, key))}")
        lines.append("")
    return "\n".join(lines)
