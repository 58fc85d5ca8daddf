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
    _emitted_weights,
    channel_axis,
    dequantize,
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
        quantize={"exclude_nodes": [EXCLUDED]}, targets=[{"runtime": "onnxruntime", "precision": "int8"}],
        verify={"tolerances": {"int8": {"min_cosine": 0.9}}})
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = run_cli("run", folder / "recipe.yaml", "--no-latency")
    assert res.code == 0, res.stderr
    return folder / "out"


def _weights(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _assert_same_as_emitted(fp32_path, qdq_path, expected_layers: set[str]):
    """fake_quantize of every quantized layer's FP32 weight == the Q/DQ model's DequantizeLinear of it."""
    import onnx

    fp32 = onnx.load(str(fp32_path))
    weights, nodes = _weights(fp32), {n.name: n for n in fp32.graph.node}
    emitted = _emitted_weights(qdq_path)
    assert set(emitted) == expected_layers
    for name, (q, scale, axis) in emitted.items():
        w = weights[nodes[name].input[1]]
        assert axis == channel_axis(nodes[name], w.ndim), name  # the axis the quantizer chose
        assert q.dtype == np.int8 and scale.dtype == np.float32
        mine = fake_quantize(w, axis)
        theirs = dequantize(q, scale, axis)
        assert mine.dtype == theirs.dtype == np.float32
        np.testing.assert_array_equal(mine, theirs, err_msg=name)


def test_fake_quantization_equals_the_emitted_weights(run, tmp_path):
    layers = {"node_Conv_28", "node_Conv_30", "node_linear"}  # Conv_29 excluded; Linear -> Gemm (transB=1)
    _assert_same_as_emitted(run / "model.onnx", run / "quantize" / "model.qdq_u8s8.onnx", layers)
    # the TensorRT form too (no INT32 bias, so no bias-driven scale adjustment), emitted from the run's table
    from convertctl.quantize.emit import emit_qdq
    from convertctl.quantize.table import CalibrationTable

    table = CalibrationTable(run / "quantize" / "calibration.json", {"method": "minmax"}, reused=True)
    emit_qdq(run / "model.onnx", table, tmp_path / "s8.onnx", "qdq_s8")
    _assert_same_as_emitted(run / "model.onnx", tmp_path / "s8.onnx", layers | {EXCLUDED})


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
    axes = {name: axis for name, (_, _, axis) in _emitted_weights(tmp_path / "axes.qdq.onnx").items()}
    assert axes == {"ct": 1, "gemm": 1, "gemm_t": 0, "matmul": 1}


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


def test_an_outlier_channel_ranks_first(run, tmp_path):
    """One weight of one output channel of the least sensitive layer made 50x the channel's largest: the
    channel's scale grows 50x and its other weights round to 0 or +-1 (+-2). The outlier sits on the layer's
    quietest input channel, so the FP32 outputs barely change and the error shows."""
    import onnx
    import onnxruntime as ort

    feeds = dict(np.load(run / "samples.npz"))
    layers = quantized_layers(run / "quantize" / "model.qdq_u8s8.onnx")
    before = weight_sensitivity(run / "model.onnx", feeds, layers)
    target = before[-1]["node"]
    model = onnx.load(str(run / "model.onnx"))
    node = next(n for n in model.graph.node if n.name == target)
    model.graph.output.append(onnx.ValueInfoProto(name=node.input[0]))
    x = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [node.input[0]], feeds)[0]
    del model.graph.output[-1]
    level = np.abs(x).mean(axis=tuple(i for i in range(x.ndim) if i != 1))
    quiet = int(np.argmin(level))  # the input channel (Conv) or feature (Gemm) with the smallest values
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    w = onnx.numpy_helper.to_array(init).copy()
    channel = np.moveaxis(w, channel_axis(node, w.ndim), 0)[0]  # a view: output channel 0, [in, (kh, kw)]
    channel[(quiet, *(d // 2 for d in channel.shape[1:]))] = 50 * np.abs(channel).max()
    init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    onnx.save(model, str(tmp_path / "outlier.onnx"))
    after = weight_sensitivity(tmp_path / "outlier.onnx", feeds, layers)
    assert after[0]["node"] == target, [(r["node"], r["sqnr_db"]) for r in after]
    assert after[0]["sqnr_db"] < before[-1]["sqnr_db"] - 10  # measured: 55.6 -> 36.3 dB (the Gemm)
    assert after[0]["sqnr_db"] < after[1]["sqnr_db"] - 5
    assert after[0]["weight_sqnr_db"] < before[-1]["weight_sqnr_db"]
    assert EXCLUDED not in {r["node"] for r in after}
