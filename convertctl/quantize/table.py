"""One calibration, a reusable table.

Activation statistics are collected once with ONNX Runtime's calibrators (minmax, entropy,
percentile), streamed in chunks so memory does not grow with the number of samples, and saved as
ONNX Runtime's calibration-cache JSON (what `quantize_static` reads back) plus a metadata file that
keys it by the model's and the data's hashes. A later run with the same model, data and method
reuses it; any change invalidates it, and the reason is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convertctl.errors import UsageError, require
from convertctl.locks import exclusive_lock
from convertctl.report.manifest import sha256_file

_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


@dataclass
class CalibrationTable:
    path: Path  # ONNX Runtime calibration-cache JSON
    meta: dict
    reused: bool
    invalidated: str | None = None  # why an existing table could not be reused

    @property
    def method(self) -> str:
        return self.meta["method"]

    def ranges(self) -> dict[str, tuple[float, float]]:
        """tensor name -> (lowest, highest) as calibrated."""
        calib = require("onnxruntime.quantization.calibrate", "onnxruntime")
        data = calib.load_tensors_data(self.path)
        return {name: (float(np.min(td.range_value[0])), float(np.max(td.range_value[1])))
                for name, td in data.data.items()}


def ort_method(method: str):
    calib = require("onnxruntime.quantization.calibrate", "onnxruntime")
    return getattr(calib.CalibrationMethod, _METHODS[method])


def model_sha256(model_path: Path) -> str:
    from convertctl.model import companion_files

    h = hashlib.sha256()
    for f in companion_files(model_path):
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _why_stale(old: dict, new: dict) -> str | None:
    for key, what in (("model_sha256", "the model changed"), ("data_sha256", "the calibration data changed"),
                      ("method", "the calibration method changed"), ("percentile", "the percentile changed")):
        if old.get(key) != new.get(key):
            return f"{what} ({str(old.get(key))[:12]} -> {str(new.get(key))[:12]})"
    return None


class _ListReader:
    """ONNX Runtime's CalibrationDataReader protocol over one chunk of feeds."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def calibrate(model_path: Path, batches: Callable[[], Iterable[dict]], data_sha256: str, method: str,
              percentile: float, cache_dir: Path, name: str, chunk: int = 16, batch: int | None = None
              ) -> CalibrationTable:
    """Collect (or reuse) activation ranges of every float tensor of `model_path`.

    `batches()` yields feeds of single samples (a batch dim of 1 at each input's batch axis); they are fed to the
    calibrator `chunk` runs at a time, one sample per run, or for a model that takes exactly b > 1 samples per run
    (its inputs fix the dim at their batch axes, or `batch`, the pipeline's chunk, is exact) b per run, stacked
    along the batch axes `batch` carries (quantize/batches.model_runs). A cached pair
    that is stale, corrupt or unreadable is recalibrated and rewritten (the reason in `invalidated`); a cache
    folder that cannot be written is bypassed (calibrated into a temporary folder, also said in `invalidated`).
    """
    meta = {"model_sha256": model_sha256(model_path), "data_sha256": data_sha256, "method": method,
            "percentile": percentile if method == "percentile" else None}
    try:
        held = _locked(cache_dir, name)
    except OSError as exc:
        folder = _private_folder()
        why = (f"the calibration cache folder {cache_dir} cannot be used ({type(exc).__name__}: "
               f"{exc.strerror or exc}): calibrated without caching")
        return _compute(model_path, batches, method, percentile, folder, name, chunk, meta, why, batch)
    with held:
        table_path, meta_path = _paths(cache_dir, name)
        old, invalidated = _cached_pair(table_path, meta_path, meta)
        if old is not None:
            return CalibrationTable(table_path, old, reused=True)
        return _compute(model_path, batches, method, percentile, cache_dir, name, chunk, meta, invalidated, batch)


def _paths(folder: Path, name: str) -> tuple[Path, Path]:
    return folder / f"{name}.calibration.json", folder / f"{name}.calibration.meta.json"


