"""The TensorRT Q/DQ validator, on small ONNX models built here and on real ONNX Runtime QDQ output.

Each rule test starts from one valid baseline (Q/DQ'd Conv input, per-channel INT8 weights), breaks exactly
one rule, and checks that only that rule speaks, with the expected severity and node.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convertctl.errors import SourceModelError
from convertctl.targets.tensorrt.qdq_validator import (
    ERROR,
    MODEL,
    WARNING,
    QDQReport,
    format_findings,
    validate_qdq,
)

RNG = np.random.default_rng(0)
K, C = 4, 3  # Conv output and input channels


def _init(name, value, dtype):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def baseline(opset: int = 17) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(w: int8 initializer -> DQ per-channel axis 0, float bias) -> y."""
    inits = [
        _init("x_scale", 0.02, np.float32),
        _init("x_zp", 0, np.int8),
        _init("w_q", RNG.integers(-127, 128, size=(K, C, 3, 3)), np.int8),
        _init("w_scale", RNG.uniform(0.01, 0.02, size=K), np.float32),
        _init("w_zp", np.zeros(K), np.int8),
        _init("b", RNG.standard_normal(K), np.float32),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_int8"], name="x_q"),
        helper.make_node("DequantizeLinear", ["x_int8", "x_scale", "x_zp"], ["x_deq"], name="x_dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_deq"], name="w_dq", axis=0),
        helper.make_node("Conv", ["x_deq", "w_deq", "b"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "baseline",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, K, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def set_init(model, name, value, dtype) -> None:
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(_init(name, value, dtype))
            return
    model.graph.initializer.append(_init(name, value, dtype))


def node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def set_attr(model, node_name, **attrs) -> None:
    n = node(model, node_name)
    keep = [a for a in n.attribute if a.name not in attrs]
    del n.attribute[:]
    n.attribute.extend(keep + [helper.make_attribute(k, v) for k, v in attrs.items()])


def only(report: QDQReport, rule: str, severity: str, nodes: set[str]) -> None:
    """`rule` is reported with `severity` on exactly `nodes`, and no other rule speaks."""
    text = "\n".join(format_findings(report))
    assert {f.rule for f in report.findings} == {rule}, text
    assert {f.severity for f in report.findings} == {severity}, text
    assert {f.node for f in report.findings} == nodes, text
    assert report.ok is (severity == WARNING)
    assert all(f.message for f in report.findings)


# -- baseline ------------------------------------------------------------------------------------------------


def test_baseline_is_valid_and_silent():
    model = baseline()
    onnx.checker.check_model(model, full_check=True)
    report = validate_qdq(model)
    assert report.findings == [] and report.ok
    assert report.counts.q_nodes == 1 and report.counts.dq_nodes == 2
    assert report.counts.per_channel_weights == 1 and report.counts.per_tensor_weights == 0
    assert report.counts.per_tensor_activations == 1
    assert format_findings(report) == []
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is True and d["errors"] == 0 and d["findings"] == [] and d["opset"] == 17


def test_baseline_runs_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(baseline().SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": RNG.standard_normal((1, C, 8, 8)).astype(np.float32)})
    assert y.shape == (1, K, 8, 8)


def test_path_input_and_missing_file(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(baseline(), str(path))
    assert validate_qdq(path).ok and validate_qdq(str(path)).findings == []
    with pytest.raises(SourceModelError):
        validate_qdq(tmp_path / "missing.onnx")


def test_module_import_does_not_import_onnx():
    code = "import sys, convertctl.targets.tensorrt.qdq_validator; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- QDQ001 symmetric INT8, no UINT8 ------------------------------------------------------------------------


def test_qdq001_asymmetric_int8_zero_point():
    model = baseline()
    set_init(model, "x_zp", 5, np.int8)
    report = validate_qdq(model)
    only(report, "QDQ001", ERROR, {"x_q", "x_dq"})
    assert "zero-point" in report.findings[0].message and "symmetric" in report.findings[0].message


def test_qdq001_asymmetric_per_channel_weight_zero_point():
    model = baseline()
    set_init(model, "w_zp", [0, 0, 3, 0], np.int8)
    only(validate_qdq(model), "QDQ001", ERROR, {"w_dq"})


@pytest.mark.parametrize("zp", [128, 0])
def test_qdq001_uint8_is_not_tensorrt_int8(zp):
    model = baseline()
    set_init(model, "x_zp", zp, np.uint8)
    report = validate_qdq(model)
    only(report, "QDQ001", ERROR, {"x_q", "x_dq"})
    assert "UINT8" in report.findings[0].message and "QInt8" in report.findings[0].message


def test_qdq001_missing_zero_point_is_implicit_uint8_warning():
    model = baseline()
    for name in ("x_q", "x_dq"):
        del node(model, name).input[2]
    only(validate_qdq(model), "QDQ001", WARNING, {"x_q"})  # reported once, at the Q


# -- QDQ002 scales and zero-points ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -0.02, float("nan"), float("inf")])
def test_qdq002_bad_activation_scale(bad):
    model = baseline()
    set_init(model, "x_scale", bad, np.float32)
    report = validate_qdq(model)
    only(report, "QDQ002", ERROR, {"x_q", "x_dq"})
    assert "x_scale" in report.findings[0].message


def test_qdq002_one_zero_weight_scale():
    model = baseline()
    set_init(model, "w_scale", [0.01, 0.0, 0.02, 0.01], np.float32)
    only(validate_qdq(model), "QDQ002", ERROR, {"w_dq"})


def test_qdq002_scale_computed_at_run_time():
    model = baseline()
    model.graph.input.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, []))
    model.graph.node.insert(0, helper.make_node("Abs", ["s"], ["s_abs"], name="scale_abs"))
    for name in ("x_q", "x_dq"):
        node(model, name).input[1] = "s_abs"
    report = validate_qdq(model)
    only(report, "QDQ002", ERROR, {"x_q", "x_dq"})
    assert "run time" in report.findings[0].message


def test_qdq002_zero_point_computed_at_run_time():
    model = baseline()
    model.graph.input.append(helper.make_tensor_value_info("zp", TensorProto.INT8, []))
    for name in ("x_q", "x_dq"):
        node(model, name).input[2] = "zp"
    only(validate_qdq(model), "QDQ002", ERROR, {"x_q", "x_dq"})


def test_qdq002_constant_node_scale_is_accepted():
    model = baseline()
    const = helper.make_node(
        "Constant", [], ["x_scale_c"], name="c", value=numpy_helper.from_array(np.float32(0.02))
    )
    model.graph.node.insert(0, const)
    for name in ("x_q", "x_dq"):
        node(model, name).input[1] = "x_scale_c"
    assert validate_qdq(model).findings == []


# -- QDQ003 weights per-channel on the output-channel axis ----------------------------------------------------


def test_qdq003_conv_weight_on_wrong_axis():
    model = baseline()
    set_init(model, "w_scale", [0.01] * C, np.float32)
    set_init(model, "w_zp", [0] * C, np.int8)
    set_attr(model, "w_dq", axis=1)
    report = validate_qdq(model)
    only(report, "QDQ003", ERROR, {"w_dq"})
    assert "axis 1" in report.findings[0].message and "axis 0" in report.findings[0].message


def test_qdq003_scale_count_differs_from_channels():
    model = baseline()
    set_init(model, "w_scale", [0.01, 0.02], np.float32)
    set_init(model, "w_zp", [0, 0], np.int8)
    report = validate_qdq(model)
    only(report, "QDQ003", ERROR, {"w_dq"})
    assert "2 per-channel scales" in report.findings[0].message


def test_qdq003_per_tensor_weight_is_a_warning():
    model = baseline()
    set_init(model, "w_scale", 0.01, np.float32)
    set_init(model, "w_zp", 0, np.int8)
    report = validate_qdq(model)
    only(report, "QDQ003", WARNING, {"w_dq"})
    assert report.counts.per_tensor_weights == 1 and report.counts.per_channel_weights == 0


def weighted_model(op: str, w_shape, axis: int, scales: int, **attrs) -> onnx.ModelProto:
    """x -> Q/DQ -> op(x, DQ(int8 weight, per-channel on `axis`)) -> y."""
    x_shape = [1, C, 4, 4] if op.startswith("Conv") else [2, C]
    inits = [
        _init("x_scale", 0.02, np.float32),
        _init("x_zp", 0, np.int8),
        _init("w_q", RNG.integers(-127, 128, size=w_shape), np.int8),
        _init("w_scale", RNG.uniform(0.01, 0.02, size=scales), np.float32),
        _init("w_zp", np.zeros(scales), np.int8),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_int8"], name="x_q"),
        helper.make_node("DequantizeLinear", ["x_int8", "x_scale", "x_zp"], ["x_deq"], name="x_dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_deq"], name="w_dq", axis=axis),
        helper.make_node(op, ["x_deq", "w_deq"], ["y"], name="op", **attrs),
    ]
    graph = helper.make_graph(
        nodes,
        op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(len(x_shape))])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


