"""Reading image files and turning them into model input, as a person sees them."""

from __future__ import annotations

import io
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from refinery.errors import UnreadableImage
from refinery.spec import ModelSpec

try:  # HEIC/HEIF, what phones save: Pillow reads them through this plugin (AVIF it reads itself)
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - a base install has it; without it they are `error` lines
    pass
else:
    register_heif_opener()

# Memory bounds, whatever a folder holds. A file's header is read before anything else: a
# picture that declares more than MAX_PIXELS (a decompression bomb, or a gigapixel scan) is
# refused without decoding a pixel. Decodes of more than BIG_PIXELS (after JPEG DCT scaling)
# take turns, one at a time: at ~5 bytes a pixel while decoding (Pillow keeps RGB as 4, a
# palette picture is converted once), the pixels in memory stay below
# MAX_PIXELS * 5 = 600 MB for the one big picture plus BIG_PIXELS * 5 = 80 MB per worker.
MAX_PIXELS = 120_000_000  # a 12000 x 9000 photo (108 Mpx) is decoded; a 30000 x 30000 PNG is not
BIG_PIXELS = 16_000_000
MAX_FILE_BYTES = 256 * 1024 * 1024  # refuse to read larger files into memory
ORIENTATION = 0x0112  # the EXIF tag
# How to turn the stored pixels into the picture a person sees, by EXIF orientation.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height
# Transparent pixels are judged over mid-gray: a cut-out's empty areas make it neither
# "too dark" nor "burnt out".
BACKDROP = (128, 128, 128)
# The stages measure pictures with the longer side scaled to this many pixels: enough for
# blur, exposure, edges and hashes, and half of a 640 px JPEG, which the decoder gives at a
# quarter of the cost of a full decode.
WORK_SIZE = 320


@dataclass(frozen=True)
class ThumbSize:
    """A preview's size: its longer side at most `side` pixels, as a JPEG of `quality`."""

    side: int
    quality: int


# Every preview refinery makes, in one place. Each size is what its page was made with: a
# change shows in every page written since (and the review and search pages are pinned).
REVIEW_THUMB = ThumbSize(160, 70)  # the review page, frames' skipped spans included: ~5 KB a thumbnail
SHEET_THUMB = ThumbSize(160, 80)  # the contact sheet of `refinery search --html`
SEARCH_THUMB = ThumbSize(256, 85)  # `refinery serve`'s results
LARGE_PREVIEW = ThumbSize(640, 80)  # `refinery review --large-previews`: a picture clicked, its original out of reach

# refinery checks the declared size itself (decode), before Pillow allocates anything.
Image.MAX_IMAGE_PIXELS = None
_big_decode = threading.Semaphore(1)

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def size_problem(size: int) -> str | None:
    """Why a file of `size` bytes is not read, or None."""
    if size == 0:
        return "empty file"
    if size > MAX_FILE_BYTES:
        return f"file of {size} bytes is larger than {MAX_FILE_BYTES}"
    return None


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or UnreadableImage with the reason. Opened without blocking, so a
    FIFO or a device put in a picture's place is refused instead of hanging the run."""
    try:
        return read_opened(os.open(path, os.O_RDONLY | os.O_NONBLOCK), path)
    except FileNotFoundError:
        raise UnreadableImage(path, "no such file") from None
    except PermissionError:
        raise UnreadableImage(path, "permission denied") from None
    except OSError as e:
        raise UnreadableImage(path, f"cannot read: {e.strerror or e}") from None


def read_opened(fd: int, path: Path | str) -> bytes:
    """The bytes of the file open as `fd` (closed here), if it is a regular file of a size a
    picture may have; else UnreadableImage naming `path`."""
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableImage(path, "not a regular file")
        if problem := size_problem(st.st_size):
            raise UnreadableImage(path, problem)
        return f.read()


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
    # mean JPEG luminance quantiser (1 = quality 100); 0 = lossless; UNKNOWN_LOSS: lossy, how much unknown
    quantiser: float = 0.0


# A lossy encoding that says nothing of how lossy (WebP's VP8, HEIF, AVIF) counts as a JPEG of
# quality 90 (the IJG luminance table's mean, 57.6, at 20%): behind any lossless copy of the
# same picture, beside a good JPEG.
UNKNOWN_LOSS = 11.5
_LOSSY = ("WEBP", "HEIF", "AVIF")


def _unknown_loss(format_of: str, data: bytes) -> float:
    """How lossy a picture without JPEG tables was saved: 0 for a lossless format (PNG, TIFF,
    BMP, GIF, PNM, a lossless WebP), UNKNOWN_LOSS for a lossy one."""
    if format_of == "WEBP":  # its image chunk: VP8L lossless, "VP8 " lossy (after any ICC or EXIF chunk)
        head = data[12 : 1 << 16]
        lossless, lossy = head.find(b"VP8L"), head.find(b"VP8 ")
        if lossless >= 0 and (lossy < 0 or lossless < lossy):
            return 0.0
    return UNKNOWN_LOSS if format_of in _LOSSY else 0.0


def check_pixels(width: int, height: int, name: object) -> None:
    """UnreadableImage when a picture declaring width x height pixels is over MAX_PIXELS (`name`
    labels it): such a picture is not decoded."""
    if width * height > MAX_PIXELS:
        raise UnreadableImage(
            name,
            f"declares {width}x{height} pixels ({width * height / 1e6:.0f} Mpx), "
            f"over the limit of {MAX_PIXELS / 1e6:.0f} Mpx; not decoded",
        )


