"""Inside the child process: read a Paddle inference model, run Paddle Inference for reference outputs,
convert it with paddle2onnx.

Runs unchanged in both Paddle stacks: paddlepaddle 3.x + paddle2onnx 2.x (PIR inference.json, and .pdmodel
written by Paddle 3) and paddlepaddle 2.6 + paddle2onnx 1.3 (.pdmodel written by Paddle 2.x, e.g. PP-OCR).
paddle2onnx aborts the whole process (SIGABRT from C++) on an unsupported operator, so the conversion runs
in a grandchild (convert.py), whose output is read back to name the operator.

Request keys: mode (describe|export), format (paddle_legacy|paddle_pir), model, params; for export also
inputs, dims, opset, samples, chunk, onnx, reference (see the worker protocol).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from convertctl.frontends.paddle.common import ANSI, major, p2o_version, paddle_major, static_mode
from convertctl.frontends.paddle.convert import check_written, convert_error, opset_note, run_paddle2onnx
from convertctl.frontends.worker import ChildError, first_line, main

# The highest ONNX opset each paddle2onnx line writes (its C++ aborts above it).
MAX_OPSET = {1: 19, 2: 21}


def versions() -> dict:
    import onnx
    import paddle

    return {"paddlepaddle": paddle.__version__, "paddle2onnx": p2o_version(), "onnx": onnx.__version__,
            "numpy": np.__version__}


def paddle_reason(exc: BaseException) -> str:
    """One line from a Paddle exception, whose text starts with a C++ traceback and ends in the real error."""
    text = ANSI.sub("", str(exc))
    summary = text.split("Error Message Summary:", 1)[-1]
    for line in summary.splitlines():
        line = line.strip()
        if re.match(r"^(\w+Error|\(\w+\))[: ]", line):
            return re.sub(r"\s*(\[Hint:.*|\(at /\S+\))$", "", line)
    return first_line(exc)


# --- reading the model -------------------------------------------------------------------------------

def _dtype(dtype) -> str:
    from paddle.base.data_feeder import convert_dtype

    return convert_dtype(dtype)


def _shape(shape) -> list:
    return [int(d) if int(d) >= 0 else None for d in shape]


def _check_files(request: dict) -> tuple[Path, Path, bool]:
    model = Path(request["model"])
    params = Path(request["params"]) if request.get("params") else model.with_suffix(".pdiparams")
    pir = request["format"] == "paddle_pir"
    if not model.is_file():
        raise ChildError("source", f"Paddle model file not found: {model}")
    if not params.is_file():
        raise ChildError("source", f"{model} has no weights: {params} not found",
                         hint="a Paddle inference model is the model file and its .pdiparams beside it")
    if pir and paddle_major() < 3:
        import paddle

        raise ChildError("usage", f"{model} is a Paddle 3 (PIR) model; paddlepaddle {paddle.__version__} in "
                         f"{sys.executable} cannot read it",
                         hint="run it with the Paddle 3 stack (`make frameworks`)")
    return model, params, pir


def read_signature(model: Path, pir: bool) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs [{name, shape, dtype}] from the program alone: the weights are not loaded."""
    import paddle

    try:
        with static_mode(pir):
            if pir:
                program = paddle.static.Program()
                paddle.base.core.deserialize_pir_program(str(model), program)
                inputs, outputs = [], []
                for op in program.global_block().ops:
                    if op.name() in ("pd_op.data", "pd_op.feed"):
                        value = op.result(0)
                        inputs.append({"name": op.attrs()["name"], "shape": _shape(value.shape),
                                       "dtype": _dtype(value.dtype)})
                    elif op.name() == "pd_op.fetch":
                        value = op.operand_source(0)
                        outputs.append({"name": op.attrs()["name"], "shape": _shape(value.shape),
                                        "dtype": _dtype(value.dtype),
                                        "col": op.attrs().get("col", len(outputs))})
            else:
                program = paddle.static.Program.parse_from_string(model.read_bytes())
                block = program.global_block()
                inputs, outputs = [], []
                for op in block.ops:
                    if op.type in ("feed", "fetch"):
                        name = op.output("Out")[0] if op.type == "feed" else op.input("X")[0]
                        var = block.var(name)
                        spec = {"name": name, "shape": _shape(var.shape), "dtype": _dtype(var.dtype),
                                "col": op.attr("col")}
                        (inputs if op.type == "feed" else outputs).append(spec)
                inputs.sort(key=lambda s: s.pop("col"))
    except Exception as exc:
        kind = "PIR model (inference.json)" if pir else "Paddle inference model (.pdmodel)"
        raise ChildError("source", f"{model} is not a readable {kind}: {paddle_reason(exc)}") from exc
    outputs.sort(key=lambda s: s.pop("col"))
    if not inputs or not outputs:
        what = "inputs" if not inputs else "outputs"
        raise ChildError("source", f"{model} has no {what}: not an inference model",
                         hint="save it with paddle.jit.save or paddle.static.save_inference_model")
    return inputs, outputs