# (op, weight shape, output-channel axis, the other axis, attributes); K=5 output channels, C=3 inputs
LAYOUTS = [
    ("Conv", (5, C, 3, 3), 0, 1, {}),
    ("ConvTranspose", (C, 5, 3, 3), 1, 0, {}),
    ("Gemm", (5, C), 0, 1, {"transB": 1}),
    ("Gemm", (C, 5), 1, 0, {"transB": 0}),
    ("Gemm", (C, 5), 1, 0, {}),
    ("MatMul", (C, 5), 1, 0, {}),
]


@pytest.mark.parametrize("op,shape,good,bad,attrs", LAYOUTS)
def test_qdq003_output_channel_axis_per_op(op, shape, good, bad, attrs):
    ok = weighted_model(op, shape, good, shape[good], **attrs)
    onnx.checker.check_model(ok)
    assert validate_qdq(ok).findings == [], format_findings(validate_qdq(ok))
    wrong = weighted_model(op, shape, bad, shape[bad], **attrs)
    only(validate_qdq(wrong), "QDQ003", ERROR, {"w_dq"})
    negative = weighted_model(op, shape, good - len(shape), shape[good], **attrs)  # e.g. axis=-1 for MatMul
    assert validate_qdq(negative).findings == []


def test_qdq003_fake_quant_weight_q_dq_on_float_initializer():
    """pytorch-quantization style: float weight -> Q -> DQ -> Conv (TensorRT quantizes it at build time)."""
    model = baseline()
    set_init(model, "w_float", RNG.standard_normal((K, C, 3, 3)), np.float32)
    model.graph.node.insert(
        0,
        helper.make_node("QuantizeLinear", ["w_float", "w_scale", "w_zp"], ["w_q"], name="w_q_node", axis=0),
    )
    model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == "w_q"))
    report = validate_qdq(model)
    assert report.findings == [] and report.counts.per_channel_weights == 1
    set_attr(model, "w_q_node", axis=1)
    set_attr(model, "w_dq", axis=1)
    set_init(model, "w_scale", [0.01] * C, np.float32)
    set_init(model, "w_zp", [0] * C, np.int8)
    only(validate_qdq(model), "QDQ003", ERROR, {"w_dq"})


