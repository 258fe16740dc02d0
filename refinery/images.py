"""Reading image files and turning them into model input, as a person sees them."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from refinery.errors import UnreadableImage
from refinery.spec import ModelSpec

# Pillow refuses images above this many pixels (decompression bombs); 178 Mpx is ~2x its default.
MAX_PIXELS = 178_956_970
MAX_FILE_BYTES = 512 * 1024 * 1024  # refuse to read larger files into memory
JPEG_QUANTISER = "refinery_jpeg_quantiser"
ORIENTATION = 0x0112  # the EXIF tag  # image.info key: mean luminance quantiser of a JPEG

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
    """Decode `path` into an RGB image, rotated as its EXIF orientation says.

    Raises:
        UnreadableImage: the file is missing, empty, not an image, truncated or too large.
    """
    return decode_rgb(read_bytes(Path(path)), path)


def decode_rgb(data: bytes, name: object = "<bytes>") -> Image.Image:
    """Decode image bytes into RGB as a person sees them (EXIF orientation applied).

    Animated formats give their first frame. `name` only labels errors.
    """
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # No context manager: closing would drop the decoded pixels, and a BytesIO needs no closing.
            im: Image.Image = Image.open(io.BytesIO(data))
            tables = getattr(im, "quantization", None)  # JPEG only: how lossy it was saved
            # Each step below copies every pixel; skip the ones with nothing to do.
            if im.getexif().get(ORIENTATION, 1) != 1:
                im = ImageOps.exif_transpose(im)
            rgb = im.convert("RGB") if im.mode != "RGB" else im
            rgb.load()
            if tables:
                rgb.info[JPEG_QUANTISER] = float(np.mean(tables[min(tables)]))
            return rgb
    except Image.UnidentifiedImageError:
        raise UnreadableImage(name, "not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UnreadableImage(name, f"too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UnreadableImage(name, f"cannot decode: {e}") from None


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
    return to_input(load_rgb(path), spec)


def batches(items: list, size: int) -> Iterator[list]:
    """Consecutive slices of `items`, `size` at a time."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
