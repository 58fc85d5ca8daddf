"""One calibration, a reusable table.

Activation statistics are collected once with ONNX Runtime's calibrators (minmax, entropy,
percentile), streamed in chunks so memory does not grow with the number of samples, and saved as
ONNX Runtime's calibration-cache JSON (what `quantize_static` reads back) plus a metadata file that
keys it by the model's and the data's hashes. A later run with the same model, data and method
reuses it; any change invalidates it, and the reason is recorded.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convertctl.errors import UsageError, require
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
    import hashlib

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
              percentile: float, cache_dir: Path, name: str, chunk: int = 16) -> CalibrationTable:
    """Collect (or reuse) activation ranges of every float tensor of `model_path`.

    `batches()` yields feeds of single samples; they are fed to the calibrator `chunk` at a time.
    """
    calib = require("onnxruntime.quantization.calibrate", "onnxruntime")
    cache_dir.mkdir(parents=True, exist_ok=True)
    table_path, meta_path = cache_dir / f"{name}.calibration.json", cache_dir / f"{name}.calibration.meta.json"
    meta = {"model_sha256": model_sha256(model_path), "data_sha256": data_sha256, "method": method,
            "percentile": percentile if method == "percentile" else None}
    invalidated = None
    if meta_path.exists() and table_path.exists():
        old = json.loads(meta_path.read_text())
        invalidated = _why_stale(old, meta)
        if invalidated is None and old.get("table_sha256") != sha256_file(table_path):
            invalidated = "the table file does not match its recorded hash (corrupt or edited)"
        if invalidated is None:
            return CalibrationTable(table_path, old, reused=True)

    extra = {"percentile": percentile} if method == "percentile" else {}
    with tempfile.TemporaryDirectory(prefix="convertctl-calib-") as tmp:
        calibrator = calib.create_calibrator(
            Path(model_path), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_method(method), extra_options=extra,
        )
        count, pending = 0, []
        for feeds in batches():
            pending.append(feeds)
            count += 1
            if len(pending) == chunk:  # bounded memory: the calibrator merges each chunk into its statistics
                calibrator.collect_data(_ListReader(pending))
                pending = []
        if pending:
            calibrator.collect_data(_ListReader(pending))
        if count == 0:
            raise UsageError("no calibration samples were read", hint="check calibration.data in the recipe")
        tensors = calibrator.compute_data()
    # Write the table, then the metadata last (atomically): a killed run never leaves a trusted pair.
    calib.save_tensors_data(tensors, table_path)
    # ONNX Runtime writes tensors in set order, which changes from process to process (hash randomisation):
    # sorted keys make the same calibration the same bytes.
    table_path.write_text(json.dumps(json.loads(table_path.read_text()), indent=1, sort_keys=True) + "\n")
    meta.update(num_samples=count, tensors=len(tensors.data), table_sha256=sha256_file(table_path))
    fd, tmp_meta = tempfile.mkstemp(dir=cache_dir, prefix=".meta-")
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    os.replace(tmp_meta, meta_path)
    return CalibrationTable(table_path, meta, reused=False, invalidated=invalidated)