# -- QDQ004 activations per-tensor ----------------------------------------------------------------------------


def test_qdq004_per_channel_activation():
    model = baseline()
    set_init(model, "x_scale", [0.02] * C, np.float32)
    set_init(model, "x_zp", [0] * C, np.int8)
    set_attr(model, "x_q", axis=1)
    set_attr(model, "x_dq", axis=1)
    report = validate_qdq(model)
    only(report, "QDQ004", ERROR, {"x_q", "x_dq"})
    assert report.counts.per_tensor_activations == 0


# -- QDQ005 Q->DQ pairs ---------------------------------------------------------------------------------------


def test_qdq005_dangling_quantize():
    model = baseline()
    model.graph.node.append(
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["unused"], name="q2")
    )
    report = validate_qdq(model)
    only(report, "QDQ005", ERROR, {"q2"})
    assert "dangling" in report.findings[0].message


def test_qdq005_quantize_feeding_a_non_dq_op():
    model = baseline()
    model.graph.node.append(helper.make_node("Identity", ["x_int8"], ["peek"], name="peek"))
    model.graph.output.append(helper.make_tensor_value_info("peek", TensorProto.INT8, [1, C, 8, 8]))
    report = validate_qdq(model)
    only(report, "QDQ005", ERROR, {"x_q"})
    assert "Identity" in report.findings[0].message


