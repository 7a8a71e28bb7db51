"""CPU side of embedding: decode images, make thumbnails, resize/crop to uint8 model input; bad files become rows with an error."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

PIXELS, THUMBNAIL, ERROR, PATH = "pixels", "thumbnail", "error", "_path"
THUMBNAIL_FORMAT = "JPEG"
# What Pillow raises on unreadable, truncated or hostile files; anything else is a bug and propagates.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)


def load_rgb(path: str) -> Any:
    """A fully decoded RGB PIL image (lazy decoding would hide truncated files until later)."""
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


def _resize(img: Image.Image, h: int, w: int, resample: Image.Resampling) -> Image.Image:
    """torchvision's ``F.resize`` on a PIL image: a no-op when the size already matches."""
    return img if (img.height, img.width) == (h, w) else img.resize((w, h), resample)


def _crop_or_pad(img: Image.Image, h: int, w: int, fill: int) -> Image.Image:
    """torchvision / open_clip center crop: pad with ``fill`` where the image is smaller, then crop the middle."""
    if w > img.width or h > img.height:
        left, top = max(0, (w - img.width) // 2), max(0, (h - img.height) // 2)
        canvas = Image.new("RGB", (max(w, img.width), max(h, img.height)), (fill,) * 3)
        canvas.paste(img, (left, top))
        img = canvas
    top, left = round((img.height - h) / 2.0), round((img.width - w) / 2.0)  # banker's rounding, as torchvision
    return img if (img.height, img.width) == (h, w) else img.crop((left, top, left + w, top + h))


def _keep_ratio(img: Image.Image, h: int, w: int, longest: float) -> tuple[int, int]:
    """open_clip's ``ResizeKeepRatio`` size (no random scale/aspect: eval)."""
    rh, rw = img.height / h, img.width / w
    ratio = max(rh, rw) * longest + min(rh, rw) * (1.0 - longest)
    return round(img.height / ratio), round(img.width / ratio)


def geometric_transform(preprocess: dict[str, Any]) -> Callable[[Image.Image], Image.Image]:
    """open_clip's eval transform up to ToTensor (resize + crop/pad), in Pillow alone.

    The same Pillow calls torchvision makes for ``resize_mode`` shortest / squash / longest
    (checked pixel for pixel against open_clip in the tests), without importing torch: the
    preprocessing workers stay light. ToTensor + Normalize run on the model's device, so
    workers ship uint8 pixels, 4x fewer bytes than float32 through the object store.
    """
    size, mode = preprocess["size"], preprocess.get("resize_mode", "shortest")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    resample = Image.Resampling.BILINEAR if preprocess.get("interpolation") == "bilinear" else Image.Resampling.BICUBIC
    fill = int(preprocess.get("fill_color", 0))
    if mode not in ("shortest", "squash", "longest"):
        raise ValueError(f"resize_mode: expected shortest, squash or longest, got {mode!r}")

    def transform(img: Image.Image) -> Image.Image:
        if mode == "squash":
            return _resize(img, h, w, resample)
        if mode == "longest":
            return _crop_or_pad(_resize(img, *_keep_ratio(img, h, w, 1.0), resample), h, w, fill)
        if h != w:  # open_clip: ResizeKeepRatio on the shortest edge, always bicubic
            return _crop_or_pad(_resize(img, *_keep_ratio(img, h, w, 0.0), Image.Resampling.BICUBIC), h, w, 0)
        short, long = sorted((img.width, img.height))  # torchvision Resize(int): shortest edge, long one truncated
        size = (int(h * long / short), h) if img.width <= img.height else (h, int(h * long / short))
        return _crop_or_pad(_resize(img, *size, resample), h, w, 0)

    return transform


def thumbnail_bytes(img: Any, size: int) -> bytes:
    """A JPEG no larger than ``size`` on its longer side, for the explorer's offline image fallback."""
    thumb = img.copy()
    thumb.thumbnail((size, size))
    buf = io.BytesIO()
    thumb.save(buf, format=THUMBNAIL_FORMAT, quality=90)
    return buf.getvalue()


def prepare_images(batch: pa.Table, preprocess: dict[str, Any], thumbnail_size: int) -> pa.Table:
    """Ray Data task: ``_path`` -> ``pixels`` (uint8 H x W x 3 tensor), ``thumbnail`` bytes, ``error``.

    A row whose file is missing, remote or not a decodable image keeps zero pixels and an
    ``error`` text; the driver reports it and never embeds it. Other columns pass through.
    """
    size = preprocess["size"]
    h, w = (size, size) if isinstance(size, int) else size
    transform = geometric_transform(preprocess)
    pixels = np.zeros((batch.num_rows, h, w, 3), np.uint8)
    thumbs: list[bytes | None] = [None] * batch.num_rows
    errors: list[str | None] = [None] * batch.num_rows
    for i, path in enumerate(batch.column(PATH).to_pylist()):
        if path is None:
            errors[i] = "not a local file (remote identifiers are not fetched)"
            continue
        try:
            img = load_rgb(path)
        except DECODE_ERRORS as e:
            errors[i] = f"{type(e).__name__}: {e}"
            continue
        out = np.asarray(transform(img))
        if out.shape != (h, w, 3):
            errors[i] = f"preprocessing gave shape {out.shape}, expected {(h, w, 3)}"
            continue
        pixels[i] = out
        if thumbnail_size:
            thumbs[i] = thumbnail_bytes(img, thumbnail_size)
    return (
        batch.append_column(PIXELS, pa.FixedShapeTensorArray.from_numpy_ndarray(pixels))
        .append_column(THUMBNAIL, pa.array(thumbs, pa.binary()))
        .append_column(ERROR, pa.array(errors, pa.string()))
    )
