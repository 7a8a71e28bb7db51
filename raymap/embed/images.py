"""CPU side of embedding: decode images, make thumbnails, resize/crop to uint8 model input; bad files become rows with an error."""

from __future__ import annotations

import functools
import io
import json
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


@functools.lru_cache(maxsize=4)
def _geometric(preprocess_json: str) -> Callable[[Any], Any]:
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from torchvision.transforms import Compose, Normalize, ToTensor

    cfg = json.loads(preprocess_json)
    steps = image_transform_v2(PreprocessCfg(**cfg), is_train=False).transforms
    cut = next(i for i, t in enumerate(steps) if isinstance(t, ToTensor))
    tail = steps[cut:]
    if len(tail) != 2 or not isinstance(tail[1], Normalize):
        raise RuntimeError(f"unexpected open_clip eval transform tail {tail}; expected ToTensor + Normalize")
    return Compose(steps[:cut])


def geometric_transform(preprocess: dict[str, Any]) -> Callable[[Any], Any]:
    """open_clip's eval transform up to ToTensor (resize, crop, RGB): PIL in, PIL of the model's size out.

    The rest (ToTensor + Normalize) runs on the model's device, so workers ship uint8 pixels, 4x
    fewer bytes than float32 through the object store.
    """
    return _geometric(json.dumps(preprocess, sort_keys=True, default=list))


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