def decode(data: bytes, name: object = "<bytes>", min_long: int = 0, min_short: int = 0) -> Decoded:
    """Decode image bytes into RGB as a person sees it: EXIF orientation applied, transparent
    areas over mid-gray, 16-bit pictures scaled to 8 bits.

    With `min_long`/`min_short`, the picture comes reduced by the largest power of two (up to
    8) that keeps its longer side at least `min_long` and its shorter side at least
    `min_short` pixels: JPEGs are scaled in the DCT domain by the decoder (a quarter of the
    work at half size), other formats are box-filtered after decoding. Animated formats
    give their first frame. `name` only labels errors.
    """
    try:
        # No context manager: closing would drop the decoded pixels, and a BytesIO needs no closing.
        im: Image.Image = Image.open(io.BytesIO(data))
        width, height = im.size
        check_pixels(width, height, name)
        tables = getattr(im, "quantization", None)  # JPEG only: how lossy it was saved
        format_of = im.format or ""
        factor = reduction(width, height, min_long, min_short)
        if factor > 1 and im.format == "JPEG":
            im.draft(im.mode, (width // factor, height // factor))
            factor = 1
        big = im.width * im.height > BIG_PIXELS
        with _big_decode if big else nullcontext():
            orientation = im.getexif().get(ORIENTATION, 1)  # a PNG's EXIF may follow its pixels: loads
            im.load()
            im = _eight_bit(im)
            if factor > 1:
                im = im.reduce(factor)
        if orientation in TRANSPOSED:
            width, height = height, width
        if orientation in _TRANSPOSE:
            im = im.transpose(_TRANSPOSE[orientation])
        quantiser = float(np.mean(tables[min(tables)])) if tables else _unknown_loss(format_of, data)
        return Decoded(_flatten(im), width, height, quantiser)
    except UnidentifiedImageError:
        raise UnreadableImage(name, "not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise UnreadableImage(name, f"cannot decode: {e}") from None


def _eight_bit(im: Image.Image) -> Image.Image:
    """`im` in a mode that box-reduces and converts to RGB without losing what a person sees:
    16-bit gray scaled (not clipped) to 8 bits, palettes expanded (with their transparency)."""
    if im.mode.startswith("I"):  # I;16 and friends, and 32-bit integer: taken as 16-bit samples
        return Image.fromarray((np.clip(np.asarray(im), 0, 65535) >> 8).astype(np.uint8))
    if im.mode == "F":
        return Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8))
    if im.mode in ("P", "PA"):
        return im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    if im.mode == "1":
        return im.convert("L")
    return im


def _flatten(im: Image.Image) -> Image.Image:
    """RGB; transparent pixels over BACKDROP."""
    if "A" in im.mode or "a" in im.mode:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", im.size, BACKDROP)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im.convert("RGB") if im.mode != "RGB" else im


def reduction(width: int, height: int, min_long: int, min_short: int) -> int:
    """The largest of 8, 4, 2 that keeps both sides at their minimum, else 1 (also when no
    minimum is asked for)."""
    if not (min_long or min_short):
        return 1
    long, short = max(width, height), min(width, height)
    return next((f for f in (8, 4, 2) if long // f >= min_long and short // f >= min_short), 1)


def stage_minimums(spec: ModelSpec) -> tuple[int, int]:
    """(min_long, min_short): the smallest size both the stages (WORK_SIZE) and the model's input need."""
    return WORK_SIZE, max(spec.input_size)


def decode_for_stages(data: bytes, name: object, spec: ModelSpec) -> Decoded:
    """Decoded at stage_minimums: one rule, so that every command gives the same vector for the same file."""
    return decode(data, name, *stage_minimums(spec))


def to_input(image: Image.Image, spec: ModelSpec) -> np.ndarray:
    """One image as a float32 CHW array, prepared as `spec` says."""
    h, w = spec.input_size
    pixels = np.asarray(image.resize((w, h), _RESAMPLE[spec.interpolation]))
    if spec.color == "BGR":
        pixels = pixels[..., ::-1]
    # uint8 HWC to float32 CHW in one pass (7x faster than converting, then transposing)
    chw: np.ndarray = pixels.transpose(2, 0, 1).astype(np.float32, order="C")
    if not spec.identity_normalisation:
        mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (spec.mean, spec.std))
        chw = ((chw * np.float32(spec.scale) - mean) / std).astype(np.float32)
    return chw


def load_input(path: Path, spec: ModelSpec) -> np.ndarray:
    """Decode `path` and prepare it as model input."""
    return to_input(decode_for_stages(read_bytes(Path(path)), path, spec).image, spec)


_T = TypeVar("_T")


def batches(items: list[_T], size: int) -> Iterator[list[_T]]:
    """Consecutive slices of `items`, `size` at a time."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def thumbnail(data: bytes, name: object, side: int) -> Image.Image:
    """The picture in `data` as a person sees it (decode), its longer side at most `side`:
    reduced while decoding as far as that allows, then resized (bilinear). UnreadableImage
    naming `name` if it cannot be decoded."""
    image = decode(data, name, min_long=side).image
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return image


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def thumbnail_jpeg(data: bytes, name: object, size: ThumbSize) -> bytes:
    """A preview of the picture in `data` (thumbnail) as a JPEG of `size`."""
    return jpeg_bytes(thumbnail(data, name, size.side), size.quality)
