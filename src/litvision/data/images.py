"""Image files -> uint8 tensors: one decoder for training folders, prediction and export.

Every file Pillow reads (PNG, JPEG, BMP, WebP, GIF, TIFF, ...) becomes a ``(channels, size, size)``
uint8 tensor, the layout of the built-in datasets' in-memory splits, so normalization and augmentation
are the same whatever the images came from.

Files are untrusted: one whose pixels would take more than Pillow's limit (``PIL.Image.MAX_IMAGE_PIXELS``,
about 89M pixels by default) is refused from its header, before anything is decoded, like any other
unreadable file; a user who trusts larger files raises that limit. Pillow's warnings are silenced while
decoding without changing the warning filters the rest of the process sees afterwards.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from litvision.support.errors import DataError, first_line

RESIZE_MODES = ("crop", "pad")
_BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white


def _readable_suffixes() -> frozenset[str]:
    Image.init()  # registers every plugin, so the list does not depend on what was imported first
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


IMAGE_SUFFIXES: frozenset[str] = _readable_suffixes()  # lower-case, with the dot: ".png", ".jpg", ...


def _to_8bit(image: Image.Image) -> Image.Image:
    """Deep modes (16-bit "I;16*", 32-bit "I", float "F") scaled to 8-bit grayscale, not clipped at 255."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit files (PNG, TIFF) open as "I;16" or "I" holding 0..65535; 65535 / 257 = 255. Integer
        # rounding, (2v + 257) // 514, equals rint(v / 257) for every v (no value lies half-way) in a
        # third of the memory of float64.
        values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
        values *= 2
        values += 257
        values //= 514
        return Image.fromarray(values.astype(np.uint8), mode="L")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0  # [0, 1] floats or [0, 255] floats
        values = np.nan_to_num(values) * (255.0 / peak)
        return Image.fromarray(np.rint(np.clip(values, 0, 255)).astype(np.uint8), mode="L")
    return image


def _flatten(image: Image.Image) -> Image.Image:
    """Transparency (RGBA, LA, palette or RGB with a transparent colour) composited on white."""
    if image.mode == "P" or (image.mode in ("RGB", "L") and "transparency" in image.info):
        image = image.convert("RGBA") if "transparency" in image.info else image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        image = Image.alpha_composite(background, rgba)
    return image


def _fit(image: Image.Image, size: int, resize: str, path) -> Image.Image:
    """Square ``size`` x ``size``: "crop" scales the short side to ``size`` and cuts the centre; "pad" scales
    the long side to ``size`` and centres the image on black."""
    width, height = image.size
    if resize == "crop":
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        _check_pixels(path, *new, scaled=True)  # a 1-pixel-high strip would be scaled up to a bomb
        if new != image.size:
            image = image.resize(new, Image.Resampling.BILINEAR)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return image.crop((left, top, left + size, top + size))
    scale = size / max(width, height)
    new = (max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale))))
    if new != image.size:
        image = image.resize(new, Image.Resampling.BILINEAR)
    if new == (size, size):
        return image
    canvas = Image.new(image.mode, (size, size), 0)
    canvas.paste(image, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


# -- what a file may cost ---------------------------------------------------------------------------
def _check_pixels(path, width: int, height: int, scaled: bool = False) -> None:
    """A :class:`DataError` naming the file and its size when ``width`` x ``height`` exceeds Pillow's limit."""
    limit = Image.MAX_IMAGE_PIXELS  # read at each call: a user who trusts larger files raises it
    if limit is not None and width * height > limit:
        how = "scaled for resize=crop to " if scaled else ""
        raise DataError(
            f"{path}: too large to decode ({how}{width}x{height} = {width * height} pixels, more than the limit "
            f"PIL.Image.MAX_IMAGE_PIXELS={int(limit)}; a decompression bomb?)"
        )


_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_filters: warnings.catch_warnings | None = None


@contextlib.contextmanager
def _pillow_warnings_silenced() -> Iterator[None]:
    """Pillow's warnings ignored while this process decodes ("palette images with transparency", EXIF notes,
    its decompression-bomb warning, which :func:`_check_pixels` turns into an error itself).

    ``warnings.catch_warnings`` saves the process's filter list on entry and puts it back on exit: entered
    and left by several decoding threads in turn, one thread would put back the list another had changed
    and leave the user's filters altered for good. The threads share one instead, entered by the first
    and left by the last, so the user's filters are the same after decoding as before.
    """
    global _quiet_users, _quiet_filters
    with _quiet_lock:
        if _quiet_users == 0:
            _quiet_filters = warnings.catch_warnings()
            _quiet_filters.__enter__()
            warnings.simplefilter("ignore")
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                _quiet_filters.__exit__(None, None, None)
                _quiet_filters = None


def read_image(path, channels: int, size: int, resize: str = "crop") -> torch.Tensor:
    """uint8 ``(channels, size, size)`` from any file Pillow reads: :func:`read_image_array` as a tensor."""
    return torch.from_numpy(read_image_array(path, channels, size, resize))


def read_image_array(path, channels: int, size: int, resize: str = "crop") -> np.ndarray:
    """uint8 ``(channels, size, size)`` array from any file Pillow reads.

    PNG, JPEG, BMP, WebP, GIF (first frame), TIFF, ...; 16-bit images are scaled to 8 bit, grayscale,
    RGBA (composited on white) and palette images converted to ``channels`` (1: luma, 3: RGB); the EXIF
    orientation is applied. ``resize``: "crop" (resize the short side to ``size``, cut the centre square)
    or "pad" (fit inside ``size`` x ``size``, centred on black).

    Raises :class:`~litvision.support.errors.DataError` ``"<path>: not a readable image (...)"`` for files that
    are missing, truncated, corrupt or not images, and ``"<path>: too large to decode (<W>x<H> = <N> pixels,
    more than the limit ...)"`` for files whose pixels would exceed ``PIL.Image.MAX_IMAGE_PIXELS``, checked
    from the header before decoding (a JPEG at the reduced scale it is decoded at).
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise DataError(f"image size must be a positive integer, got {size!r}")
    if resize not in RESIZE_MODES:
        raise DataError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    try:
        with _pillow_warnings_silenced(), Image.open(path) as image:
            if image.format == "JPEG":
                # Let libjpeg decode at a reduced scale (still >= size on both sides): large photos decode
                # several times faster and are resized down anyway.
                image.draft(None, (size, size))
            image.seek(0)  # animated formats: the first frame
            _check_pixels(path, *image.size)  # before a single pixel is decoded
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _flatten(_to_8bit(image))
            image = image.convert("L" if channels == 1 else "RGB")
            image = _fit(image, size, resize, path)
            array = np.array(image, dtype=np.uint8)  # a copy: writable, independent of the file
    except DataError:
        raise
    except Image.DecompressionBombError as err:  # over twice the limit: Pillow refuses it when it opens the file
        raise DataError(f"{path}: too large to decode ({first_line(err)})") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as err:
        # UnidentifiedImageError (not an image) and truncated-file errors are OSErrors.
        raise DataError(f"{path}: not a readable image ({first_line(err)})") from None
    if array.ndim == 2:
        array = array[:, :, None]
    # numpy, not torch: one thread, so decoding processes never touch torch's OpenMP pool
    return np.ascontiguousarray(array.transpose(2, 0, 1))