def describe(request: dict) -> dict:
    model, _, pir = _check_files(request)
    inputs, outputs = read_signature(model, pir)
    return {"inputs": inputs, "outputs": outputs, "versions": versions()}


# --- reference outputs -------------------------------------------------------------------------------

def make_predictor(model: Path, params: Path):
    """Paddle Inference on the CPU with the graph optimizations off: they fuse ops and change the numerics."""
    import paddle.inference as pi

    config = pi.Config(str(model), str(params))
    config.disable_gpu()
    config.switch_ir_optim(False)
    config.disable_mkldnn()  # oneDNN kernels differ from the plain CPU ones in the last bits
    config.set_cpu_math_library_num_threads(max(1, min(8, os.cpu_count() or 1)))
    config.disable_glog_info()
    try:
        return pi.create_predictor(config)
    except Exception as exc:
        raise ChildError("source", f"Paddle Inference cannot load {model} with {params.name}: "
                         f"{paddle_reason(exc)}",
                         hint="the .pdiparams must be the one saved with this model file") from exc


def run_reference(predictor, arrays: dict[str, np.ndarray], chunk: int, shapes: str, axes: dict | None = None):
    """(output names, outputs): the samples in chunks along each input's batch axis (`axes`; default 0; None: the
    input is fed whole to every chunk), the outputs joined along axis 0 (data/batching.py)."""
    from convertctl.data.batching import join, sample_count, split

    names = predictor.get_output_names()
    parts = []
    runs = split(arrays, chunk, axes or {})
    try:
        for run in runs:
            for name, array in run.items():
                handle = predictor.get_input_handle(name)
                part = np.asarray(array, order="C")  # a scalar stays 0-d
                handle.reshape(list(part.shape))
                handle.copy_from_cpu(part)
            predictor.run()
            parts.append([predictor.get_output_handle(n).copy_to_cpu() for n in names])
    except Exception as exc:
        raise ChildError("source", f"the model rejected the sample inputs ({shapes}): {paddle_reason(exc)}",
                         hint="check inputs[].shape and dtype in the recipe") from exc
    return names, join(parts, [sample_count(run, axes or {}) for run in runs])


# --- conversion --------------------------------------------------------------------------------------

# --- export ------------------------------------------------------------------------------------------

def _check_inputs(request: dict, inputs: list[dict]) -> None:
    feeds = {s["name"]: s for s in inputs}
    names = [s["name"] for s in inputs]
    for spec in request["inputs"]:
        model_spec = feeds.get(spec["name"])
        if model_spec is None:
            raise ChildError("usage", f"inputs[].name {spec['name']!r} is not an input of the Paddle model; "
                             f"its inputs are {names}",
                             hint="use the model's feed names as the recipe's input names")
        want, have = spec["shape"], model_spec["shape"]
        if len(want) != len(have) or any(isinstance(w, int) and h is not None and w != h
                                         for w, h in zip(want, have, strict=True)):
            shown = ["?" if h is None else h for h in have]
            raise ChildError("usage", f"inputs[] {spec['name']!r} has shape {want} but the Paddle model's "
                             f"input is {shown} (? = any size)", hint="fix inputs[].shape in the recipe")
    missing = [n for n in names if n not in {s["name"] for s in request["inputs"]}]
    if missing:
        raise ChildError("usage", f"the Paddle model also needs the inputs {missing}; its inputs are {names}",
                         hint="declare every model input in the recipe's inputs")


def _pin_static_dims(model, request: dict) -> list[str]:
    """Dims the recipe gives as numbers but the Paddle model leaves open: fixed in the ONNX, as declared."""
    declared = {s["name"]: s["shape"] for s in request["inputs"]}
    pinned = []
    for value in model.graph.input:
        shape = declared.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if shape is None or len(shape) != len(dims):
            continue
        for axis, (dim, want) in enumerate(zip(dims, shape, strict=True)):
            if isinstance(want, int) and not dim.HasField("dim_value"):
                dim.dim_value = want
                pinned.append(f"{value.name}[{axis}]={want}")
    return pinned


