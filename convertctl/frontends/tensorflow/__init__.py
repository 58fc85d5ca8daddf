"""TensorFlow/Keras -> ONNX: a SavedModel, .keras or .h5 model, converted with tf2onnx in a child process.

worker.py runs in the child; the parent side is converted.py, shared with paddle.
"""

from __future__ import annotations

from convertctl.frontends import converted
from convertctl.frontends.base import Detection, Frontend, Stack, path_and_folder
from convertctl.frontends.tensorflow import files


def export(recipe, samples_path, workdir, chunk=None):
    return converted.export(FRONTEND, "tensorflow", recipe, samples_path, workdir, chunk)


def describe_inputs(recipe, workdir):
    return converted.describe_inputs(FRONTEND, recipe, workdir)


FRONTEND = Frontend(
    name="tensorflow",
    reference_name="tensorflow",
    export=export,
    preflight=converted.preflight,
    source_files=converted.source_files,
    read_paths=path_and_folder,
    check_source=converted.check_source,
    cli_source=lambda source, weights: converted.cli_source("tensorflow", source),
    source_help="a TensorFlow model (SavedModel folder, .keras, .h5)",
    path_kind="a SavedModel folder, .keras, .h5",
    detection=Detection(
        formats=files.FORMATS, detect=files.detect, looks_like=files.looks_like,
        folder_kind="a TensorFlow SavedModel (saved_model.pb)",
        files_hint="TensorFlow: SavedModel folder, .keras, .h5",
    ),
    describe_inputs=describe_inputs,
    default_opset=17,
    stacks=(Stack("tensorflow", ("tensorflow", "tf2onnx"), extra="tf"),),
    worker="convertctl.frontends.tensorflow.worker",
)