def _locked(cache_dir: Path, name: str):
    """The table's lock (created now, so an unwritable folder shows here): two runs of one recipe never
    interleave their writes of the same pair."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = cache_dir / f"{name}.calibration.lock"
    open(lock, "a").close()
    return exclusive_lock(lock)


def _private_folder() -> Path:
    import atexit
    import shutil

    folder = Path(tempfile.mkdtemp(prefix="convertctl-calib-"))
    atexit.register(shutil.rmtree, folder, True)  # the table is read by the emitters until the run ends
    return folder


def _cached_pair(table_path: Path, meta_path: Path, meta: dict) -> tuple[dict | None, str | None]:
    """(metadata, None) when the cached table can be reused; else (None, why not), why None when there was
    nothing cached. Whatever is wrong with the files (truncated, not JSON, edited), the answer is recompute."""
    if not meta_path.exists():
        return None, None
    if not table_path.is_file():
        return None, "the cached table file is missing"
    try:
        old = json.loads(meta_path.read_text())
        if not isinstance(old, dict) or not all(k in old for k in _RECORDED):
            raise ValueError("fields are missing")
    except (OSError, ValueError) as exc:  # truncated by a full disk or a kill before writes were atomic
        return None, f"the cached metadata file {meta_path.name} is unreadable ({type(exc).__name__}: {exc})"
    why = _why_stale(old, meta)
    if why is None and old.get("table_sha256") != sha256_file(table_path):
        why = "the table file does not match its recorded hash (corrupt or edited)"
    if why is None:
        try:
            json.loads(table_path.read_text())
        except (OSError, ValueError) as exc:
            why = f"the cached table file is unreadable ({type(exc).__name__}: {exc})"
    return (old, None) if why is None else (None, why)


_RECORDED = ("model_sha256", "data_sha256", "method", "num_samples", "tensors", "table_sha256")


def _compute(model_path: Path, batches, method: str, percentile: float, folder: Path, name: str, chunk: int,
             meta: dict, invalidated: str | None, batch: int | None = None) -> CalibrationTable:
    from convertctl.data.batching import axes_of
    from convertctl.quantize.batches import model_runs

    calib = require("onnxruntime.quantization.calibrate", "onnxruntime")
    table_path, meta_path = _paths(folder, name)
    extra = {"percentile": percentile} if method == "percentile" else {}
    with tempfile.TemporaryDirectory(prefix="convertctl-calib-") as tmp:
        calibrator = calib.create_calibrator(
            Path(model_path), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_method(method), extra_options=extra,
        )
        count, pending = 0, []
        for feeds, samples in model_runs(batches(), _run_size(model_path, batch), axes_of(batch)):
            pending.append(feeds)
            count += samples
            if len(pending) == chunk:  # bounded memory: the calibrator merges each chunk into its statistics
                calibrator.collect_data(_ListReader(pending))
                pending = []
        if pending:
            calibrator.collect_data(_ListReader(pending))
        if count == 0:
            raise UsageError("no calibration samples were read", hint="check calibration.data in the recipe")
        tensors = calibrator.compute_data()
        raw = Path(tmp) / "table.json"
        calib.save_tensors_data(tensors, raw)
        # ONNX Runtime writes tensors in set order, which changes from process to process (hash randomisation):
        # sorted keys make the same calibration the same bytes.
        table = json.dumps(json.loads(raw.read_text()), indent=1, sort_keys=True) + "\n"
    # The table first and the metadata last, each replaced atomically: a run killed in between leaves old
    # metadata whose table hash the new table does not match, so the pair is never trusted.
    meta.update(num_samples=count, tensors=len(tensors.data),
                table_sha256=hashlib.sha256(table.encode()).hexdigest())
    try:
        _write_atomic(table_path, table)
        _write_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True))
    except OSError as exc:  # a full or read-only cache folder: the table is still this run's to use
        table_path, meta_path = _paths(_private_folder(), name)
        _write_atomic(table_path, table)
        _write_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True))
        invalidated = "; ".join(filter(None, [invalidated, f"the calibration cache folder {folder} could not be "
                                              f"written ({type(exc).__name__}: {exc.strerror or exc}): not cached"]))
    return CalibrationTable(table_path, meta, reused=False, invalidated=invalidated)


def _run_size(model_path: Path, batch: int | None) -> int | None:
    """The number of samples every run of the model must hold (quantize/batches.run_size), else None."""
    from convertctl.model import describe
    from convertctl.quantize.batches import run_size

    return run_size({i.name: i.shape for i in describe(model_path).inputs}, batch)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