def _order_outputs(onnx_names: list[str], names: list[str], outputs: list) -> list:
    """The reference in the ONNX's output order: by name; paddle2onnx 2.x names a translated .pdmodel's
    outputs fetch_name_N, so otherwise by position (both follow the model's fetch order)."""
    if sorted(onnx_names) == sorted(names):
        return [outputs[names.index(n)] for n in onnx_names]
    if len(onnx_names) != len(names):
        raise ChildError("source", f"the ONNX model has {len(onnx_names)} outputs ({onnx_names}) but Paddle "
                         f"Inference returns {len(names)} ({names})",
                         hint="the export log has paddle2onnx's output")
    return outputs


def export(request: dict) -> dict:
    import onnx

    model, params, pir = _check_files(request)
    inputs, _ = read_signature(model, pir)
    _check_inputs(request, inputs)
    try:
        import paddle2onnx  # noqa: F401  (fail before the reference run: it only runs in the grandchild)
    except ImportError as exc:
        raise ChildError("usage", f"paddle2onnx cannot be imported by {sys.executable}: {first_line(exc)}",
                         hint="install what is missing into that environment") from exc
    version = p2o_version()
    opset = int(request["opset"])
    top = MAX_OPSET.get(major(version))
    if top is not None and opset > top:
        raise ChildError("usage", f"export.opset is {opset} but paddle2onnx {version} writes ONNX opsets 7 "
                         f"to {top}", hint=f"set export.opset to {top} or lower")

    dtypes = {s["name"]: s["dtype"] for s in inputs}
    with np.load(request["samples"]) as data:
        missing = [s["name"] for s in request["inputs"] if s["name"] not in data.files]
        if missing:
            raise ChildError("usage", f"the samples file has no array for the inputs {missing}")
        arrays = {s["name"]: data[s["name"]] for s in inputs}
    for name, array in arrays.items():
        with contextlib.suppress(TypeError):
            arrays[name] = array.astype(np.dtype(dtypes[name]), copy=False)
    shapes = ", ".join(f"{n}: {list(a.shape)} {a.dtype}" for n, a in arrays.items())
    from convertctl.data.batching import sample_count

    axes = {s["name"]: s.get("batch_axis", 0) for s in request["inputs"]}
    chunk = request.get("chunk") or sample_count(arrays, axes)
    t0 = time.perf_counter()
    names, outputs = run_reference(make_predictor(model, params), arrays, chunk, shapes, axes)
    print(f"[convertctl] Paddle Inference reference: {time.perf_counter() - t0:.1f} s", flush=True)

    onnx_path = Path(request["onnx"]).resolve()
    onnx_path.unlink(missing_ok=True)
    converter = f"paddle2onnx {version}"
    t0 = time.perf_counter()
    code, output = run_paddle2onnx(model, params, onnx_path, opset)
    seconds = round(time.perf_counter() - t0, 3)
    model_proto = None
    if code == 0 and onnx_path.is_file() and onnx_path.stat().st_size > 0:
        with contextlib.suppress(Exception):
            model_proto = onnx.load(str(onnx_path))
    if model_proto is None or not model_proto.graph.node:
        onnx_path.unlink(missing_ok=True)
        raise convert_error(output, code, model, pir)
    print(f"[convertctl] {converter}: converted in {seconds:.1f} s", flush=True)
    check_written(model_proto, onnx_path, version, pir)

    notes = []
    written = next((o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    upgrade = opset_note(output, opset, written)
    if upgrade:
        notes.append(upgrade)
    pinned = _pin_static_dims(model_proto, request)
    if pinned:
        onnx.save(model_proto, str(onnx_path))
        notes.append("input dims the Paddle model leaves open are fixed in the ONNX as the recipe declares "
                     "them: " + ", ".join(pinned))
    onnx_names = [o.name for o in model_proto.graph.output]
    np.savez(request["reference"], *_order_outputs(onnx_names, names, outputs))
    return {
        "converter": converter,
        "attempts": [{"converter": converter, "ok": True, "seconds": seconds}],
        "versions": versions(),
        "opset": int(written),
        "output_names": onnx_names,
        "notes": notes,
    }


def work(request: dict) -> dict:
    if request["mode"] == "describe":
        return describe(request)
    return export(request)


if __name__ == "__main__":
    main(work)
