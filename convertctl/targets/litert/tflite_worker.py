"""Runs in a child of convertctl's own Python (which has tensorflow-cpu): TensorFlow's own tf.lite.TFLiteConverter
on a TensorFlow source (SavedModel folder, .keras, .h5), for the converter `tflite_converter` (tflite.py).

Why a child: TensorFlow takes seconds to import, and a native abort in the converter (MLIR, the calibrator) must be
a clear error of this artifact, not the end of the run. Standard library, numpy and tensorflow only.
    python -m convertctl.targets.litert.tflite_worker request.json  ->  result.json | error.json beside the request

The request: {"format": saved_model|keras|h5, "model": path, "precision": fp32|fp16|int8, "int8_io": float32|int8,
"calibration": {input name: .npy of the samples stacked along a new axis 0} (int8), "output": .tflite path, "work": folder}.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path


def _keras_major(path: Path) -> int | None:
    """The Keras major version an .h5 records (h5py does not import TensorFlow); None if none."""
    import h5py

    with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version")
    if isinstance(version, bytes):
        version = version.decode()
    return int(str(version).split(".")[0]) if version else None


def _legacy(fmt: str, path: Path) -> bool:
    """Whether the model is a Keras 2 one, loaded with tf-keras (TF_USE_LEGACY_KERAS=1, read by TF at import), as
    the tensorflow front end loads it: an .h5 that does not say Keras 3."""
    return fmt == "h5" and _keras_major(path) != 3


def _converter(request: dict, tf, legacy: bool, work: Path):
    """(the TFLiteConverter for the source, the model's input names in its own order, what was loaded)."""
    fmt, path = request["format"], Path(request["model"])
    if fmt == "saved_model":  # the signature the tensorflow front end exported: its input names are the ONNX's
        converter = tf.lite.TFLiteConverter.from_saved_model(str(path), signature_keys=["serving_default"])
        return converter, [], "SavedModel (serving_default)"
    if legacy:
        import tf_keras

        model = tf_keras.models.load_model(str(path), compile=False)
        names = [t.name.split(":")[0] for t in model.inputs]
        return tf.lite.TFLiteConverter.from_keras_model(model), names, f"tf-keras {tf_keras.__version__}"
    import keras

    model = keras.saving.load_model(str(path), compile=False)
    # Keras 3 models are not tf.keras models: from_keras_model needs tf.keras internals. Keras' own export writes
    # a SavedModel with a serving_default signature, which the converter takes
    exported = work / "keras_export"
    model.export(str(exported), format="tf_saved_model")
    names = [t.name.split(":")[0] for t in model.inputs]
    return tf.lite.TFLiteConverter.from_saved_model(str(exported)), names, f"keras {keras.__version__} (export)"


def _representative(calibration: dict[str, str], names: list[str], by_name: bool):
    """(the generator, the input order it uses): the run's calibration samples (keyed by ONNX input name), one at a
    time (batch 1), already preprocessed as the model takes them. A dict keyed by signature input name for a
    SavedModel (the ONNX's names); a list in the model's input order for a Keras model."""
    import numpy as np

    arrays = {n: np.load(p) for n, p in calibration.items()}
    order = [n for n in names if n in arrays]
    if len(order) != len(arrays):  # no names, or they differ (a Keras export renamed them): the ONNX order
        order = list(arrays)
    count = min(len(a) for a in arrays.values())

    def gen():
        for i in range(count):  # sample i is arrays[n][i], as the model takes it for one run, in its own dtype
            sample = [arrays[n][i] for n in order]
            yield dict(zip(order, sample, strict=True)) if by_name else sample

    return gen, order


def convert(request: dict, work: Path) -> dict:
    fmt, path = request["format"], Path(request["model"])
    legacy = _legacy(fmt, path)
    if legacy:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf

    caught: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        converter, names, loaded = _converter(request, tf, legacy, work)
        precision = request["precision"]
        if precision == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            by_name = fmt == "saved_model"
            converter.representative_dataset, names = _representative(request["calibration"], names, by_name)
            # full integer: every op in INT8 or the conversion fails (no silent float fallback)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if request["int8_io"] == "int8":
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        model = converter.convert()
        caught += [str(w.message).strip().splitlines()[0] for w in seen if str(w.message).strip()]
    Path(request["output"]).write_bytes(model)
    return {"tensorflow": tf.__version__, "loaded": loaded, "input_order": names, "by_name": fmt == "saved_model",
            "warnings": sorted(set(caught))[:10]}


def main(request_path: str) -> int:
    request_file = Path(request_path)
    request = json.loads(request_file.read_text())
    stem = request_file.name.removesuffix(".request.json")
    result, error = request_file.with_name(f"{stem}.result.json"), request_file.with_name(f"{stem}.error.json")
    try:
        out = convert(request, request_file.parent)
    except BaseException as exc:  # the reason, one line; the frames go to the log
        traceback.print_exc()
        lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
        error.write_text(json.dumps({"message": f"{type(exc).__name__}: {lines[0][:400] if lines else ''}",
                                     "detail": [x[:300] for x in lines[1:8]]}))
        return 1
    result.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
