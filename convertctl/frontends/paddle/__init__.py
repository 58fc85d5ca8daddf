"""PaddlePaddle -> ONNX: a Paddle inference model, converted with paddle2onnx in a child process.

worker.py runs in the child (inside a Paddle environment), convert.py in its grandchild (paddle2onnx can
abort the process), common.py is what both share; the parent side is converted.py, shared with tensorflow.
"""

from __future__ import annotations

from convertctl.frontends import converted
from convertctl.frontends.base import Detection, Frontend, Stack, path_and_folder
from convertctl.frontends.paddle import files

_LEGACY_FALLBACK = ("legacy Paddle model converted with the Paddle 3 stack (no paddle-legacy environment): it fails "
                    "on many published Paddle 2.x models; `make frameworks` creates the legacy stack")


def export(recipe, samples_path, workdir, chunk=None):
    return converted.export(FRONTEND, "paddlepaddle", recipe, samples_path, workdir, chunk)


def describe_inputs(recipe, workdir):
    return converted.describe_inputs(FRONTEND, recipe, workdir)


FRONTEND = Frontend(
    name="paddle",
    reference_name="paddle inference",
    export=export,
    preflight=converted.preflight,
    source_files=converted.source_files,
    read_paths=path_and_folder,
    check_source=converted.check_source,
    cli_source=lambda source, weights: converted.cli_source("paddle", source),
    source_help="a Paddle inference model (folder, .pdmodel, .json)",
    path_kind="a Paddle inference model",
    detection=Detection(
        formats=files.FORMATS, detect=files.detect, looks_like=files.looks_like,
        folder_kind="a Paddle inference model (X.pdmodel or X.json with X.pdiparams)",
        files_hint="Paddle: .pdmodel/.json + .pdiparams",
    ),
    describe_inputs=describe_inputs,
    default_opset=13,
    # paddle2onnx 2.x pins onnx<=1.17, and legacy Paddle 2.x models (PP-OCR) only convert with paddlepaddle 2.6.2
    # + paddle2onnx 1.3.1 + numpy<2: each stack in an environment of its own (envs/*.txt, `make frameworks`)
    stacks=(
        Stack("paddle", ("paddle", "paddle2onnx"), requirements="paddle.txt"),
        Stack("paddle-legacy", ("paddle", "paddle2onnx"), requirements="paddle-legacy.txt",
              fallback="paddle", fallback_warning=_LEGACY_FALLBACK),
    ),
    stack_for=lambda fmt: "paddle-legacy" if fmt == "paddle_legacy" else "paddle",
    worker="convertctl.frontends.paddle.worker",
)
