"""OpenVINO IR for Intel CPUs.

The inference precision hint is always set explicitly and recorded: on CPUs with AMX/AVX512-BF16
OpenVINO's default hint is bf16, so an "FP32 IR" would silently run in bf16 (measured: max abs diff 1.3e-3
against 2.6e-7 with the hint set to f32).
The hint is not stored inside the IR (OpenVINO 2026.4 does not apply `runtime_options` from
rt_info for this property; measured), so it travels in `runtime.json` beside the IR.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from convertctl.errors import ConvertctlError, UsageError, require
from convertctl.onnx_graph import Graph
from convertctl.targets.base import BuiltArtifact, Feeds, Runner, Target
from convertctl.targets.openvino.options import OpenVINOOptions, resolve_overflow_fix

# ONNX operator types -> the OpenVINO operations NNCF sees for them
_OV_TYPES = {"Conv": ["Convolution", "GroupConvolution"], "Gemm": ["MatMul"], "MatMul": ["MatMul"],
             "ConvTranspose": ["ConvolutionBackpropData", "GroupConvolutionBackpropData"]}
# ONNX ops with constant operands that OpenVINO's conversion folds into a preceding layer's weights or bias
# (Conv -> Mul -> Add, Conv -> BatchNormalization), dropping the layer's output tensor name and often its weight
_FOLDABLE = {"Add", "Sub", "Mul", "Div", "BatchNormalization"}
# What the conversion leaves between such a layer and what still carries an ONNX name: its bias/scale
_ELEMENTWISE = {"Add", "Subtract", "Multiply", "Divide"}
# Constant subgraphs between a weight initializer and its layer (decompression, layout)
_WEIGHT_PATH = {"Convert", "Multiply", "Subtract", "Reshape", "Transpose", "Unsqueeze", "Squeeze"}


class OVScope(NamedTuple):
    """ov_ignored_scope's answer."""

    names: list[str]  # OpenVINO operation names for NNCF's ignored scope
    types: list[str]  # OpenVINO operation types for it
    unmapped: list[str]  # not node names of the ONNX model at all: a recipe error
    lost: list[str]  # ONNX nodes whose operation was not found after conversion: they stay INT8
    mapped: dict[str, list[str]]  # ONNX node -> the OpenVINO operations it became
    notes: list[str]  # how ambiguous cases were resolved


class _OVGraph:
    """Lookups into a converted model: by output tensor name, by friendly name, constant-ness."""

    def __init__(self, model):
        self.by_tensor, self.by_name, self._const, self._order = {}, {}, {}, {}
        for op in model.get_ordered_ops():  # producers before consumers: constant-ness in one pass
            self._order[op.get_instance_id()] = len(self._order)
            self.by_name.setdefault(op.get_friendly_name(), op)
            for out in op.outputs():
                for name in out.get_names():
                    self.by_tensor.setdefault(name, out)
            kind = op.get_type_name()
            # a Constant, or decompression/layout/arithmetic on constants only (a weight path, a folded bias)
            self._const[op.get_instance_id()] = kind == "Constant" or (
                kind in _WEIGHT_PATH | _ELEMENTWISE and op.get_input_size() > 0
                and all(self._const.get(v.get_node().get_instance_id(), False) for v in op.input_values()))

    def op(self, name: str):
        """The operation an ONNX tensor or node name landed on, if it survived conversion."""
        out = self.by_tensor.get(name)
        return out.get_node() if out is not None else self.by_name.get(name)

    def is_const(self, op) -> bool:
        return self._const.get(op.get_instance_id(), False)

    def up_to_layer(self, op, types, hops: int):
        """From `op` back through bias/scale ops (exactly one non-constant input each) to the first operation
        of one of `types`; None when the path forks or ends elsewhere."""
        while op is not None and op.get_type_name() not in types:
            if hops <= 0 or op.get_type_name() not in _ELEMENTWISE:
                return None
            data = [v.get_node() for v in op.input_values() if not self.is_const(v.get_node())]
            op = data[0] if len(data) == 1 else None
            hops -= 1
        return op

    def weight_consumers(self, start, types, port: int) -> list:
        """The operations of `types` that take the constant `start` (through constant-only ops) at `port`."""
        found, frontier, seen = [], [start], set()
        for _ in range(6):  # Constant -> Convert -> Subtract -> Multiply -> Reshape -> layer at most
            nxt = []
            for op in frontier:
                for out in op.outputs():
                    for target in out.get_target_inputs():
                        user = target.get_node()
                        if user.get_instance_id() in seen:
                            continue
                        seen.add(user.get_instance_id())
                        if user.get_type_name() in types and target.get_index() == port:
                            found.append(user)
                        elif user.get_type_name() in _WEIGHT_PATH and self.is_const(user):
                            nxt.append(user)
            frontier = nxt
        # in graph order: a node's targets come as a set, whose order changes from run to run
        return sorted(found, key=lambda op: self._order.get(op.get_instance_id(), 0))


