"""Materialise the real photographs convertctl calibrates and verifies on.

The photographs ship inside PyPI packages that the Makefile installs (scikit-image's
`skimage.data`, scikit-learn's sample images), so nothing is downloaded at run time.
Each photograph is written once whole and several times as a deterministic crop
(different scale, position and mirror), which gives distinct, realistic views of
real scenes. Output is byte-identical from run to run for the same package versions.

    python calib_data/materialise.py calib_data/images
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# name -> (loader, licence as stated by the shipping package)
PHOTOS = {
    "astronaut": ("skimage", "public domain (NASA)"),
    "chelsea": ("skimage", "CC0 (Stefan van der Walt)"),
    "coffee": ("skimage", "CC0 (Rachel Michetti)"),
    "rocket": ("skimage", "public domain (SpaceX/NASA)"),
    "hubble_deep_field": ("skimage", "public domain (NASA)"),
    "immunohistochemistry": ("skimage", "public domain"),
    "retina": ("skimage", "CC BY 4.0 (Häggström, Mikael)"),
    "china.jpg": ("sklearn", "CC BY 2.0 (Sebastian Rohde / Flickr)"),
    "flower.jpg": ("sklearn", "CC BY 2.0 (Eren {Sea+Prairie} / Flickr)"),
}

# (relative side of the square crop, centre x, centre y, mirror)
VIEWS = [
    (0.95, 0.50, 0.50, False),
    (0.80, 0.40, 0.45, True),
    (0.70, 0.60, 0.55, False),
    (0.60, 0.35, 0.35, False),
    (0.60, 0.65, 0.65, True),
    (0.55, 0.50, 0.40, True),
    (0.50, 0.45, 0.60, False),
    (0.75, 0.55, 0.50, True),
    (0.90, 0.45, 0.55, True),
    (0.85, 0.55, 0.45, False),
    (0.65, 0.50, 0.50, False),
    (0.65, 0.40, 0.60, True),
    (0.70, 0.35, 0.50, False),
    (0.70, 0.65, 0.45, True),
    (0.80, 0.50, 0.60, False),
    (0.55, 0.60, 0.35, True),
]
SHORT_SIDE = 288  # big enough for resize-256/crop-224 preprocessing, small on disk


def load_photo(name: str, loader: str) -> np.ndarray:
    if loader == "skimage":
        import skimage.data

        return getattr(skimage.data, name)()
    from sklearn.datasets import load_sample_image

    return load_sample_image(name)


def views(image: Image.Image):
    w, h = image.size
    for k, (rel, cx, cy, mirror) in enumerate(VIEWS):
        side = rel * min(w, h)
        left = min(max(cx * w - side / 2, 0), w - side)
        top = min(max(cy * h - side / 2, 0), h - side)
        crop = image.crop((round(left), round(top), round(left + side), round(top + side)))
        crop = crop.resize((SHORT_SIDE, SHORT_SIDE), Image.BICUBIC)
        if mirror:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        yield k, crop


def materialise(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, (loader, _licence) in PHOTOS.items():
        stem = name.split(".")[0]
        image = Image.fromarray(load_photo(name, loader)).convert("RGB")
        for k, view in views(image):
            view.save(out_dir / f"{stem}_{k:02d}.png", optimize=False)
            count += 1
    (out_dir / ".complete").write_text(f"{count} images\n")
    return count


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images")
    print(f"materialised {materialise(target)} real photographs into {target}")
