"""OpenCLIP models -> two ONNX files, an image tower and a text tower, and the tokenizer's vocabulary.

    PREFIX.onnx, PREFIX.json            image tower: RGB 0..255 (N, 3, H, W) -> (N, D)
    PREFIX.text.onnx, PREFIX.text.json  text tower: int64 token ids (N, context) -> (N, D)
    PREFIX.vocab.txt.gz                 open_clip's BPE vocabulary, for the runner's tokenizer
    PREFIX.mlpackage                    the image tower for Core ML (--format coreml)

The image spec names the text tower and its SHA-256, the text spec the vocabulary and its
SHA-256: a text query is embedded by the tower the pictures' tower was trained with.
Parity: the image tower against open_clip's `encode_image` on pictures it normalises
itself; the text tower, fed by refinery's own tokenizer, against `encode_text` fed by
open_clip's, on prompts that include unicode, long and empty ones.
"""

from __future__ import annotations

import gzip
import importlib
import logging
import shutil
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refinery import install_hint
from refinery.errors import CheckpointMismatch, CheckpointNotFound, ModelError, ParityError
from refinery.export import onnx as onnx_export
from refinery.export.parity import FP32, check_parity
from refinery.io.fileio import file_sha256
from refinery.io.outputs import GZIP_NAME, Kind, output_path, remove_own
from refinery.spec import TextSpec

log = logging.getLogger(__name__)

TEXT_INPUT = "tokens"
# Prompts for the text tower's parity: plain, punctuated, unicode (accents, CJK, emoji,
# mojibake that ftfy mends, HTML entities), empty, and longer than the context.
PARITY_PROMPTS = (
    "a red truck at night",
    "a person on a bicycle",
    "",
    "   ",
    "A PHOTO OF A DOG.",
    "two cats, one dog & 3 birds!",
    "it's a café in São Paulo",
    "東京の夜の電車",
    "a 🚲 on the 🌉",
    "Ã©tÃ© à la plage",
    "&amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt;",
    "שלום עולם",
    " ".join(f"word{i} and a long tail of text" for i in range(60)),
)


@dataclass
class Clip:
    """An open_clip model and what the export needs to know of it."""

    model: Any  # open_clip.CLIP (open_clip has no type hints)
    open_clip_name: str
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    clean: str
    vocab: Path
    source: str
    sha256: str

    @property
    def output_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else 0


def import_open_clip() -> Any:
    """open_clip, importable even where torchvision's compiled ops cannot load.

    PyPI's torchvision for Linux is built against the CUDA torch; beside a CPU-only torch
    its C extension does not load and `import torchvision` fails while registering fake
    kernels for detection ops (nms, roi_align). CLIP never calls those ops, so on that one
    failure the registration modules are skipped and the import tried again.
    """
    try:
        return _quiet_import("open_clip")
    except ImportError as e:
        raise ModelError(f"CLIP export needs open_clip ({e.name} is missing): {install_hint('clip')}") from None
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "open_clip")]:
        del sys.modules[name]
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules[name] = types.ModuleType(name)
    return _quiet_import("open_clip")