def test_qdq005_quantized_model_output():
    model = baseline()
    model.graph.output.append(helper.make_tensor_value_info("x_int8", TensorProto.INT8, [1, C, 8, 8]))
    only(validate_qdq(model), "QDQ005", ERROR, {"x_q"})


def test_qdq005_dequantize_without_quantize_producer():
    model = baseline()
    model.graph.node.remove(node(model, "x_q"))
    del model.graph.input[:]
    model.graph.input.append(helper.make_tensor_value_info("x_int8", TensorProto.INT8, [1, C, 8, 8]))
    report = validate_qdq(model)
    only(report, "QDQ005", ERROR, {"x_dq"})
    assert "model input" in report.findings[0].message


def test_qdq005_dangling_dequantize():
    model = baseline()
    model.graph.node.append(
        helper.make_node("DequantizeLinear", ["x_int8", "x_scale", "x_zp"], ["z"], name="dq2")
    )
    only(validate_qdq(model), "QDQ005", ERROR, {"dq2"})


# -- QDQ006 same scale and zero-point within a pair -----------------------------------------------------------


def test_qdq006_pair_with_different_scales():
    model = baseline()
    set_init(model, "x_scale_other", 0.03, np.float32)
    node(model, "x_dq").input[1] = "x_scale_other"
    report = validate_qdq(model)
    only(report, "QDQ006", ERROR, {"x_dq"})
    assert "x_q" in report.findings[0].message


def test_qdq006_absent_and_zero_zero_point_are_the_same():
    model = baseline()
    set_init(model, "zeros", [0] * K, np.int8)
    model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == "w_q"))
    set_init(model, "w_float", RNG.standard_normal((K, C, 3, 3)), np.float32)
    model.graph.node.insert(
        0, helper.make_node("QuantizeLinear", ["w_float", "w_scale", "zeros"], ["w_q"], name="wq", axis=0)
    )
    assert validate_qdq(model).findings == []


# -- QDQ007 placement -------------------------------------------------------------------------------------------


def test_qdq007_partly_quantized_conv():
    model = baseline()
    model.graph.node.remove(node(model, "w_dq"))
    set_init(model, "w_deq", RNG.standard_normal((K, C, 3, 3)), np.float32)  # float weight, no DQ
    report = validate_qdq(model)
    only(report, "QDQ007", WARNING, {"conv"})
    assert "weight 'w_deq'" in report.findings[0].message


