"""Read image files and apply a recipe's preprocessing (resize short side, centre crop, normalise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.data.limits import MAX_IMAGE_PIXELS
from convertctl.errors import UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _read(path: Path, mode: str):
    """Decode an image fully, refusing decompression bombs: Pillow's DecompressionBombWarning (more than
    MAX_IMAGE_PIXELS) is an error here, not a warning, and so is its DecompressionBombError (twice that)."""
    import struct
    import warnings
    import zlib

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_IMAGE_PIXELS:  # whatever Image.MAX_IMAGE_PIXELS is set to
                    raise Image.DecompressionBombError(f"{w}x{h} pixels")
                if not w or not h:
                    raise ValueError(f"empty image ({w}x{h})")
                return img.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(f"image {path} is too large to decode ({exc}); at most {MAX_IMAGE_PIXELS:,} pixels",
                         hint="leave this image out, or downscale it first") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as exc:
        # Pillow reports broken files in all of these (UnidentifiedImageError is an OSError)
        raise UsageError(f"cannot read image {path}: {exc}") from None


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"image folder not found: {folder}", hint="run `make data`, or fix samples.images in the recipe")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"no images (.jpg .jpeg .png .bmp) in {folder}")
    return files


def preprocess(path: Path, pre, channels: int = 3) -> np.ndarray:
    """One image -> float32 array of shape [C, crop, crop] (NCHW) or [crop, crop, C] (NHWC).

    channels=1 reads the image as grayscale (luma) for 1-channel models. An unreadable, truncated or
    oversized image (more than limits.MAX_IMAGE_PIXELS, before or after resizing) is a UsageError naming it."""
    from PIL import Image

    img = _read(path, "L" if channels == 1 else "RGB")
    w, h = img.size
    s = pre.resize / min(w, h)
    size = (max(pre.crop, round(w * s)), max(pre.crop, round(h * s)))
    if size[0] * size[1] > MAX_IMAGE_PIXELS:  # a thin strip resized to a large short side
        raise UsageError(f"image {path} ({w}x{h}) resized to a short side of {pre.resize} would be "
                         f"{size[0]}x{size[1]} pixels, more than {MAX_IMAGE_PIXELS:,}",
                         hint="lower preprocess.resize, or leave this image out")
    img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    left, top = (w - pre.crop) // 2, (h - pre.crop) // 2
    img = img.crop((left, top, left + pre.crop, top + pre.crop))
    return _normalise(img, pre, channels)


def fit(path: Path, pre, height: int, width: int, channels: int = 3) -> np.ndarray:
    """One image -> float32 array [C, height, width] (NCHW) or [height, width, C] (NHWC): resized (bilinear) so that
    it covers height x width, then centre-cropped to it; an image of that size is used as it is. Normalised as
    preprocess() does. For inputs whose height and width are dynamic (their size comes from `dims` or from the
    images themselves, data/inputs.py), where a square crop would not fit."""
    from PIL import Image

    img = _read(path, "L" if channels == 1 else "RGB")
    w, h = img.size
    if (w, h) != (width, height):
        s = max(height / h, width / w)
        size = (max(width, round(w * s)), max(height, round(h * s)))
        if size[0] * size[1] > MAX_IMAGE_PIXELS:
            raise UsageError(f"image {path} ({w}x{h}) resized to cover {width}x{height} would be {size[0]}x{size[1]} "
                             f"pixels, more than {MAX_IMAGE_PIXELS:,}", hint="leave this image out")
        img = img.resize(size, Image.BILINEAR)
        w, h = img.size
        left, top = (w - width) // 2, (h - height) // 2
        img = img.crop((left, top, left + width, top + height))
    return _normalise(img, pre, channels)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image, from its header (nothing decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception as exc:  # UnidentifiedImageError (an OSError), DecompressionBombError, truncated headers
        raise UsageError(f"cannot read image {path}: {exc}") from None
    if not w or not h:
        raise UsageError(f"cannot read image {path}: empty image ({w}x{h})")
    return h, w


def common_size(files: list[Path], limit: int = 1000) -> tuple[tuple[int, int], int, int]:
    """The most common (height, width) among the images (the first `limit` of them; a tie goes to the size of the
    earlier file), how many of them have it, and how many were looked at."""
    sizes: dict[tuple[int, int], int] = {}
    looked = files[:limit]
    for f in looked:
        hw = image_size(f)
        sizes[hw] = sizes.get(hw, 0) + 1
    best = max(sizes, key=lambda hw: sizes[hw])  # dicts keep insertion order: ties go to the earlier file
    return best, sizes[best], len(looked)


def _normalise(img, pre, channels: int) -> np.ndarray:
    x = np.asarray(img, dtype=np.float32)
    if channels == 1:
        x = x[..., None]
    elif pre.color == "BGR":
        x = x[..., ::-1]
    mean, std = (pre.mean[:1], pre.std[:1]) if channels == 1 else (pre.mean, pre.std)
    x = (x * pre.scale - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1) if pre.layout == "NCHW" else x, dtype=np.float32)
