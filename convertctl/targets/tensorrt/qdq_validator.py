"""Check a Q/DQ (QuantizeLinear/DequantizeLinear) ONNX model against TensorRT's explicit-quantization rules.

Pure `onnx` + numpy, so it runs on machines without TensorRT (none here has it). `onnx` is imported inside
the functions that need it, keeping this module cheap to import.

Sources of the rules (see RULES for one line each):
  [EQ]  TensorRT Developer Guide, "Explicit Quantization" (sections "ONNX Support",
        "Q/DQ Layer-Placement Recommendations"):
        https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html
  [WQ]  TensorRT Developer Guide, "Working with Quantized Types" (symmetric scheme; INT8/INT4/FP8/FP4):
        https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/work-quantized-types.html
  [OPS] TensorRT operator reference, Quantize / Dequantize (scale and zero-point must be build-time
        constants; zero-point only zeros): https://docs.nvidia.com/deeplearning/tensorrt/operators/docs/Quantize.html
  [ONNX-TRT] onnx-tensorrt docs/operators.md (`x_zero_point`/`y_zero_point` must be 0; INT8, FP8, INT4) and
        its QuantizeLinear/DequantizeLinear importer (rejects UINT8, non-positive scales, non-zero zero-points,
        per-channel scale count != channel count).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convertctl.onnx_graph import Graph, node_label

ERROR = "error"
WARNING = "warning"
MODEL = "<model>"  # the node name used for findings about the whole model

RULES: dict[str, str] = {
    "QDQ001": "INT8/INT4 Q/DQ must be symmetric (zero-point 0); UINT8 Q/DQ is not a TensorRT type; a Q without "
    "zero-point is UINT8 in ONNX but INT8 in TensorRT (warning) [WQ][OPS][ONNX-TRT]",
    "QDQ002": "scales positive, finite, non-zero build-time constants; zero-points constants [OPS][ONNX-TRT]",
    "QDQ003": "weights quantized per-channel on the output-channel axis [EQ: ONNX Support; placement recs]",
    "QDQ004": "activations quantized per-tensor (scalar scale) [EQ: placement recs][ONNX-TRT]",
    "QDQ005": "Q/DQ come in Q->DQ pairs on activations; no dangling Q or DQ "
    "[EQ: TensorRT Processing of Q/DQ Networks - a Q/DQ pair on each input of a quantizable layer]",
    "QDQ006": "the Q and DQ of a pair use the same scale and zero-point (one fake-quantizer exports one pair; "
    "TensorRT's Q/DQ rewrites compare scales for equality) [EQ: ONNX Support; Q/DQ Limitations]",
    "QDQ007": "placement: quantize all inputs of weighted ops; quantize the residual input of skip-connection "
    "Adds, not the weighted op's output [EQ: Q/DQ Layer-Placement Recommendations]",
    "QDQ008": "per-channel Q/DQ (axis attribute) needs opset >= 13 [EQ: ONNX Support]",
    "QDQ009": "the model has no Q/DQ nodes: it is not an explicitly quantized (INT8) model [EQ]",
    "QDQ010": "quantized data type TensorRT Q/DQ does not support (e.g. INT32 bias, INT16) [WQ][ONNX-TRT]",
}

_Q, _DQ = "QuantizeLinear", "DequantizeLinear"
_QDQ_DOMAINS = ("", "ai.onnx", "com.microsoft")
_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}

# onnx.TensorProto.DataType values (fixed by the ONNX standard)
_FLOAT, _UINT8, _INT8, _INT32, _INT64 = 1, 2, 3, 6, 7
_FLOAT8E4M3FN, _INT4, _FLOAT4E2M1 = 17, 22, 23
_SYMMETRIC_INT = (_INT8, _INT4)  # TensorRT's integer quantized types: zero-point must be 0
_TRT_FLOAT_Q = (_FLOAT8E4M3FN, _FLOAT4E2M1)  # FP8 (E4M3) and FP4 (E2M1)


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # "error" | "warning"
    node: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class QDQCounts:
    q_nodes: int = 0
    dq_nodes: int = 0
    per_channel_weights: int = 0  # weight DQs feeding Conv/ConvTranspose/Gemm/MatMul, per-channel
    per_tensor_weights: int = 0  # the same, per-tensor (allowed, less accurate)
    per_tensor_activations: int = 0  # QuantizeLinear nodes on activations with a scalar scale


@dataclass
class QDQReport:
    findings: list[Finding] = field(default_factory=list)
    counts: QDQCounts = field(default_factory=QDQCounts)
    opset: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "opset": self.opset,
            "counts": asdict(self.counts),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
        }


def format_findings(report: QDQReport) -> list[str]:
    """One line per finding, errors first: `error   QDQ003 conv1_w_DQ: ...`."""
    order = sorted(report.findings, key=lambda f: (f.severity != ERROR, f.rule))
    return [f"{f.severity:<7} {f.rule} {f.node}: {f.message}" for f in order]


def validate_qdq(model_or_path) -> QDQReport:
    """Check every QuantizeLinear/DequantizeLinear of an ONNX model (a ModelProto or a path)."""
    if isinstance(model_or_path, (str, Path)):
        from convertctl.model import load_proto

        path = Path(model_or_path)
        # weights stay on disk: only the small scale/zero-point tensors are read (Graph.value)
        return _Validator(load_proto(path, with_weights=False), base_dir=str(path.parent)).run()
    return _Validator(model_or_path).run()


# ----------------------------------------------------------------------------------------------------------


def _type_name(elem_type: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"onnx-type-{elem_type}"


def _summary(values: np.ndarray, limit: int = 4) -> str:
    flat = np.asarray(values).ravel()
    shown = ", ".join(str(v) for v in flat[:limit].tolist())
    return f"[{shown}{', ...' if flat.size > limit else ''}]" if flat.size != 1 else shown


class _QDQ:
    """One Q or DQ node and what can be known about it statically."""

    def __init__(self, v: _Validator, node):
        self.node = node
        self.name = node_label(node)
        self.is_q = node.op_type == _Q
        self.data = node.input[0]
        self.scale_name = node.input[1] if len(node.input) > 1 else ""
        self.zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else ""
        attrs = {a.name: a for a in node.attribute}
        self.has_axis = "axis" in attrs
        self.axis = attrs["axis"].i if self.has_axis else 1
        self.block_size = attrs["block_size"].i if "block_size" in attrs else 0
        self.output_dtype = attrs["output_dtype"].i if "output_dtype" in attrs else 0
        self.scale = v.graph.value(self.scale_name) if self.scale_name else None
        shape = None if self.scale is None else list(np.shape(self.scale))
        self.scale_shape = (
            shape if shape is not None or not self.scale_name else v.graph.constant_shape(self.scale_name)
        )
        self.zp = v.graph.value(self.zp_name) if self.zp_name else None
        # weight: the quantized tensor is a constant (pre-quantized weight DQ, or fake-quant Q on a float weight,
        # or the DQ after such a Q). Only its shape is read, never its (possibly large) values.
        self.data_is_const = v.graph.is_constant(self.data)
        src = v.graph.producer(self.data)
        self.source_q = src if (src is not None and src.op_type == _Q) else None
        self.weight_shape: list[int] | None = None
        if self.data_is_const:
            self.is_weight = True
            self.weight_shape = v.graph.constant_shape(self.data)
        elif self.source_q is not None and v.graph.is_constant(self.source_q.input[0]):
            self.is_weight = True
            self.weight_shape = v.graph.constant_shape(self.source_q.input[0])
        else:
            self.is_weight = False

    @property
    def scale_size(self) -> int | None:
        return None if self.scale_shape is None else int(np.prod(self.scale_shape, dtype=np.int64))

    @property
    def per_channel(self) -> bool:
        return bool(self.scale_size and self.scale_size > 1)

    @property
    def blocked(self) -> bool:
        return self.block_size > 0 or (
            self.scale_shape is not None and len(self.scale_shape) >= 2 and self.per_channel
        )

    def norm_axis(self) -> int | None:
        rank = None if self.weight_shape is None else len(self.weight_shape)
        if self.axis >= 0:
            return self.axis
        return None if rank is None else self.axis + rank


class _Validator:
    def __init__(self, model, base_dir: str = ""):
        self.model = model
        # base_dir: where external-data files of scales/zero-points live
        self.graph = Graph(model, base_dir=base_dir)
        self.nodes = self.graph.nodes
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.outputs = self.graph.output_names
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, str, str, str]] = set()
        self.counts = QDQCounts()

    def add(self, rule: str, severity: str, node: str, message: str) -> None:
        key = (rule, severity, node, message)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(Finding(rule, severity, node, message))

    def qtype(self, q: _QDQ, qdq: dict[int, _QDQ]) -> tuple[int | None, bool]:
        """(quantized element type, implicit?) - implicit: a Q without zero-point, which ONNX defines as UINT8."""
        if q.zp_name:
            return self.graph.elem_type(q.zp_name), False
        if q.is_q:
            if q.output_dtype:
                return q.output_dtype, False
            return _UINT8, True
        if q.source_q is not None and id(q.source_q) in qdq:
            return self.qtype(qdq[id(q.source_q)], qdq)
        return self.graph.elem_type(q.data), False

    # -- the checks -------------------------------------------------------------------------------------
    def run(self) -> QDQReport:
        qdq_nodes = [n for n in self.nodes if n.op_type in (_Q, _DQ) and n.domain in _QDQ_DOMAINS]
        if not qdq_nodes:
            self.add(
                "QDQ009",
                ERROR,
                MODEL,
                "the model has no QuantizeLinear/DequantizeLinear nodes, so TensorRT would build it in "
                "floating point: it is not an INT8 model. Quantize it to the QDQ format first "
                "(explicit quantization is TensorRT's only INT8 path)",
            )
            return self.report()
        items = [_QDQ(self, n) for n in qdq_nodes]
        by_node = {id(i.node): i for i in items}
        self.counts.q_nodes = sum(1 for i in items if i.is_q)
        self.counts.dq_nodes = sum(1 for i in items if not i.is_q)
        for item in items:
            self.check_opset(item)
            self.check_type(item, by_node)
            self.check_scale_zero_point(item)
            self.check_pairing(item, by_node)
            if item.is_weight:
                self.check_weight(item)
            else:
                self.check_activation(item)
        self.check_placement()
        return self.report()

    def report(self) -> QDQReport:
        return QDQReport(findings=list(self.findings), counts=self.counts, opset=self.opset)

    def check_opset(self, q: _QDQ) -> None:
        if self.opset and self.opset < 10:
            self.add(
                "QDQ008",
                ERROR,
                q.name,
                f"{q.node.op_type} needs opset >= 10; the model's opset is "
                f"{self.opset}. Re-export with opset 13 or newer",
            )
            return
        if self.opset and self.opset < 13 and (q.per_channel or q.has_axis):
            what = f"a per-channel scale of {q.scale_size} values" if q.per_channel else "an 'axis' attribute"
            self.add(
                "QDQ008",
                ERROR,
                q.name,
                f"has {what}, but per-axis QuantizeLinear/DequantizeLinear (the axis "
                f"attribute) only exists from opset 13; the model's opset is {self.opset}. "
                "Re-export with opset >= 13",
            )
        if self.opset and self.opset < 21 and q.blocked:
            self.add(
                "QDQ008",
                ERROR,
                q.name,
                f"uses blocked quantization, which needs opset >= 21; the model's opset is {self.opset}",
            )

    def check_type(self, q: _QDQ, by_node: dict[int, _QDQ]) -> None:
        t, implicit = self.qtype(q, by_node)
        if t is None:
            return
        if t == _UINT8:
            if implicit:
                if not q.is_q:
                    return  # reported at the QuantizeLinear that has no zero-point
                self.add(
                    "QDQ001",
                    WARNING,
                    q.name,
                    "QuantizeLinear has no zero-point, which ONNX defines as UINT8 "
                    "[0, 255]; TensorRT builds it as INT8 [-128, 127] instead, so TensorRT and ONNX Runtime "
                    "disagree on negative values. Give it an INT8 zero-point 0",
                )
            elif not (q.source_q is not None and not q.zp_name):  # a DQ inheriting it was reported at its Q
                zp = "" if q.zp is None else f" (zero-point {_summary(q.zp)})"
                self.add(
                    "QDQ001",
                    ERROR,
                    q.name,
                    f"{q.node.op_type} is UINT8{zp}: unsigned 8-bit quantization "
                    "(ONNX Runtime's asymmetric x86 default) is not TensorRT INT8, which is signed and "
                    "symmetric; TensorRT's Q/DQ types are INT8, INT4, FP8 and FP4. Re-quantize with "
                    "activation_type=QInt8, weight_type=QInt8 and ActivationSymmetric/WeightSymmetric=True",
                )
            return
        if t in _SYMMETRIC_INT:
            if q.zp is not None:
                try:
                    nonzero = bool(np.any(np.asarray(q.zp).astype(np.int64) != 0))
                except (TypeError, ValueError):
                    nonzero = False
                if nonzero:
                    self.add(
                        "QDQ001",
                        ERROR,
                        q.name,
                        f"{_type_name(t)} zero-point is {_summary(q.zp)}: TensorRT "
                        "only supports symmetric quantization, the zero-point must be 0 everywhere. Re-quantize "
                        "symmetrically (ONNX Runtime: ActivationSymmetric=True, WeightSymmetric=True)",
                    )
            return
        if t in _TRT_FLOAT_Q:
            return
        hint = "TensorRT Q/DQ supports INT8, INT4 (weights), FP8 E4M3 and FP4 E2M1 only"
        if t == _INT32 and not q.is_q:
            bias_of = [
                f"{c.op_type} '{node_label(c)}'"
                for c, idx in self.graph.consumers(q.node.output[0])
                if _BIAS_INPUT.get(c.op_type) == idx
            ]
            if bias_of:
                hint = (
                    f"this is the quantized bias of {', '.join(bias_of)}; TensorRT quantizes the bias itself "
                    "and rejects INT32 DequantizeLinear - keep the bias float (ONNX Runtime: "
                    "extra_options={'QuantizeBias': False})"
                )
        self.add("QDQ010", ERROR, q.name, f"{q.node.op_type} of type {_type_name(t)}: {hint}")

    def check_scale_zero_point(self, q: _QDQ) -> None:
        if not q.scale_name:
            self.add("QDQ002", ERROR, q.name, f"{q.node.op_type} has no scale input")
        elif q.scale is None:
            if not self.graph.is_constant(q.scale_name):
                self.add(
                    "QDQ002",
                    ERROR,
                    q.name,
                    f"scale '{q.scale_name}' is computed at run time; TensorRT needs "
                    "the scale as a build-time constant (an initializer or Constant node). Fold it "
                    "(e.g. onnxslim / constant folding) or store the calibrated value",
                )
        else:
            s = np.asarray(q.scale)
            if s.size == 0:
                self.add("QDQ002", ERROR, q.name, f"scale '{q.scale_name}' is empty")
            elif not np.issubdtype(s.dtype, np.floating) and s.dtype.kind != "V":
                self.add("QDQ002", ERROR, q.name, f"scale '{q.scale_name}' is {s.dtype}, not a float tensor")
            else:
                f = s.astype(np.float64)
                bad = []
                if not np.all(np.isfinite(f)):
                    bad.append("non-finite (NaN/inf)")
                if np.any(f == 0):
                    bad.append("zero")
                if np.any(f < 0):
                    bad.append("negative")
                if bad:
                    self.add(
                        "QDQ002",
                        ERROR,
                        q.name,
                        f"scale '{q.scale_name}' has {' and '.join(bad)} values "
                        f"({_summary(s)}); TensorRT requires every scale to be positive and finite - "
                        "recalibrate (a zero scale usually means the tensor was constant during calibration)",
                    )
        if q.zp_name and not self.graph.is_constant(q.zp_name):
            self.add(
                "QDQ002",
                ERROR,
                q.name,
                f"zero-point '{q.zp_name}' is computed at run time; TensorRT needs "
                "it as a build-time constant (all zeros)",
            )

    def check_pairing(self, q: _QDQ, by_node: dict[int, _QDQ]) -> None:
        out = q.node.output[0] if q.node.output else ""
        users = self.graph.consumers(out)
        if q.is_q:
            if out in self.outputs:
                self.add(
                    "QDQ005",
                    ERROR,
                    q.name,
                    f"the quantized tensor '{out}' is a model output; TensorRT "
                    "expects every QuantizeLinear to be followed by a DequantizeLinear",
                )
            elif not users:
                self.add(
                    "QDQ005",
                    ERROR,
                    q.name,
                    "dangling QuantizeLinear: its output is not used; remove it or "
                    "add the DequantizeLinear of the pair",
                )
            for user, _ in users:
                if user.op_type != _DQ:
                    self.add(
                        "QDQ005",
                        ERROR,
                        q.name,
                        f"QuantizeLinear feeds {user.op_type} '{node_label(user)}' "
                        "directly; TensorRT expects Q->DQ pairs - insert the DequantizeLinear",
                    )
                elif id(user) in by_node:
                    self.check_pair_params(q, by_node[id(user)])
            return
        if not q.data_is_const and q.source_q is None:
            src = self.graph.producer(q.data)
            origin = "a model input" if src is None else f"{src.op_type} '{node_label(src)}'"
            self.add(
                "QDQ005",
                ERROR,
                q.name,
                f"DequantizeLinear of activation '{q.data}' (from {origin}) has no "
                "QuantizeLinear producer; TensorRT needs a Q->DQ pair on every quantized activation",
            )
        if not users and out not in self.outputs:
            self.add("QDQ005", ERROR, q.name, "dangling DequantizeLinear: its output is not used")

    def check_pair_params(self, q: _QDQ, dq: _QDQ) -> None:
        diffs = []
        if q.scale is not None and dq.scale is not None and q.scale_name != dq.scale_name:
            a = np.asarray(q.scale).astype(np.float64).ravel()
            b = np.asarray(dq.scale).astype(np.float64).ravel()
            if a.size != b.size or not np.allclose(a, b, rtol=1e-6, atol=0.0, equal_nan=True):
                diffs.append(f"scale {_summary(b)} vs the Q's {_summary(a)}")
        zq = None if q.zp is None and q.zp_name else (np.zeros(1) if q.zp is None else q.zp)
        zd = None if dq.zp is None and dq.zp_name else (np.zeros(1) if dq.zp is None else dq.zp)
        if zq is not None and zd is not None and not (q.zp_name and q.zp_name == dq.zp_name):
            same = _same_values(zq, zd)
            if not same:
                diffs.append(f"zero-point {_summary(zd)} vs the Q's {_summary(zq)}")
        if q.per_channel and dq.per_channel and q.norm_axis() != dq.norm_axis():
            diffs.append(f"axis {dq.axis} vs the Q's {q.axis}")
        if diffs:
            self.add(
                "QDQ006",
                ERROR,
                dq.name,
                f"differs from its QuantizeLinear '{q.name}': {'; '.join(diffs)}. "
                "A Q/DQ pair must share one scale and zero-point (TensorRT fuses the pair and keeps one)",
            )

    def check_weight(self, q: _QDQ) -> None:
        if q.is_q:
            return  # a fake-quant Q on a float weight: checked through its DQ (and QDQ006 against it)
        for user, idx in self.graph.consumers(q.node.output[0]):
            if user.op_type not in _WEIGHTED or idx != 1:
                continue
            if q.weight_shape is None:
                continue
            dims = q.weight_shape
            expected, why = _expected_weight_axis(user, len(dims))
            if expected is None:
                continue
            label = f"{user.op_type} '{node_label(user)}'"
            if q.blocked:
                continue  # blocked (INT4/FP4 weight-only) quantization: no per-channel axis to check
            if not q.per_channel:
                if q.scale_size == 1:
                    self.counts.per_tensor_weights += 1
                    self.add(
                        "QDQ003",
                        WARNING,
                        q.name,
                        f"weight of {label} is quantized per-tensor; TensorRT "
                        f"recommends per-channel weights on the output-channel axis {expected} ({why}) for "
                        "accuracy (ONNX Runtime: per_channel=True)",
                    )
                continue
            self.counts.per_channel_weights += 1
            axis = q.norm_axis()
            if axis != expected:
                self.add(
                    "QDQ003",
                    ERROR,
                    q.name,
                    f"weight of {label} (shape {dims}) is quantized per-channel on "
                    f"axis {q.axis}, but TensorRT needs the output-channel axis {expected} ({why}). "
                    f"Re-quantize with axis={expected}",
                )
            elif q.scale_size != dims[expected]:
                self.add(
                    "QDQ003",
                    ERROR,
                    q.name,
                    f"weight of {label} (shape {dims}) has {q.scale_size} per-channel "
                    f"scales on axis {expected}, but that axis has {dims[expected]} channels; the scale "
                    "count must equal the number of output channels",
                )

    def check_activation(self, q: _QDQ) -> None:
        if q.scale_size is None:
            return
        if q.per_channel:
            self.add(
                "QDQ004",
                ERROR,
                q.name,
                f"activation '{q.data}' is quantized with {q.scale_size} scales "
                f"(per-channel, axis {q.axis}); TensorRT only supports per-tensor activation quantization "
                "- use one scalar scale",
            )
        elif q.is_q:
            self.counts.per_tensor_activations += 1

    def check_placement(self) -> None:
        def from_dq(tensor: str) -> bool:
            src = self.graph.producer(tensor)
            return src is not None and src.op_type == _DQ

        def quantized_weighted(node) -> bool:
            return node.op_type in _WEIGHTED and len(node.input) > 1 and from_dq(node.input[0])

        def sole_user(tensor: str, user) -> bool:
            users = self.graph.consumers(tensor)
            return tensor not in self.outputs and len(users) == 1 and users[0][0] is user

        for node in self.nodes:
            if node.op_type in _WEIGHTED and len(node.input) > 1:
                roles = [("input", node.input[0]), ("weight", node.input[1])]
                if (
                    node.op_type == "MatMul"
                    and not self.graph.is_constant(node.input[1])
                    and not from_dq(node.input[1])
                ):
                    roles[1] = ("second input", node.input[1])
                quant = [from_dq(t) for _, t in roles]
                if any(quant) and not all(quant):
                    done = [f"{r} '{t}'" for (r, t), qd in zip(roles, quant, strict=True) if qd]
                    missing = [f"{r} '{t}'" for (r, t), qd in zip(roles, quant, strict=True) if not qd]
                    self.add(
                        "QDQ007",
                        WARNING,
                        node_label(node),
                        f"{node.op_type} is only partly quantized: "
                        f"{', '.join(done)} has Q/DQ but {', '.join(missing)} does not, so TensorRT cannot "
                        "fuse it into an INT8 kernel; quantize all its inputs (data and weight) or none",
                    )
            if node.op_type != "Add" or len(node.input) != 2:
                continue
            ins = list(node.input)
            if any(self.graph.is_constant(t) for t in ins):
                continue
            srcs = [self.graph.producer(t) for t in ins]
            dq = [from_dq(t) for t in ins]
            fusable = [
                s is not None and quantized_weighted(s) and sole_user(t, node)
                for s, t in zip(srcs, ins, strict=True)
            ]
            if not any(dq) and any(fusable):
                i = fusable.index(True)
                other = ins[1 - i]
                self.add(
                    "QDQ007",
                    WARNING,
                    node_label(node),
                    f"residual Add: TensorRT can fuse it into the preceding "
                    f"{srcs[i].op_type} '{node_label(srcs[i])}', but its skip input '{other}' is not quantized, so "
                    "the fused output stays floating point; add a Q/DQ pair on the residual input "
                    f"'{other}' (TensorRT: 'quantize the residual input in skip-connections')",
                )
            elif all(dq):
                for t in ins:
                    dqn = self.graph.producer(t)
                    qn = self.graph.producer(dqn.input[0])
                    if qn is None or qn.op_type != _Q or not sole_user(dqn.input[0], dqn):
                        continue
                    w = self.graph.producer(qn.input[0])
                    if (
                        w is not None
                        and quantized_weighted(w)
                        and sole_user(qn.input[0], qn)
                        and sole_user(t, node)
                    ):
                        self.add(
                            "QDQ007",
                            WARNING,
                            node_label(node),
                            f"residual Add: the Q/DQ pair '{node_label(qn)}' -> "
                            f"'{node_label(dqn)}' between {w.op_type} '{node_label(w)}' and the Add keeps TensorRT from "
                            f"fusing the Add into the {w.op_type}; quantize only the residual (skip) input and "
                            f"leave the {w.op_type} output unquantized",
                        )
                        break


def _same_values(a, b) -> bool:
    """Equal values, a single value standing for a whole tensor of it (an absent zero-point is 0)."""
    try:
        x = np.asarray(a).astype(np.float64).ravel()
        y = np.asarray(b).astype(np.float64).ravel()
    except (TypeError, ValueError):
        return True  # exotic dtype: cannot tell, do not report
    if x.size == y.size:
        return bool(np.array_equal(x, y))
    if x.size == 1 or y.size == 1:
        return bool(np.all(x == y[0]) if y.size == 1 else np.all(y == x[0]))
    return False


def _expected_weight_axis(node, rank: int) -> tuple[int | None, str]:
    """The output-channel axis of a weight input (input 1) of a weighted op, with the layout it assumes."""
    if node.op_type == "Conv":
        return 0, "Conv weight [K, C, R, S]"
    if node.op_type == "ConvTranspose":
        return (1, "ConvTranspose weight [C, K, R, S]") if rank >= 2 else (None, "")
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return (0, "Gemm transB=1 weight [K, C]") if trans_b else (1, "Gemm transB=0 weight [C, K]")
    if node.op_type == "MatMul":
        return (rank - 1, "MatMul weight [..., C, K]") if rank >= 2 else (None, "")
    return None, ""