def residual(quantize_skip: bool, quantize_conv_out: bool) -> onnx.ModelProto:
    """baseline + Add(conv output, skip input r) -> out."""
    model = baseline()
    model.graph.input.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, K, 8, 8]))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, K, 8, 8]))
    set_init(model, "r_scale", 0.05, np.float32)
    set_init(model, "y_scale", 0.1, np.float32)
    add_in = ["y", "r"]
    nodes = []
    if quantize_conv_out:
        nodes += [
            helper.make_node("QuantizeLinear", ["y", "y_scale", "x_zp"], ["y_int8"], name="y_q"),
            helper.make_node("DequantizeLinear", ["y_int8", "y_scale", "x_zp"], ["y_deq"], name="y_dq"),
        ]
        add_in[0] = "y_deq"
    if quantize_skip:
        nodes += [
            helper.make_node("QuantizeLinear", ["r", "r_scale", "x_zp"], ["r_int8"], name="r_q"),
            helper.make_node("DequantizeLinear", ["r_int8", "r_scale", "x_zp"], ["r_deq"], name="r_dq"),
        ]
        add_in[1] = "r_deq"
    model.graph.node.extend(nodes + [helper.make_node("Add", add_in, ["out"], name="add")])
    onnx.checker.check_model(model)
    return model


def test_qdq007_residual_add_with_float_skip_input():
    report = validate_qdq(residual(quantize_skip=False, quantize_conv_out=False))
    only(report, "QDQ007", WARNING, {"add"})
    assert "residual input 'r'" in report.findings[0].message


def test_qdq007_residual_add_recommended_placement_is_silent():
    assert validate_qdq(residual(quantize_skip=True, quantize_conv_out=False)).findings == []


def test_qdq007_q_dq_between_conv_and_residual_add():
    report = validate_qdq(residual(quantize_skip=True, quantize_conv_out=True))
    only(report, "QDQ007", WARNING, {"add"})
    assert "'y_q'" in report.findings[0].message and "'conv'" in report.findings[0].message


# -- QDQ008 opset ------------------------------------------------------------------------------------------------


def test_qdq008_per_channel_needs_opset_13():
    report = validate_qdq(baseline(opset=11))
    only(report, "QDQ008", ERROR, {"w_dq"})
    assert "opset" in report.findings[0].message and report.opset == 11


# -- QDQ009 not a Q/DQ model ------------------------------------------------------------------------------------


def test_qdq009_float_model():
    model = baseline()
    keep = [n for n in model.graph.node if n.op_type == "Conv"]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    node(model, "conv").input[0] = "x"
    set_init(model, "w_deq", RNG.standard_normal((K, C, 3, 3)), np.float32)
    report = validate_qdq(model)
    only(report, "QDQ009", ERROR, {MODEL})
    assert report.counts.q_nodes == 0 and report.to_dict()["ok"] is False


# -- QDQ010 types TensorRT has no Q/DQ for ---------------------------------------------------------------------


def test_qdq010_int32_bias_dequantize():
    model = baseline()
    set_init(model, "b_q", RNG.integers(-1000, 1000, size=K), np.int32)
    set_init(model, "b_scale", np.full(K, 3e-4), np.float32)
    set_init(model, "b_zp", np.zeros(K), np.int32)
    model.graph.node.insert(
        0, helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zp"], ["b_deq"], name="b_dq", axis=0)
    )
    node(model, "conv").input[2] = "b_deq"
    report = validate_qdq(model)
    only(report, "QDQ010", ERROR, {"b_dq"})
    assert "QuantizeBias" in report.findings[0].message


# -- real ONNX Runtime QDQ output --------------------------------------------------------------------------------


