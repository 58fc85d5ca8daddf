"""A TensorFlow/Keras model from its files alone (tensorflow is not imported).

    SavedModel   a folder with saved_model.pb (or saved_model.pbtxt) and variables/
    Keras 3      a .keras file (a zip with config.json)
    HDF5         a .h5/.hdf5 file (Keras 2 / tf-keras, or Keras 3's legacy H5)
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from convertctl.errors import SourceModelError
from convertctl.frontends.base import ModelFiles

FORMATS = ("saved_model", "keras", "h5")


def _keras_file(path: Path) -> ModelFiles:
    if not zipfile.is_zipfile(path):
        raise SourceModelError(f"{path} is not a Keras 3 .keras file (not a zip archive)",
                               hint="Keras 2 models are .h5 files; save Keras 3 models with model.save('x.keras')")
    with zipfile.ZipFile(path) as z:
        if "config.json" not in z.namelist():
            raise SourceModelError(f"{path} is not a Keras 3 .keras file (no config.json inside)")
    return ModelFiles("tensorflow", "keras", path)


def _h5_file(path: Path) -> ModelFiles:
    with open(path, "rb") as f:
        if f.read(8) != b"\x89HDF\r\n\x1a\n":
            raise SourceModelError(f"{path} is not an HDF5 file (no HDF5 signature)",
                                   hint="an .h5 Keras model is written by model.save('x.h5')")
    return ModelFiles("tensorflow", "h5", path)


def detect(path: Path) -> ModelFiles | None:
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return ModelFiles("tensorflow", "saved_model", path)
        return None
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return _keras_file(path)
    if suffix in (".h5", ".hdf5"):
        return _h5_file(path)
    if path.name == "saved_model.pb":
        return ModelFiles("tensorflow", "saved_model", path.parent)
    return None


def looks_like(path: Path) -> bool:
    return path.suffix.lower() in (".keras", ".h5", ".hdf5")