def _quiet_import(name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # open_clip and timm warn about things that do not matter here
        return importlib.import_module(name)


def load_clip(
    open_clip_name: str, checkpoint: Path | None = None, pretrained: str | None = None, image_size: int | None = None
) -> Clip:
    """The open_clip model `open_clip_name` with weights from a file, a named release, or
    neither (random init: only tests want that).

    `open_clip_name` is a built-in name (ViT-B-32) or open_clip's `local-dir:FOLDER` (a
    folder holding open_clip_config.json and the weights, as the model hub keeps them).
    """
    oc = import_open_clip()
    if checkpoint is not None and pretrained is not None:
        raise ModelError("give --checkpoint or --pretrained, not both")
    if open_clip_name.startswith("local-dir:") and (checkpoint or pretrained):
        raise ModelError(
            f"{open_clip_name}: a local-dir model takes its weights from its folder "
            "(open_clip_model.safetensors or open_clip_pytorch_model.bin); drop --checkpoint/--pretrained"
        )
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise CheckpointNotFound(f"{checkpoint}: checkpoint not found")
    source, sha256 = "random init", ""
    weights: str | None = None
    if checkpoint is not None:
        weights, source, sha256 = str(checkpoint), Path(checkpoint).name, file_sha256(Path(checkpoint))
    elif pretrained is not None:
        tags = oc.list_pretrained_tags_by_model(open_clip_name)
        if pretrained not in tags:
            raise CheckpointMismatch(
                f"--pretrained {pretrained}: open_clip has no such release of {open_clip_name}; "
                f"it has {', '.join(tags) or 'none'} (or give --checkpoint FILE)"
            )
        weights = pretrained
        source = f"open_clip=={metadata.version('open_clip_torch')}:{open_clip_name}/{pretrained}"
    # OpenAI's releases were trained with QuickGELU: built with plain GELU they load without a
    # complaint (no weights differ) and give worse vectors, so the tag's own setting is taken.
    quick_gelu = bool(pretrained and (oc.get_pretrained_cfg(open_clip_name, pretrained) or {}).get("quick_gelu"))
    try:
        with warnings.catch_warnings(), _root_log_quiet():
            warnings.simplefilter("ignore")
            model = oc.create_model(
                open_clip_name,
                pretrained=weights,
                force_image_size=image_size,
                force_quick_gelu=quick_gelu,
                pretrained_text=False,
                device="cpu",
            )
    except RuntimeError as e:  # open_clip's word for a bad tag, a failed download, keys that do not fit
        raise CheckpointMismatch(
            f"{checkpoint or pretrained or open_clip_name}: open_clip cannot build "
            f"{open_clip_name} from it: {_one_line(e)}"
        ) from None
    if open_clip_name.startswith("local-dir:"):
        source, sha256 = _local_dir_source(Path(open_clip_name.removeprefix("local-dir:")), source, sha256)
    return _describe(oc, model.eval(), open_clip_name, source, sha256)


@contextmanager
def _root_log_quiet() -> Iterator[None]:
    """open_clip logs its notices ("model initialized randomly") and errors on the root logger,
    huggingface_hub its retries on its own; refinery says what matters itself, in one line."""
    loggers = [logging.getLogger(), logging.getLogger("huggingface_hub")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _describe(oc: Any, model: Any, name: str, source: str, sha256: str) -> Clip:
    if not hasattr(model, "encode_text") or not hasattr(model, "token_embedding"):
        raise ModelError(
            f"{name}: refinery exports CLIP models with open_clip's own text transformer; "
            "this one's text tower is a Hugging Face model"
        )
    tokenizer = oc.get_tokenizer(name)
    if type(tokenizer).__name__ != "SimpleTokenizer":
        raise ModelError(f"{name}: its tokenizer is {type(tokenizer).__name__}; refinery reads OpenCLIP's BPE only")
    cfg = oc.get_model_preprocess_cfg(model)
    size = cfg.get("size", model.visual.image_size)
    size = (size, size) if isinstance(size, int) else tuple(size)
    clean = getattr(tokenizer, "clean", None) or _text_cfg(oc, name).get("tokenizer_kwargs", {}).get("clean", "lower")
    return Clip(
        model=model,
        open_clip_name=name,
        image_size=(int(size[0]), int(size[1])),
        mean=tuple(float(v) for v in cfg.get("mean", oc.OPENAI_DATASET_MEAN)),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.get("std", oc.OPENAI_DATASET_STD)),  # type: ignore[arg-type]
        context_length=int(model.context_length),
        clean=str(clean),
        vocab=Path(oc.tokenizer.default_bpe()),
        source=source,
        sha256=sha256,
    )


def _text_cfg(oc: Any, name: str) -> dict[str, Any]:
    text_cfg: dict[str, Any]  # a part of open_clip's JSON config, untyped
    if name.startswith("local-dir:"):
        import json

        path = Path(name.removeprefix("local-dir:")) / "open_clip_config.json"
        text_cfg = json.loads(path.read_text()).get("model_cfg", {}).get("text_cfg", {})
        return text_cfg
    text_cfg = (oc.get_model_config(name) or {}).get("text_cfg", {})
    return text_cfg


def _local_dir_source(folder: Path, source: str, sha256: str) -> tuple[str, str]:
    """The weights file of an open_clip model folder, as source and SHA-256."""
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        if (folder / name).is_file():
            return f"{folder.name}/{name}", file_sha256(folder / name)
    return source, sha256


def _one_line(e: BaseException, limit: int = 400) -> str:
    """An exception's message on one line (torch lists missing keys over several), cut to `limit`."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


class ImageTower(nn.Module):
    """open_clip's `encode_image` on RGB 0..255: the normalisation inside the graph, so the
    runner only resizes and casts, as for every other model."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, clip: Clip):
        super().__init__()
        self.visual: Any = clip.model.visual
        self.register_buffer("mean", torch.tensor(clip.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(clip.std).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.visual((images - self.mean) / self.std)
        return features


class TextTower(nn.Module):
    """open_clip's `encode_text`: token ids in, the text's vector out (not normalised)."""

    def __init__(self, clip: Clip):
        super().__init__()
        self.clip: Any = clip.model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.clip.encode_text(tokens)
        return features


def reference_image_features(clip: Clip, images: np.ndarray) -> np.ndarray:
    """open_clip's own path: normalise as its preprocessing does, then `encode_image`."""
    mean = np.asarray(clip.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(clip.std, np.float32).reshape(1, 3, 1, 1)
    with torch.no_grad():
        features: torch.Tensor = clip.model.encode_image(torch.from_numpy((images / 255 - mean) / std))
        return features.numpy()


def write_vocab(clip: Clip, path: Path) -> None:
    """Copy open_clip's vocabulary beside the towers, its gzip header naming refinery (how a
    later export knows the file is its own to replace)."""
    with (
        output_path(path, Kind.VOCAB) as tmp,
        gzip.open(clip.vocab, "rb") as src,
        open(tmp, "wb") as raw,
        gzip.GzipFile(GZIP_NAME, "wb", fileobj=raw, mtime=0) as out,
    ):
        shutil.copyfileobj(src, out)


def export_text_tower(clip: Clip, name: str, path: Path, vocab: Path, opset: int, prompts: list[str]) -> Any:
    """PREFIX.text.onnx and its sidecar, after proving that refinery's tokenizer and the ONNX
    tower give what open_clip's tokenizer and `encode_text` give on `prompts`; its parity report."""
    from refinery.runner.text import TextEmbedder
    from refinery.runner.tokenizer import ClipTokenizer

    spec = TextSpec(
        name=name,
        input_name=TEXT_INPUT,
        output_name="features",
        output_dim=clip.output_dim,
        context_length=clip.context_length,
        vocab=vocab.name,
        vocab_sha256=file_sha256(vocab),
        clean=clip.clean,
        source=clip.source,
        sha256=clip.sha256,
    )
    ours = ClipTokenizer(vocab, clip.context_length, clip.clean)(prompts)
    theirs = import_open_clip().get_tokenizer(clip.open_clip_name)(prompts)
    differ = [p for p, a, b in zip(prompts, ours, theirs.numpy(), strict=True) if not np.array_equal(a, b)]
    if differ:
        raise ParityError(
            f"text: refinery's tokenizer and open_clip's differ on {len(differ)} of {len(prompts)} "
            f"prompts, first {differ[0][:60]!r}"
        )
    spec = spec.replace(opset=opset)
    onnx_export.export_graph(
        TextTower(clip), torch.from_numpy(ours[:2]), spec.input_name, spec.output_name, path, opset, spec.to_metadata()
    )
    remove_own(path.with_suffix(".json"), Kind.SPEC)  # as write_onnx: the new one goes once parity holds
    with torch.no_grad():  # open_clip's own path: its tokens, then `encode_text`
        reference = clip.model.encode_text(theirs).numpy()
    outputs = TextEmbedder(path, device="cpu").run(ours)
    report = check_parity("onnx text fp32", reference, outputs, FP32, unit="prompts")
    spec.save(path.with_suffix(".json"))
    return report


def export_clip(opts: Any, arch: Any, step: Callable[[str], None]) -> Any:
    """`refinery export-model` for a CLIP architecture: both towers, the vocabulary, parity."""
    from refinery.export import pipeline
    from refinery.export.builders import Built

    pipeline.check_formats(opts)
    if opts.fp16 or opts.int8_calibration:  # not silently dropped: the user asked for a file
        raise ModelError(f"{arch.name}: --fp16 and --int8 are not made for CLIP towers; export without them")
    step(f"loading {arch.name}")
    clip = load_clip(arch.open_clip_name, opts.checkpoint, opts.pretrained, opts.image_size)
    if clip.source == "random init":
        log.warning("%s: random weights (no --checkpoint or --pretrained): the vectors mean nothing", arch.name)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    vocab = out.with_suffix(".vocab.txt.gz")
    text_path = out.with_suffix(".text.onnx")
    step("exporting the text tower")
    write_vocab(clip, vocab)
    text_report = export_text_tower(clip, arch.name, text_path, vocab, opts.opset, list(PARITY_PROMPTS))

    tower = ImageTower(clip).eval()
    built = Built(tower, clip.image_size, clip.output_dim, "bicubic", clip.source, clip.sha256)
    spec = pipeline.spec_of(arch.name, built).replace(text_model=text_path.name, text_sha256=file_sha256(text_path))
    result = pipeline.ExportResult(
        spec=spec, files=[vocab, text_path, text_path.with_suffix(".json")], parity=[text_report]
    )
    images, result.parity_source = pipeline.parity_images(opts.images, spec)
    reference = reference_image_features(clip, images)
    if opts.calibrate:
        step("calibrating the semantic threshold")
        spec = result.spec = pipeline.calibrated(tower, spec, opts.calibrate, result)
    step("exporting the image tower")
    pipeline.write_onnx(tower, spec, out.with_suffix(".onnx"), opts.opset, images, reference, result)
    if "coreml" in opts.formats:
        step("converting the image tower to Core ML")
        result.coreml_note = pipeline.export_coreml(
            tower, result.spec, out.with_suffix(".mlpackage"), images, reference, result
        )
    return result
