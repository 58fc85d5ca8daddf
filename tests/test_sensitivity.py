"""The per-layer sensitivity ranking (convertctl/quantize/sensitivity.py) on the digits CNN.

One quick run (3 training epochs, one ONNX Runtime INT8 target, one conv excluded) gives the FP32 ONNX,
the emitted Q/DQ model and the stage's sensitivity.json; the rest runs the module directly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from convertctl.pipeline import load_manifest
from convertctl.quantize.layers import suggested_exclusions
from convertctl.quantize.sensitivity import (
    channel_axis,
    dequantize,
    emitted_weights,
    fake_quantize,
    quantized_layers,
    weight_sensitivity,
)
from convertctl.quantize.stage import SENSITIVITY_SAMPLES

from .conftest import run_cli
from .test_quantize_digits import digits_recipe, train_digits

EXCLUDED = "node_Conv_29"  # the second conv, kept in float by the recipe


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sensitivity")
    train_digits(folder, epochs=3)  # good enough, and quick
    recipe = digits_recipe(
        "digits_sensitivity", calibration={"num_samples": 200, "holdout": 0.2},
        # 8-bit weights whatever the CPU (auto picks 7 bits without VNNI): the test's numbers do not depend on it
        quantize={"exclude_nodes": [EXCLUDED]},
        targets=[{"runtime": "onnxruntime", "precision": "int8", "int8_form": "u8s8"}],
        verify={"tolerances": {"int8": {"min_cosine": 0.9}}})
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = run_cli("run", folder / "recipe.yaml", "--no-latency")
    assert res.code == 0, res.stderr
    return folder / "out"


def _weights(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _assert_same_as_emitted(fp32_path, qdq_path, expected_layers: set[str], reduce_range: bool = False):
    """fake_quantize of every quantized layer's FP32 weight == the Q/DQ model's DequantizeLinear of it."""
    import onnx

    fp32 = onnx.load(str(fp32_path))
    weights, nodes = _weights(fp32), {n.name: n for n in fp32.graph.node}
    emitted = emitted_weights(qdq_path)
    assert set(emitted) == expected_layers
    for name, (q, scale, axis) in emitted.items():
        w = weights[nodes[name].input[1]]
        assert axis == channel_axis(nodes[name], w.ndim), name  # the axis the quantizer chose
        assert q.dtype == np.int8 and scale.dtype == np.float32
        mine = fake_quantize(w, axis, reduce_range)
        theirs = dequantize(q, scale, axis)
        assert mine.dtype == theirs.dtype == np.float32
        np.testing.assert_array_equal(mine, theirs, err_msg=name)


@pytest.mark.slow
def test_fake_quantization_equals_the_emitted_weights(run, tmp_path):
    layers = {"node_Conv_28", "node_Conv_30", "node_linear"}  # Conv_29 excluded; Linear -> Gemm (transB=1)
    _assert_same_as_emitted(run / "model.onnx", run / "quantize" / "model.qdq_u8s8.onnx", layers)
    # the TensorRT form too (no INT32 bias, so no bias-driven scale adjustment), emitted from the run's table
    from convertctl.quantize.emit import emit_qdq
    from convertctl.quantize.table import CalibrationTable

    table = CalibrationTable(run / "quantize" / "calibration.json", {"method": "minmax"}, reused=True)
    emit_qdq(run / "model.onnx", table, tmp_path / "s8.onnx", "qdq_s8")
    _assert_same_as_emitted(run / "model.onnx", tmp_path / "s8.onnx", layers | {EXCLUDED})
    # and the 7-bit form convertctl emits for CPUs without VNNI (weights within ±64)
    emit_qdq(run / "model.onnx", table, tmp_path / "rr.onnx", "qdq_u8s8", exclude_nodes=[EXCLUDED], reduce_range=True)
    _assert_same_as_emitted(run / "model.onnx", tmp_path / "rr.onnx", layers, reduce_range=True)
    assert all(abs(int(q.min())) <= 64 and int(q.max()) <= 64 for q, _, _ in emitted_weights(tmp_path / "rr.onnx").values())


def test_channel_axes_of_convtranspose_gemm_and_matmul(tmp_path):
    """ConvTranspose quantizes along axis 1, Gemm along 0 with transB=1 and 1 without, MatMul along 1:
    checked against what ONNX Runtime's quantizer emits for a small synthetic model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from convertctl.quantize.emit import emit_qdq
    from convertctl.quantize.table import calibrate

    rng = np.random.default_rng(0)
    inits = {"ct_w": rng.normal(size=(4, 6, 3, 3)), "g_w": rng.normal(size=(24, 5)),
             "gt_w": rng.normal(size=(7, 5)), "mm_w": rng.normal(size=(7, 3))}
    inits["ct_w"][2, 1] *= 40  # an outlier in output channel 1 of the ConvTranspose: a wrong axis shows
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "ct_w"], ["ct"], name="ct"),
         helper.make_node("Flatten", ["ct"], ["flat"], name="flat"),
         helper.make_node("Slice", ["flat", "zero", "twenty_four", "one"], ["sl"], name="sl"),
         helper.make_node("Gemm", ["sl", "g_w"], ["g"], name="gemm"),
         helper.make_node("Gemm", ["g", "gt_w"], ["gt"], name="gemm_t", transB=1),
         helper.make_node("MatMul", ["gt", "mm_w"], ["y"], name="matmul")],
        "axes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()]
        + [numpy_helper.from_array(np.array([v], np.int64), k) for k, v in
           (("zero", 0), ("twenty_four", 24), ("one", 1))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    fp32 = tmp_path / "axes.onnx"
    onnx.save(model, str(fp32))
    samples = [{"x": rng.normal(size=(1, 4, 2, 2)).astype(np.float32)} for _ in range(8)]
    table = calibrate(fp32, lambda: iter(samples), "synthetic", "minmax", 99.99, tmp_path / "cache", "axes")
    emit_qdq(fp32, table, tmp_path / "axes.qdq.onnx", "qdq_s8")
    _assert_same_as_emitted(fp32, tmp_path / "axes.qdq.onnx", {"ct", "gemm", "gemm_t", "matmul"})
    axes = {name: axis for name, (_, _, axis) in emitted_weights(tmp_path / "axes.qdq.onnx").items()}
    assert axes == {"ct": 1, "gemm": 1, "gemm_t": 0, "matmul": 1}


@pytest.mark.slow
def test_stage_writes_a_sorted_ranking_without_excluded_layers(run):
    rows = json.loads((run / "quantize" / "sensitivity.json").read_text())
    qdq = run / "quantize" / "model.qdq_u8s8.onnx"
    assert EXCLUDED not in {r["node"] for r in rows}
    assert {r["node"] for r in rows} == set(quantized_layers(qdq)) == {"node_Conv_28", "node_Conv_30", "node_linear"}
    assert [r["sqnr_db"] for r in rows] == sorted(r["sqnr_db"] for r in rows)
    assert {r["source"] for r in rows} == {"body.0", "body.7", "body.12"}
    for r in rows:
        assert 0 < r["cosine"] <= 1 and r["samples"] == SENSITIVITY_SAMPLES and r["model_output"]
    stage = next(s for s in load_manifest(run / "manifest.json").stages if s.name == "quantize")
    layers = stage.details["layers"]
    assert layers["sensitivity"] == rows[:10] and layers["sensitivity_seconds"] >= 0
    assert layers["suggested_exclude_nodes"] == suggested_exclusions(rows)
    assert "quantize/sensitivity.json" in [f.path for f in stage.outputs]
    report = json.loads((run / "report.json").read_text())
    assert [r["node"] for r in report["layers"]["sensitivity"]] == [r["node"] for r in rows]
    assert report["layers"]["suggested_exclude_nodes"] == layers["suggested_exclude_nodes"]
    html = (run / "report.html").read_text()
    assert html.count('<rect class="sens"') == len(rows) and "only this layer's weights in INT8" in html


@pytest.mark.slow
def test_same_numbers_from_the_emitted_weights(run):
    """With `qdq` the layers and weights come from the Q/DQ model; here they equal the computed ones."""
    feeds = dict(np.load(run / "samples.npz"))
    qdq = run / "quantize" / "model.qdq_u8s8.onnx"
    a = weight_sensitivity(run / "model.onnx", feeds, max_samples=SENSITIVITY_SAMPLES, qdq=qdq)
    assert a == json.loads((run / "quantize" / "sensitivity.json").read_text())
    b = weight_sensitivity(run / "model.onnx", feeds, layers=quantized_layers(qdq), max_samples=SENSITIVITY_SAMPLES,
                           chunk=3)  # computed weights, run 3 samples at a time
    assert [r["node"] for r in b] == [r["node"] for r in a]
    assert [r["sqnr_db"] for r in b] == pytest.approx([r["sqnr_db"] for r in a], abs=1e-2)


@pytest.mark.slow
def test_an_outlier_channel_ranks_first(run, tmp_path):
    """An outlier weight 1000x its output channel's largest, on an input the model makes exactly zero: the FP32
    outputs do not move at all, but INT8 zeroes the channel's other weights, so its whole output is lost.

    The ranking is guaranteed whatever the CPU (no dB margin measured on one machine): the last conv's output
    channel K gets zero weights and bias, so feature K of the Gemm's input is exactly 0 after ReLU and the mean,
    and the Gemm's row R holds 1000 * max|row| there. Its symmetric per-channel scale becomes 1000 * max / 127,
    so every other weight of the row rounds to 0 (|w| / scale <= 0.127 < 0.5) and, with only the Gemm in INT8,
    logit R is its bias: the error is the row's whole input-dependent part (R: the row with the most of it, at
    least a tenth of the 10 rows' total: about 10 dB SQNR), where the per-channel INT8 weights of any other
    layer move the logits by a fraction of a percent (40-60 dB on this CNN). The SQNR itself is checked against
    its derivation from the quantization step, not against a value measured on one CPU."""
    import onnx
    import onnxruntime as ort

    n = 32
    feeds = {k: v[:n] for k, v in np.load(run / "samples.npz").items()}
    layers = quantized_layers(run / "quantize" / "model.qdq_u8s8.onnx")
    model = onnx.load(str(run / "model.onnx"))
    nodes = list(model.graph.node)
    gemm = next(nd for nd in nodes if nd.op_type == "Gemm")
    conv = [nd for nd in nodes if nd.op_type == "Conv"][-1]
    # the path from the last conv to the Gemm: nothing on it turns a zero channel into anything but 0
    assert [nd.op_type for nd in nodes[nodes.index(conv) + 1:nodes.index(gemm)]] == ["Relu", "ReduceMean", "Reshape"]
    assert gemm.name in layers and channel_axis(gemm, 2) == 0  # transB=1: the rows are the output channels
    inits = {i.name: i for i in model.graph.initializer}

    def set_weight(name: str, value: np.ndarray) -> None:
        inits[name].CopyFrom(onnx.numpy_helper.from_array(value.astype(np.float32), name))

    K = 0
    conv_w = onnx.numpy_helper.to_array(inits[conv.input[1]]).copy()
    conv_b = onnx.numpy_helper.to_array(inits[conv.input[2]]).copy()
    conv_w[K], conv_b[K] = 0, 0
    set_weight(conv.input[1], conv_w)
    set_weight(conv.input[2], conv_b)
    model.graph.output.append(onnx.ValueInfoProto(name=gemm.input[0]))
    x, y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [gemm.input[0], gemm.output[0]], feeds)
    del model.graph.output[-1]
    assert not x[:, K].any()  # exactly 0: the outlier cannot change the FP32 outputs
    w = onnx.numpy_helper.to_array(inits[gemm.input[1]]).astype(np.float64)
    R = int(np.argmax(((x @ w.T) ** 2).sum(axis=0)))  # the row carrying the most signal: the largest loss
    w[R, K] = 1000 * np.abs(w[R]).max()
    set_weight(gemm.input[1], w)
    w = w.astype(np.float32).astype(np.float64)  # exactly the weights the model now holds
    onnx.save(model, str(tmp_path / "outlier.onnx"))

    after = weight_sensitivity(tmp_path / "outlier.onnx", feeds, layers, max_samples=n)
    assert after[0]["node"] == gemm.name, [(r["node"], r["sqnr_db"]) for r in after]
    assert {r["node"] for r in after} == set(layers) and EXCLUDED not in set(layers)

    # what the quantization step gives, derived: row R keeps only the outlier, which meets a zero input
    fq = fake_quantize(w.astype(np.float32), 0).astype(np.float64)
    assert np.flatnonzero(fq[R]).tolist() == [K]
    error = x.astype(np.float64) @ (fq - w).T  # the logits' error with only the Gemm in INT8
    lost = x.astype(np.float64) @ w[R]  # logit R's input-dependent part (x[:, K] = 0: the outlier adds nothing)
    assert np.allclose(error[:, R], -lost)  # logit R lost everything but its bias
    signal = np.sum(y.astype(np.float64) ** 2)
    expected = 10 * np.log10(signal / np.sum(error ** 2))
    assert expected < 10 * np.log10(signal / np.sum(lost ** 2))  # the lost row alone bounds it
    row = after[0]
    # ONNX Runtime's float32 logits against this float64 derivation: far below 0.05 dB apart on any CPU
    assert row["sqnr_db"] == pytest.approx(expected, abs=0.05), (row, expected)
    assert row["weight_sqnr_db"] == pytest.approx(10 * np.log10(np.sum(w ** 2) / np.sum((fq - w) ** 2)), abs=1e-2)
    assert row["axis"] == 0 and row["samples"] == n and row["model_output"] == gemm.output[0]


