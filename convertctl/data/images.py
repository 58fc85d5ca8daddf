"""Read image files and apply a recipe's preprocessing (resize short side, centre crop, normalise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.errors import UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"image folder not found: {folder}", hint="run `make data`, or fix samples.images in the recipe")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"no images (.jpg .jpeg .png .bmp) in {folder}")
    return files


def preprocess(path: Path, pre, channels: int = 3) -> np.ndarray:
    """One image -> float32 array of shape [C, crop, crop] (NCHW) or [crop, crop, C] (NHWC).

    channels=1 reads the image as grayscale (luma) for 1-channel models."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"cannot read image {path}: {exc}") from None
    w, h = img.size
    s = pre.resize / min(w, h)
    img = img.resize((max(pre.crop, round(w * s)), max(pre.crop, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - pre.crop) // 2, (h - pre.crop) // 2
    img = img.crop((left, top, left + pre.crop, top + pre.crop))
    x = np.asarray(img, dtype=np.float32)
    if channels == 1:
        x = x[..., None]
    elif pre.color == "BGR":
        x = x[..., ::-1]
    mean, std = (pre.mean[:1], pre.std[:1]) if channels == 1 else (pre.mean, pre.std)
    x = (x * pre.scale - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1) if pre.layout == "NCHW" else x, dtype=np.float32)
