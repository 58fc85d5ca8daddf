"""Which framework and on-disk format a model path is, from the files alone (no framework is imported).

    Paddle legacy   a folder with X.pdmodel + X.pdiparams, or the .pdmodel file
    Paddle PIR      a folder with X.json + X.pdiparams (Paddle 3's inference.json), or the .json file
    SavedModel      a folder with saved_model.pb (or saved_model.pbtxt) and variables/
    Keras 3         a .keras file (a zip with config.json)
    HDF5            a .h5/.hdf5 file (Keras 2 / tf-keras, or Keras 3's legacy H5)
    TorchScript     a zip archive with ROOT/code/ and ROOT/constants.pkl (torch.jit.save), whatever its name
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from convertctl.errors import SourceModelError

FRAMEWORK_OF = {"paddle_legacy": "paddle", "paddle_pir": "paddle", "saved_model": "tensorflow", "keras": "tensorflow",
                "h5": "tensorflow"}
FORMATS = tuple(FRAMEWORK_OF)


@dataclass(frozen=True)
class ModelFiles:
    framework: str  # paddle | tensorflow
    format: str  # one of FORMATS
    model: Path  # the file or folder the framework loads (.pdmodel / .json / SavedModel folder / .keras / .h5)
    params: Path | None = None  # Paddle's .pdiparams


def _paddle_pair(model: Path, fmt: str) -> ModelFiles:
    params = model.with_suffix(".pdiparams")
    if not params.is_file():
        raise SourceModelError(f"{model} has no {params.name} next to it: a Paddle inference model is the "
                               f"{model.suffix} file and its .pdiparams weights",
                               hint="copy both files, e.g. from the folder `paddle.jit.save` or `save_inference_model` wrote")
    return ModelFiles("paddle", fmt, model, params)


def _in_folder(folder: Path) -> ModelFiles:
    if (folder / "saved_model.pb").is_file() or (folder / "saved_model.pbtxt").is_file():
        return ModelFiles("tensorflow", "saved_model", folder)
    pdmodels = sorted(folder.glob("*.pdmodel"))
    jsons = [p for p in sorted(folder.glob("*.json")) if p.with_suffix(".pdiparams").is_file()]
    if len(pdmodels) + len(jsons) > 1:
        names = ", ".join(p.name for p in pdmodels + jsons)
        raise SourceModelError(f"{folder} holds more than one Paddle model ({names})",
                               hint="give the model file itself (e.g. inference.pdmodel) instead of the folder")
    if pdmodels:
        return _paddle_pair(pdmodels[0], "paddle_legacy")
    if jsons:
        return ModelFiles("paddle", "paddle_pir", jsons[0], jsons[0].with_suffix(".pdiparams"))
    if (folder / "inference.json").is_file() or list(folder.glob("*.pdiparams")):
        stem = next(iter(sorted(folder.glob("*.pdiparams"))), folder / "inference.pdiparams")
        raise SourceModelError(f"{folder} has an incomplete Paddle model: {stem.stem}.pdiparams needs "
                               f"{stem.stem}.pdmodel or {stem.stem}.json beside it (and the reverse)")
    raise SourceModelError(
        f"{folder} is neither a Paddle inference model (X.pdmodel or X.json with X.pdiparams) nor a TensorFlow "
        "SavedModel (saved_model.pb)",
        hint="give the model's folder or file: a Paddle inference model, a SavedModel folder, .keras, .h5, .onnx")


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


def detect(path: Path, forced: str | None = None) -> ModelFiles:
    """The framework and format of `path`; `forced` (a recipe's source.format) skips the guess, not the checks."""
    path = Path(path)
    if not path.exists():
        raise SourceModelError(f"model not found: {path}")
    found = _detect(path)
    if forced and forced != "auto" and forced != found.format:
        raise SourceModelError(f"source.format is {forced!r} but {path} is {found.format!r}",
                               hint="remove source.format (auto) or point source.path at a model of that format")
    return found


def _detect(path: Path) -> ModelFiles:
    if path.is_dir():
        return _in_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".pdmodel":
        return _paddle_pair(path, "paddle_legacy")
    if suffix == ".pdiparams":
        for model, fmt in ((path.with_suffix(".pdmodel"), "paddle_legacy"), (path.with_suffix(".json"), "paddle_pir")):
            if model.is_file():
                return ModelFiles("paddle", fmt, model, path)
        raise SourceModelError(f"{path} is Paddle weights without the model: {path.stem}.pdmodel or {path.stem}.json "
                               "must be next to it")
    if suffix == ".json" and path.with_suffix(".pdiparams").is_file():
        return ModelFiles("paddle", "paddle_pir", path, path.with_suffix(".pdiparams"))
    if suffix == ".json":
        raise SourceModelError(f"{path} has no {path.stem}.pdiparams next to it: a Paddle 3 inference model is the "
                               ".json program and its .pdiparams weights")
    if suffix == ".keras":
        return _keras_file(path)
    if suffix in (".h5", ".hdf5"):
        return _h5_file(path)
    if path.name == "saved_model.pb":
        return ModelFiles("tensorflow", "saved_model", path.parent)
    raise SourceModelError(f"cannot tell which framework {path} is for",
                           hint="Paddle: .pdmodel/.json + .pdiparams; TensorFlow: SavedModel folder, .keras, .h5")


def looks_like_model(source: str) -> bool:
    """Whether a command-line SOURCE is a Paddle or TensorFlow model path (so `export` can take it)."""
    path = Path(source)
    return path.is_dir() or path.suffix.lower() in (".pdmodel", ".pdiparams", ".keras", ".h5", ".hdf5") or (
        path.suffix.lower() == ".json" and path.with_suffix(".pdiparams").exists())


def torch_file_kind(path: Path) -> str | None:
    """What a PyTorch file is, from its content, whatever its name (.pt, .pth, .jit, .ts, none):
    "torchscript" (torch.jit.save: a zip with ROOT/code/ and ROOT/constants.pkl), "checkpoint" (torch.save
    of a state dict or a pickled module: a zip with ROOT/data.pkl and no code), or None (not a PyTorch zip)."""
    try:
        if not Path(path).is_file() or not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    roots = {n.split("/", 1)[0] for n in names if "/" in n}
    for root in roots:
        if f"{root}/constants.pkl" in names and any(n.startswith(f"{root}/code/") for n in names):
            return "torchscript"
    return "checkpoint" if any(n.endswith("/data.pkl") for n in names) else None
