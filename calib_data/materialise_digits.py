"""Materialise scikit-learn's handwritten digits as a labelled calibration / evaluation data set.

`sklearn.datasets.load_digits()` ships 1797 real 8x8 handwritten digits (UCI ML optical recognition of
handwritten digits, test set) with their labels inside the scikit-learn package, so nothing is
downloaded. Pixel values are integers 0..16. This writes, byte-identically from run to run for the same
package versions:

- `<out>/digits/<label>/<index>.png`: 8x8 grayscale PNGs, pixel = round(v * 255 / 16)
  (index zero-padded to 4 digits, so file order is sample order), plus a `.complete` marker;
- `<out>/digits.npz`: `input` float32 [N, 1, 8, 8] with values v / 16, and `labels` int64 [N]
  (an uncompressed .npz with fixed zip timestamps).

    python calib_data/materialise_digits.py calib_data
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries carry a timestamp: fix it for deterministic bytes


def load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = np.asarray(digits.images), np.asarray(digits.target, dtype=np.int64)
    if not (np.array_equal(images, np.round(images)) and images.min() >= 0 and images.max() <= 16):
        raise SystemExit("unexpected load_digits() values: expected integers 0..16")
    return images, labels


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez (uncompressed, so it can be memory-mapped), but with fixed zip timestamps."""
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    tmp.replace(path)


def materialise(out_dir: Path) -> dict[str, int]:
    images, labels = load()
    folder = out_dir / "digits"
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".complete"
    marker.unlink(missing_ok=True)
    pixels = np.floor(images * 255.0 / 16.0 + 0.5).astype(np.uint8)  # round half up (only 127.5 is a half)
    for index, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        target = folder / str(int(label)) / f"{index:04d}.png"
        target.parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(target, format="PNG", optimize=False)
    inputs = (images / 16.0).astype(np.float32)[:, None, :, :]
    write_npz(out_dir / "digits.npz", {"input": inputs, "labels": labels})
    counts = {str(c): int((labels == c).sum()) for c in np.unique(labels)}
    marker.write_text(f"{len(labels)} images, {len(counts)} classes\n")
    return counts


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    counts = materialise(target)
    total = sum(counts.values())
    per_class = ", ".join(f"{k}: {v}" for k, v in counts.items())
    print(f"materialised {total} real handwritten digits (scikit-learn load_digits) into {target}:")
    print(f"  {target / 'digits'}/<label>/<index>.png  8x8 grayscale PNG, pixel = round(v*255/16)  ({per_class})")
    print(f"  {target / 'digits.npz'}  input float32 [{total}, 1, 8, 8] (v/16), labels int64 [{total}]")
