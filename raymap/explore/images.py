"""Images on demand: fetch by ``identifier`` (file://, http(s) with timeouts), fall back to an HDF5 store, else a placeholder."""

from __future__ import annotations

import io
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageDraw, UnidentifiedImageError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0
DEFAULT_CACHE_SIZE = 512
DEFAULT_THUMB_SIZE = 128
MAX_IMAGE_BYTES = 20 * 2**20


class ImageUnavailableError(ValueError):
    """No source gave a readable image; the message lists what each source said."""


@dataclass(frozen=True, slots=True)
class ImageResult:
    """A thumbnail and where it came from."""

    image: Image.Image  # RGB thumbnail, at most thumb_size on its longer side
    source: str  # "identifier", "hdf5" or "placeholder"
    errors: tuple[str, ...]  # why earlier sources failed (empty when the identifier worked)

    @property
    def ok(self) -> bool:
        return self.source != "placeholder"


def placeholder(size: int = DEFAULT_THUMB_SIZE, text: str = "no image") -> Image.Image:
    """A grey square with a cross and a caption, shown where an image cannot be had."""
    img = Image.new("RGB", (size, size), (224, 224, 224))
    draw = ImageDraw.Draw(img)
    draw.line((0, 0, size - 1, size - 1), fill=(160, 160, 160), width=2)
    draw.line((0, size - 1, size - 1, 0), fill=(160, 160, 160), width=2)
    draw.text((6, size // 2 - 6), text, fill=(80, 80, 80))
    return img


def _decode(data: bytes, where: str, thumb_size: int) -> Image.Image:
    try:
        opened = Image.open(io.BytesIO(data))
        opened.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"{where}: not a readable image ({len(data)} bytes): {e}") from e
    img = opened.convert("RGB")
    img.thumbnail((thumb_size, thumb_size))
    return img


class ImageFetcher:
    """Thumbnails by identifier with an HDF5 fallback keyed by uuid and a small thread-safe LRU cache.

    ``fetch`` never raises for a missing or unreadable image: it returns a placeholder and the
    reasons. ``fetch(..., strict=True)`` raises :class:`ImageUnavailableError` instead. Failures
    are cached too, so an unreachable host costs one timeout, not one per hover.
    """

    def __init__(
        self,
        h5_path: str | os.PathLike[str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        thumb_size: int = DEFAULT_THUMB_SIZE,
    ) -> None:
        self.h5_path = os.fspath(h5_path) if h5_path is not None else None
        if self.h5_path is not None and not os.path.exists(self.h5_path):
            raise FileNotFoundError(f"image store not found: {self.h5_path}")
        if timeout_s <= 0 or cache_size < 0 or thumb_size < 8:
            raise ValueError(
                f"timeout_s must be > 0, cache_size >= 0, thumb_size >= 8; got {timeout_s}, {cache_size}, {thumb_size}"
            )
        self.timeout_s, self.cache_size, self.thumb_size = timeout_s, cache_size, thumb_size
        self._cache: OrderedDict[tuple[str | None, str | None], ImageResult] = OrderedDict()
        self._lock = threading.Lock()

    def fetch(self, identifier: str | None, uuid: str | None = None, strict: bool = False) -> ImageResult:
        """The thumbnail for a row: its ``identifier`` first, then the HDF5 store by ``uuid``, else a placeholder."""
        key = (identifier, uuid)
        with self._lock:
            result = self._cache.get(key)
            if result is not None:
                self._cache.move_to_end(key)
        if result is None:
            result = self._load(identifier, uuid)
            with self._lock:
                self._cache[key] = result
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        if strict and not result.ok:
            raise ImageUnavailableError(
                f"no image for identifier={identifier!r} uuid={uuid!r}: {'; '.join(result.errors)}"
            )
        return result

    def _load(self, identifier: str | None, uuid: str | None) -> ImageResult:
        errors = []
        attempts = [("identifier", identifier, self._read_identifier), ("hdf5", uuid, self._read_hdf5)]
        for name, key, read in attempts:
            if not key:
                errors.append(f"{name}: none given")
                continue
            try:
                data = read(key)
                if len(data) > MAX_IMAGE_BYTES:
                    raise ValueError(f"{key}: larger than {MAX_IMAGE_BYTES} bytes")
                return ImageResult(_decode(data, f"{name} {key}", self.thumb_size), name, tuple(errors))
            except (OSError, ValueError, KeyError) as e:  # every way a source can fail, each reported
                errors.append(f"{name}: {e}")
        log.debug("image placeholder for %r / %r: %s", identifier, uuid, errors)
        return ImageResult(placeholder(self.thumb_size), "placeholder", tuple(errors))

    def _read_identifier(self, identifier: str) -> bytes:
        url = urllib.parse.urlparse(identifier)
        if url.scheme == "file":
            path = urllib.request.url2pathname(url.path)
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path}: no such file")
            with open(path, "rb") as f:
                return f.read(MAX_IMAGE_BYTES + 1)
        if url.scheme in ("http", "https"):
            try:
                with urllib.request.urlopen(identifier, timeout=self.timeout_s) as resp:
                    return bytes(resp.read(MAX_IMAGE_BYTES + 1))
            except (urllib.error.URLError, TimeoutError) as e:
                raise OSError(f"{identifier}: {getattr(e, 'reason', e)}") from e
        raise ValueError(f"{identifier!r}: unsupported scheme {url.scheme!r}; expected file, http or https")

    def _read_hdf5(self, uuid: str) -> bytes:
        import h5py

        if self.h5_path is None:
            raise KeyError("no HDF5 image store configured")
        with h5py.File(self.h5_path, "r") as h5:
            if uuid not in h5:
                raise KeyError(f"{uuid} not in {self.h5_path}")
            return bytes(h5[uuid][()].tobytes())