def ov_ignored_scope(model, onnx_path: Path, exclude_nodes, exclude_ops) -> OVScope:
    """Translate ONNX node names and op types (what the recipe and the per-layer report use) into the
    OpenVINO operation names and types NNCF matches.

    OpenVINO's conversion keeps some ONNX names and drops others, so a layer (Conv, ConvTranspose, Gemm,
    MatMul) is looked for, in this order, through: its output tensor name; its weight initializer (a Constant
    that keeps the initializer's name unless folded); the first name that survives on the chain of
    bias/scale/BatchNormalization ops after it (folded into it: PP-OCRv4's Conv -> Mul -> Add); its input
    tensor, when that feeds one such layer only. A weight several layers share picks the layer the other
    clues point to, else every OpenVINO layer using it (in `notes`). Other ONNX nodes map through their
    output tensor or node name only."""
    onnx = require("onnx", "onnx")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    consts = {t.name for t in graph.initializer}
    consts |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    index = Graph(graph)

    def consumers(tensor: str) -> list:
        return [user for user, _ in index.consumers(tensor)]

    nodes = {n.name: n for n in graph.node}
    ov = _OVGraph(model)

    def weight_port(node) -> int | None:
        ports = [i for i in (1, 0) if i < len(node.input) and node.input[i] in consts]
        return ports[0] if ports else None

    def downstream(node, types):
        """Through the ops after `node` that OpenVINO folds into it, to the first one whose name survived."""
        cur = node
        for steps in range(1, 5):
            users = consumers(cur.output[0]) if cur.output else []
            if len(users) != 1 or users[0].op_type not in _FOLDABLE:
                return None
            nxt = users[0]
            if sum(t == cur.output[0] for t in nxt.input) != 1 or any(
                    t not in consts for t in nxt.input if t != cur.output[0]):
                return None  # another activation joins: not a bias/scale of this layer
            cur = nxt
            anchor = next((ov.op(t) for t in cur.output if ov.op(t) is not None), None) or ov.by_name.get(cur.name)
            if anchor is not None:
                return ov.up_to_layer(anchor, types, hops=steps + 2)
        return None

    def upstream(node, types, port):
        data = next((node.input[i] for i in (0, 1) if i < len(node.input) and i != port), None)
        out = ov.by_tensor.get(data) if data else None
        if out is None:
            return []
        return [t.get_node() for t in out.get_target_inputs()
                if t.get_node().get_type_name() in types and t.get_index() != port]

    mapped, unmapped, lost, notes = {}, [], [], []
    for name in exclude_nodes:
        node = nodes.get(name)
        if node is None:
            unmapped.append(name)
            continue
        types = _OV_TYPES.get(node.op_type)
        if types is None:  # not a layer with weights: only its own names can find it
            op = next((ov.op(t) for t in node.output if ov.op(t) is not None), None) or ov.by_name.get(name)
            found = [op] if op is not None else []
        else:
            found = []
            port = weight_port(node)
            # 1. the output tensor (an Add carries it when OpenVINO splits Conv+bias into Convolution -> Add)
            for t in node.output:
                op = ov.up_to_layer(ov.op(t), types, hops=2) if t in ov.by_tensor else None
                if op is not None:
                    found = [op]
                    break
            if not found:
                via_weight = []
                if port is not None:  # 2. the weight
                    start = ov.op(node.input[port])
                    if start is not None and ov.is_const(start):
                        via_weight = ov.weight_consumers(start, types, port)
                after = downstream(node, types)  # 3. the folded chain after the layer
                before = upstream(node, types, port if port is not None else 1)  # 4. the input tensor
                clue = after if after is not None else (before[0] if len(before) == 1 else None)
                if len(via_weight) > 1 and clue is not None:  # a shared weight: the other clues pick
                    pick = [o for o in via_weight if o.get_instance_id() == clue.get_instance_id()]
                    via_weight = pick or via_weight
                if len(via_weight) > 1:
                    users = sorted(n.name for n in consumers(node.input[port]) if n.name != name)
                    notes.append(f"{name}: its weight {node.input[port]} is shared with {', '.join(users)} and "
                                 f"nothing else tells their OpenVINO operations apart, so all {len(via_weight)} "
                                 f"stay float: {', '.join(o.get_friendly_name() for o in via_weight)}")
                found = via_weight or ([clue] if clue is not None else [])
        if found:
            mapped[name] = list(dict.fromkeys(o.get_friendly_name() for o in found))
        else:
            lost.append(name)
    names = list(dict.fromkeys(n for ops in mapped.values() for n in ops))
    types = sorted({t for op in exclude_ops for t in _OV_TYPES.get(op, [op])})
    return OVScope(names, types, unmapped, lost, mapped, notes)


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
    scope = ov_ignored_scope(model, onnx_path, ctx.exclude_nodes, ctx.exclude_ops)
    if scope.unmapped:
        raise UsageError(f"quantize.exclude_nodes names nodes the model does not have: {scope.unmapped}")
    names, types = scope.names, scope.types
    # A node the ONNX has but the converted model lost (folded away, renamed) is a limit of the mapping, not a
    # recipe error: the other targets honour the exclusion, so build, and say in the settings what stays INT8.
    recorded = {"names": names, "types": types, **({"from_onnx": scope.mapped} if scope.mapped else {}),
                **({"kept_int8": scope.lost,
                    "kept_int8_reason": "kept in INT8 on OpenVINO: could not find these ONNX nodes after conversion "
                                        f"(neither by name, weight, nor the ops folded into them): {scope.lost}"}
                   if scope.lost else {}),
                **({"notes": scope.notes} if scope.notes else {})}
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
                       "ignored_scope": recorded}


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


def _check(facts):
    """The judge of `convertctl check`: the installed OpenVINO's ONNX frontend and CPU plugin (check.py)."""
    from convertctl.targets.openvino.check import check_openvino

    return check_openvino(facts)


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
    title="OpenVINO",
    check=_check,
    # nncf: the INT8 of `int8_method: nncf`, quantized inside the build
    environment=("openvino", "nncf"),
    int8_quantizer="NNCF",
)
