"""OpenVINO IR for Intel CPUs.

The inference precision hint is always set explicitly and recorded: on CPUs with AMX/AVX512-BF16
OpenVINO's default hint is bf16, so an "FP32 IR" would silently run in bf16 (shared/FACTS.md).
The hint is not stored inside the IR (OpenVINO 2026.4 does not apply `runtime_options` from
rt_info for this property; measured), so it travels in `runtime.json` beside the IR.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from convertctl.errors import ConvertctlError, UsageError, require
from convertctl.schema import TargetOptions
from convertctl.targets.base import BuiltArtifact, Feeds, Runner, Target


class OpenVINOOptions(TargetOptions):
    runtime: Literal["openvino"]
    # fp16 = FP16-compressed weights (half the .bin); execution precision is `inference_precision`.
    # int8 = INT8 IR, by NNCF post-training quantization on the calibration data (int8_method: nncf),
    #        or read from the TensorRT-form Q/DQ ONNX made from the shared calibration table (qdq).
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    int8_method: Literal["nncf", "qdq"] = "nncf"
    inference_precision: Literal["f32", "bf16", "f16"] = "f32"
    device: Literal["CPU"] = "CPU"
    num_threads: int | None = Field(None, ge=1)
    # NNCF's fix for the int8 saturation of CPUs without VNNI (7-bit weights). auto: disable when the
    # CPU building and verifying the IR has VNNI (no saturation there), else enable (every layer).
    overflow_fix: Literal["auto", "disable", "first_layer", "enable"] = "auto"


def resolve_overflow_fix(choice: str, flags: set[str] | None = None) -> tuple[str, str]:
    """(NNCF overflow fix, why). OpenVINO documents the saturation as absent on CPUs with VNNI.

    Without VNNI, `enable` rather than NNCF's default `first_layer`: on EfficientNet-Lite0 (91 held-out views,
    AMD EPYC Zen 3, AVX2 only) enable gave cosine vs PyTorch 0.9953 and top-1 agreement 0.945, first_layer
    0.9886 / 0.923, disable 0.9861 / 0.890 (measured 2026-12)."""
    from convertctl.cpu import vnni_flags

    if choice != "auto":
        return choice, "set in the recipe"
    have = vnni_flags(flags)
    if have:
        return "disable", (f"this CPU has {', '.join(have)}: no int8 saturation; on a CPU without VNNI "
                           "rebuild with overflow_fix: enable")
    return "enable", ("this CPU has no VNNI (avx512_vnni, avx_vnni, amx_int8): 7-bit weights in every layer, "
                      "so its int8 kernels cannot saturate")


# ONNX operator types -> the OpenVINO operations NNCF sees for them
_OV_TYPES = {"Conv": ["Convolution", "GroupConvolution"], "Gemm": ["MatMul"], "MatMul": ["MatMul"],
             "ConvTranspose": ["ConvolutionBackpropData", "GroupConvolutionBackpropData"]}
_WEIGHTED = {t for types in _OV_TYPES.values() for t in types}


def ov_ignored_scope(model, onnx_path: Path, exclude_nodes, exclude_ops) -> tuple[list[str], list[str], list[str]]:
    """Translate ONNX node names and op types (what the recipe and the per-layer report use) into the
    OpenVINO operation names and types NNCF matches. Returns (names, types, names that did not map)."""
    onnx = require("onnx", "onnx")
    outputs = {n.name: list(n.output) for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    by_tensor = {name: op for op in model.get_ordered_ops() for out in op.outputs() for name in out.get_names()}
    names, unmapped = [], []
    for node in exclude_nodes:
        op = next((by_tensor[t] for t in outputs.get(node, []) if t in by_tensor), None)
        # OpenVINO splits Conv+bias into Convolution -> Add and names the tensor on the Add
        while op is not None and op.get_type_name() not in _WEIGHTED and op.get_type_name() == "Add":
            op = op.input_value(0).get_node()
        if op is None:
            unmapped.append(node)
        else:
            names.append(op.get_friendly_name())
    types = sorted({t for op in exclude_ops for t in _OV_TYPES.get(op, [op])})
    return names, types, unmapped


# What OpenVINO calls a node it creates itself: `<Type>_<N>`, N from a counter global to the process.
_AUTO_NAME = re.compile(r"([A-Za-z][A-Za-z0-9]*)_\d+")


def onnx_names(onnx_path: Path) -> set[str]:
    """Every node and tensor name of the ONNX model: names OpenVINO took from it, never renamed."""
    onnx = require("onnx", "onnx")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    names = {n.name for n in graph.node} | {t for n in graph.node for t in (*n.input, *n.output)}
    return names | {v.name for v in (*graph.input, *graph.output, *graph.initializer, *graph.value_info)}


def stable_names(model, keep: set[str], tag: str) -> int:
    """Give the nodes OpenVINO (or NNCF) named by its process-wide counter a name from their position instead.

    The counter's value depends on every model converted earlier in the process (the check stage, the other
    OpenVINO builds), so the same recipe gave other layer names when earlier stages were restored from the
    stage cache instead of computed. `<Type>.<tag><position in the ordered ops>` is the same in every process.
    Returns how many nodes were renamed."""
    renamed = 0
    for i, op in enumerate(model.get_ordered_ops()):
        name = op.get_friendly_name()
        match = _AUTO_NAME.fullmatch(name)
        if match and name not in keep:
            op.set_friendly_name(f"{match.group(1)}.{tag}{i}")
            renamed += 1
    return renamed


def _nncf_quantize(model, spec: OpenVINOOptions, ctx, onnx_path: Path) -> tuple:
    nncf = require("nncf", "openvino")
    import logging

    nncf.set_log_level(logging.WARNING)  # its INFO lines ("Not adding activation input quantizer ...") go to stdout
    if ctx is None or ctx.calibration is None:
        raise UsageError("an openvino int8 target with int8_method nncf needs calibration data")
    inputs = [p.get_any_name() for p in model.inputs]
    runs = _calibration_runs(model, ctx)
    dataset = nncf.Dataset(runs, lambda feeds: {k: feeds[k] for k in inputs if k in feeds})
    names, types, unmapped = ov_ignored_scope(model, onnx_path, ctx.exclude_nodes, ctx.exclude_ops)
    if unmapped:
        raise UsageError(f"quantize.exclude_nodes names nodes the model does not have: {unmapped}")
    ignored = nncf.IgnoredScope(names=names, types=types, validate=False)
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    fix, why = resolve_overflow_fix(spec.overflow_fix)
    # Full bias correction: on EfficientNet-Lite0 it lifted cosine vs FP32 from 0.987 to 0.991; with the
    # overflow fix off on this VNNI CPU, 0.990 -> 0.995 (measured). NNCF quantizes a model with If operations
    # (silero-vad: its whole body is one If) only with fast bias correction: it raises NotImplementedError else.
    has_if = any(op.get_type_name() == "If" for op in model.get_ops())
    if has_if:
        model = _unshared_bodies(model)
    try:
        quantized = nncf.quantize(model, dataset, subset_size=max(1, len(runs)), ignored_scope=ignored,
                                  fast_bias_correction=has_if,
                                  advanced_parameters=AdvancedQuantizationParameters(overflow_fix=getattr(OverflowFix, fix.upper())))
    except nncf.ValidationError as exc:
        if has_if and "must not be empty" in str(exc):  # an If branch no calibration sample takes
            raise ConvertctlError(
                "NNCF cannot quantize this model: it quantizes both branches of every If operation, each on the "
                "calibration samples that take it, and no calibration sample takes one of the branches (every "
                "sample gives the If's condition the same value, e.g. an input with a fixed `value` such as a "
                "sample rate)", hint="calibrate on data that takes every branch; int8_method: qdq builds instead, "
                                     "but ONNX Runtime's Q/DQ quantizer leaves the layers inside If bodies in float "
                                     "(see the quantize stage's findings)") from None
        raise
    return quantized, {"nncf": nncf.__version__, "subset_size": ctx.num_calibration,
                       **({"calibration_runs": len(runs)} if len(runs) != ctx.num_calibration else {}),
                       "fast_bias_correction": has_if,
                       **({"fast_bias_correction_reason": "the model has If operations, which NNCF's full bias "
                                                          "correction does not support"} if has_if else {}),
                       "overflow_fix": fix, "overflow_fix_reason": why,
                       "ignored_scope": {"names": names, "types": types}}


def _unshared_bodies(model):
    """The model written as IR and read back. OpenVINO's ONNX front end lets the two bodies of an If share nodes
    (a node of one body lists consumers in the other), on which NNCF's graph builder fails ("Could not find a node
    node_select_1_2 in NNCFGraph", silero-vad op18); a model read from IR has bodies of their own. In memory (no
    file stays mapped)."""
    import tempfile

    ov = require("openvino", "openvino")
    with tempfile.TemporaryDirectory(prefix="convertctl-ov-") as tmp:
        xml, weights = Path(tmp) / "model.xml", Path(tmp) / "model.bin"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        data = np.fromfile(weights, dtype=np.uint8) if weights.exists() else np.zeros(0, np.uint8)
        return ov.Core().read_model(xml.read_text(), ov.Tensor(data))


def _calibration_runs(model, ctx) -> list[dict[str, np.ndarray]]:
    """The calibration samples as the model takes them, one NNCF dataset item per model run: single samples
    (a batch of one at each input's batch axis), or for a model that takes exactly b > 1 samples per run (a
    fixed dim at an input's batch axis, or a batch the recipe pins) b samples stacked along the batch axes, the
    last run filled up with copies of its last sample (quantize/batches.model_runs)."""
    from convertctl.data.batching import Chunk
    from convertctl.data.dims import pinned_batch_dims
    from convertctl.quantize.batches import model_runs, run_size

    axes = {spec.name: spec.batch_axis for spec in ctx.inputs}
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        shapes[port.get_any_name()] = ([d.get_length() if d.is_static else None for d in shape]
                                       if shape.rank.is_static else [])
    pinned = [ctx.dims[d][1] for d in pinned_batch_dims(ctx.inputs) if d in ctx.dims]  # (min, opt, max)
    size = run_size(shapes, Chunk(min(pinned), axes, exact=True) if pinned else Chunk(1, axes))
    return [feeds for feeds, _ in model_runs(ctx.calibration(), size, axes)]


def _build(onnx_path: Path, spec: OpenVINOOptions, out_dir: Path, ctx=None) -> BuiltArtifact:
    ov = require("openvino", "openvino")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(onnx_path))
    keep = onnx_names(onnx_path)
    stable_names(model, keep, "c")  # before NNCF, which derives the names of what it inserts from these
    weights = {"fp32": "fp32", "fp16": "fp16-compressed", "int8": f"int8 ({spec.int8_method})"}[spec.precision]
    extra = {}
    if spec.precision == "int8" and spec.int8_method == "nncf":
        model, extra = _nncf_quantize(model, spec, ctx, onnx_path)
        stable_names(model, keep, "q")  # the constants NNCF added
    ov.save_model(model, str(out_dir / "model.xml"), compress_to_fp16=spec.precision == "fp16")
    settings = {
        "device": spec.device,
        "INFERENCE_PRECISION_HINT": spec.inference_precision,
        "weights": weights,
        **extra,
    }
    if spec.num_threads:
        settings["INFERENCE_NUM_THREADS"] = spec.num_threads
    (out_dir / "runtime.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return BuiltArtifact(files=[Path("model.xml"), Path("model.bin"), Path("runtime.json")], settings=settings)


def compile_ir(out_dir: Path):
    """Compile a built IR with the runtime settings recorded beside it."""
    ov = require("openvino", "openvino")
    settings = json.loads((out_dir / "runtime.json").read_text())
    config = {"INFERENCE_PRECISION_HINT": settings["INFERENCE_PRECISION_HINT"]}
    if "INFERENCE_NUM_THREADS" in settings:
        config["INFERENCE_NUM_THREADS"] = settings["INFERENCE_NUM_THREADS"]
    core = ov.Core()
    return core.compile_model(core.read_model(str(out_dir / "model.xml")), settings["device"], config)


def _open(out_dir: Path, spec: OpenVINOOptions, settings: dict) -> Runner:
    ov = require("openvino", "openvino")
    compiled = compile_ir(out_dir)
    outputs = list(compiled.outputs)
    request = compiled.create_infer_request()
    input_names = {p.get_any_name() for p in compiled.inputs}

    def run(feeds: Feeds) -> list[np.ndarray]:
        result = request.infer({k: v for k, v in feeds.items() if k in input_names})
        return [np.array(result[o]) for o in outputs]

    return Runner(
        run=run,
        output_names=[o.get_any_name() for o in outputs],
        effective={
            "openvino": ov.__version__.split("-")[0],
            # Read back from the compiled model: what actually runs, not what was asked for.
            "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "num_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        },
    )


TARGET = Target(
    name="openvino",
    summary="OpenVINO IR (.xml/.bin) for Intel CPUs",
    module="openvino",
    distribution="openvino",
    extra="openvino",
    precisions=("fp32", "fp16", "int8"),
    options_model=OpenVINOOptions,
    build=_build,
    open=_open,
    emission=lambda spec: "qdq_s8" if spec.precision == "int8" and spec.int8_method == "qdq" else "fp32",
)
