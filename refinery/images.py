"""Reading image files and turning them into model input, as a person sees them."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from refinery.errors import UnreadableImage
from refinery.spec import ModelSpec

# Pillow refuses images above this many pixels (decompression bombs); 178 Mpx is ~2x its default.
MAX_PIXELS = 178_956_970
MAX_FILE_BYTES = 512 * 1024 * 1024  # refuse to read larger files into memory
ORIENTATION = 0x0112  # the EXIF tag
TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height
# The stages measure pictures with the longer side scaled to this many pixels: enough for
# blur, exposure, edges and hashes, and half of a 640 px JPEG, which the decoder gives at a
# quarter of the cost of a full decode.
WORK_SIZE = 320

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or UnreadableImage with the reason."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise UnreadableImage(path, "empty file")
        if size > MAX_FILE_BYTES:
            raise UnreadableImage(path, f"file of {size} bytes is larger than {MAX_FILE_BYTES}")
        return path.read_bytes()
    except FileNotFoundError:
        raise UnreadableImage(path, "no such file") from None
    except PermissionError:
        raise UnreadableImage(path, "permission denied") from None
    except OSError as e:
        raise UnreadableImage(path, f"cannot read: {e.strerror or e}") from None


def load_rgb(path: Path) -> Image.Image:
    """Decode `path` into a full-size RGB image, rotated as its EXIF orientation says.

    Raises:
        UnreadableImage: the file is missing, empty, not an image, truncated or too large.
    """
    return decode(read_bytes(Path(path)), path).image


@dataclass
class Decoded:
    """A decoded picture, possibly reduced while decoding, and facts about the full one."""

    image: Image.Image  # RGB, as a person sees it (EXIF orientation applied)
    width: int  # of the full picture, as a person sees it
    height: int
    quantiser: float = 0.0  # mean JPEG luminance quantiser (1 = quality 100); 0 = lossless or unknown


def decode(data: bytes, name: object = "<bytes>", min_long: int = 0, min_short: int = 0) -> Decoded:
    """Decode image bytes into RGB as a person sees it (EXIF orientation applied).

    With `min_long`/`min_short`, the picture comes reduced by the largest power of two (up to
    8) that keeps its longer side at least `min_long` and its shorter side at least
    `min_short` pixels: JPEGs are scaled in the DCT domain by the decoder (a quarter of the
    work at half size), other formats are box-filtered after decoding. Animated formats
    give their first frame. `name` only labels errors.
    """
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # No context manager: closing would drop the decoded pixels, and a BytesIO needs no closing.
            im: Image.Image = Image.open(io.BytesIO(data))
            width, height = im.size
            tables = getattr(im, "quantization", None)  # JPEG only: how lossy it was saved
            factor = reduction(width, height, min_long, min_short)
            if factor > 1 and im.format == "JPEG":
                im.draft(im.mode, (width // factor, height // factor))
                factor = 1
            orientation = im.getexif().get(ORIENTATION, 1)
            if orientation in TRANSPOSED:
                width, height = height, width
            # Each step below copies every pixel; skip the ones with nothing to do.
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            rgb = im.convert("RGB") if im.mode != "RGB" else im
            rgb.load()
            if factor > 1:
                rgb = rgb.reduce(factor)
            quantiser = float(np.mean(tables[min(tables)])) if tables else 0.0
            return Decoded(rgb, width, height, quantiser)
    except Image.UnidentifiedImageError:
        raise UnreadableImage(name, "not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UnreadableImage(name, f"too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UnreadableImage(name, f"cannot decode: {e}") from None


def reduction(width: int, height: int, min_long: int, min_short: int) -> int:
    """The largest of 8, 4, 2 that keeps both sides at their minimum, else 1 (also when no
    minimum is asked for)."""
    if not (min_long or min_short):
        return 1
    long, short = max(width, height), min(width, height)
    return next((f for f in (8, 4, 2) if long // f >= min_long and short // f >= min_short), 1)


def decode_for_stages(data: bytes, name: object, spec: ModelSpec) -> Decoded:
    """Decoded at the smallest size both the stages (WORK_SIZE) and the model's input need:
    one rule, so that every command gives the same vector for the same file."""
    return decode(data, name, min_long=WORK_SIZE, min_short=max(spec.input_size))


def to_input(image: Image.Image, spec: ModelSpec) -> np.ndarray:
    """One image as a float32 CHW array, prepared as `spec` says."""
    h, w = spec.input_size
    resized = image.resize((w, h), _RESAMPLE[spec.interpolation])
    pixels = np.asarray(resized, dtype=np.float32)
    if spec.color == "BGR":
        pixels = pixels[..., ::-1]
    if not spec.identity_normalisation:
        mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
        pixels = ((pixels * np.float32(spec.scale) - mean) / std).astype(np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def load_input(path: Path, spec: ModelSpec) -> np.ndarray:
    """Decode `path` and prepare it as model input."""
    return to_input(decode_for_stages(read_bytes(Path(path)), path, spec).image, spec)


def batches(items: list, size: int) -> Iterator[list]:
    """Consecutive slices of `items`, `size` at a time."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