def _ort_quantize(tmp_path, activation: str, **extra):
    quant = pytest.importorskip("onnxruntime.quantization")
    model = baseline()
    graph = model.graph
    keep = [n for n in graph.node if n.op_type == "Conv"]
    del graph.node[:]
    graph.node.extend(keep + [helper.make_node("Relu", ["y0"], ["y"], name="relu")])
    node(model, "conv").input[0] = "x"
    node(model, "conv").output[0] = "y0"
    for name in ("x_scale", "x_zp", "w_q", "w_scale", "w_zp"):
        graph.initializer.remove(next(i for i in graph.initializer if i.name == name))
    set_init(model, "w_deq", RNG.standard_normal((K, C, 3, 3)), np.float32)
    src, dst = tmp_path / "float.onnx", tmp_path / f"qdq_{activation}.onnx"
    onnx.save(model, str(src))
    assert validate_qdq(src).findings[0].rule == "QDQ009"

    class Reader(quant.CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.batches = iter(
                [{"x": rng.standard_normal((1, C, 8, 8)).astype(np.float32)} for _ in range(8)]
            )

        def get_next(self):
            return next(self.batches, None)

    quant.quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=quant.QuantFormat.QDQ,
        per_channel=True,
        activation_type=getattr(quant.QuantType, activation),
        weight_type=quant.QuantType.QInt8,
        extra_options=extra,
    )
    return dst


def test_onnxruntime_symmetric_int8_qdq_is_valid(tmp_path):
    path = _ort_quantize(
        tmp_path, "QInt8", ActivationSymmetric=True, WeightSymmetric=True, QuantizeBias=False
    )
    report = validate_qdq(path)
    assert report.ok, format_findings(report)
    assert report.errors == []
    assert report.counts.per_channel_weights == 1 and report.counts.per_tensor_activations >= 1


def test_onnxruntime_default_quantized_bias_is_int32(tmp_path):
    """ONNX Runtime quantizes Conv biases to INT32 DequantizeLinear by default: TensorRT rejects that."""
    path = _ort_quantize(tmp_path, "QInt8", ActivationSymmetric=True, WeightSymmetric=True)
    report = validate_qdq(path)
    assert {f.rule for f in report.errors} == {"QDQ010"}, format_findings(report)
    assert all("bias" in f.message for f in report.errors)


def test_onnxruntime_asymmetric_uint8_activations_fail_qdq001(tmp_path):
    path = _ort_quantize(
        tmp_path, "QUInt8", ActivationSymmetric=False, WeightSymmetric=True, QuantizeBias=False
    )
    report = validate_qdq(path)
    assert not report.ok
    assert {f.rule for f in report.errors} == {"QDQ001"}, format_findings(report)
    assert any(f.node.endswith("QuantizeLinear") for f in report.errors)


def test_external_data_scales_are_read_weights_are_not_needed(tmp_path):
    path = tmp_path / "ext.onnx"
    model = baseline()
    set_init(model, "x_scale", -0.02, np.float32)  # an error that is only visible in the external data
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=0)
    only(validate_qdq(path), "QDQ002", ERROR, {"x_q", "x_dq"})
    # a ModelProto whose external data is not loaded: values unknown, so nothing is claimed about them
    bare = onnx.load(str(path), load_external_data=False)
    report = validate_qdq(bare)
    assert report.findings == [] and report.counts.per_channel_weights == 1


def test_qdq007_matmul_of_two_activations_with_one_quantized():
    model = weighted_model("MatMul", (C, 5), 1, 5)
    model.graph.input.append(helper.make_tensor_value_info("k", TensorProto.FLOAT, [C, 5]))
    model.graph.node.remove(node(model, "w_dq"))
    node(model, "op").input[1] = "k"
    report = validate_qdq(model)
    only(report, "QDQ007", WARNING, {"op"})
    assert "second input 'k'" in report.findings[0].message


def test_format_findings_one_line_each_errors_first():
    model = baseline()
    set_init(model, "w_scale", 0.01, np.float32)  # QDQ003 warning
    set_init(model, "w_zp", 0, np.int8)
    set_init(model, "x_zp", 7, np.int8)  # QDQ001 errors
    report = validate_qdq(model)
    lines = format_findings(report)
    assert len(lines) == len(report.findings) == 3
    assert all("\n" not in line for line in lines)
    assert lines[0].startswith("error") and lines[-1].startswith("warning")
    assert "QDQ003 w_dq:" in lines[-1]
    d = report.to_dict()
    assert d["errors"] == 2 and d["warnings"] == 1 and d["ok"] is False