def _shared_weight_model(path):
    """y = conv_c(conv_a(x) + conv_b(x)) where conv_a and conv_b read one weight `w_shared` (as tf2onnx writes
    Basic Pitch: one kernel for 32 Convs) and w_shared has one large outlier, which 8-bit per-channel steps lose."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shared = rng.normal(size=(4, 4, 3, 3)).astype(np.float32) * 0.1
    shared[:, :, 1, 1] += 20.0 * (rng.random(size=(4, 4)) > 0.5)  # per channel: an outlier coarsens every step
    inits = [numpy_helper.from_array(shared, "w_shared"),
             numpy_helper.from_array(rng.normal(size=(4, 4, 1, 1)).astype(np.float32), "w_c")]
    nodes = [helper.make_node("Conv", ["x", "w_shared"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w_shared"], ["b"], name="conv_b", pads=[2, 2, 2, 2], dilations=[2, 2]),
             helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("Conv", ["s", "w_c"], ["y"], name="conv_c")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_weight_shared_by_several_layers_is_measured_once_and_suggested_for_all_its_readers(tmp_path):
    model = _shared_weight_model(tmp_path / "shared.onnx")
    feeds = {"x": np.random.default_rng(1).normal(size=(2, 4, 8, 8)).astype(np.float32)}
    rows = weight_sensitivity(model, feeds, max_samples=2)
    by_node = {r["node"]: r for r in rows}
    assert set(by_node) == {"conv_a", "conv_b", "conv_c"}
    a, b, c = by_node["conv_a"], by_node["conv_b"], by_node["conv_c"]
    # one measurement of the weight as stored (once), reported for each reader
    assert a["weight"] == b["weight"] == "w_shared" and a["weight_shared_by"] == b["weight_shared_by"] == 2
    assert (a["sqnr_db"], a["cosine"], a["weight_sqnr_db"]) == (b["sqnr_db"], b["cosine"], b["weight_sqnr_db"])
    assert "weight_shared_by" not in c
    # suggestions: a shared weight is one decision, all its readers or none; it counts once for the median
    worst = [{**a, "sqnr_db": 10.0}, {**b, "sqnr_db": 10.0}, {**c, "sqnr_db": 40.0},
             {"node": "d", "weight": "w_d", "sqnr_db": 41.0, "cosine": 1.0},
             {"node": "e", "weight": "w_e", "sqnr_db": 42.0, "cosine": 1.0}]
    assert suggested_exclusions(worst) == ["conv_a", "conv_b"]
    # 32 readers of one weight no longer pull the median down onto themselves (Basic Pitch gave no advice)
    many = [{"node": f"conv_{i}", "weight": "w_shared", "sqnr_db": 12.0, "cosine": 0.99} for i in range(32)]
    others = [{"node": f"other_{i}", "weight": f"w_{i}", "sqnr_db": 40.0 + i, "cosine": 1.0} for i in range(5)]
    assert suggested_exclusions(many + others) == [f"conv_{i}" for i in range(32)]
    # a single weight that is its own median is still suggested when it alone costs more than 25 dB of SQNR
    assert suggested_exclusions(many) == [f"conv_{i}" for i in range(32)]
    assert suggested_exclusions([{**r, "sqnr_db": 30.0} for r in many]) == []
