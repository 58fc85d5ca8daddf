"""INT8 on the two most common ONNX shapes: a fixed batch of 1, and opset 11 or 12 (issue 13, item 2).

The models are exported here with torch's TorchScript exporter, as most published ONNX models were: a fixed
batch of 1 (the exporter's default without dynamic axes) at opset 11, 12 or 13. The net has a Split and a
ReduceSum, whose `split`/`axes` attributes become inputs at opset 13, so the version converter really rewrites
nodes. Calibration data is a seeded .npy; the bounds asserted follow from the method, not from one CPU:

- the opset upgrade must leave the model as it was: within ONNX Runtime's own FP32 reordering noise
  (max|Δ| <= 1e-5 on outputs of scale ~1, cosine >= 0.99999; measured: exactly 0);
- INT8 (8-bit activations, per-channel 8-bit weights, or 7 bits on CPUs without VNNI, `int8_form: auto`) keeps
  each quantized tensor near 40 dB SQNR (about 6 dB per bit); four quantized layers in a chain add their noise,
  so the output keeps SQNR >= 30 dB and cosine >= 0.999 (cos ~ 1 - 1/(2 SNR)) on any x86-64 CPU (measured on a
  VNNI CPU: 48.8 dB, cosine 0.999994; 7-bit weights cost about 6 dB).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convertctl.errors import UsageError
from convertctl.quantize.batches import fixed_batch, model_runs, run_session
from convertctl.quantize.layers import layer_errors
from convertctl.quantize.opset import QDQ_OPSET, default_opset, upgrade_for_qdq
from convertctl.quantize.preflight import half_precision
from convertctl.schema import Tolerance

from .conftest import load_manifest, run_cli

MIN_COSINE, MIN_SQNR_DB = 0.999, 30.0
FP32 = Tolerance(min_cosine=0.9999, max_abs=1e-2)
NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c2 = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = nn.functional.relu6(self.bn(self.c1(x)))
        a, b = torch.split(x, 4, dim=1)  # Split: `split` attribute before opset 13, an input from 13
        x = torch.cat([torch.relu(a), b * 0.5], 1)
        x = torch.relu(self.c2(torch.relu(self.dw(x))))
        x = x.sum((2, 3)) / 64.0  # ReduceSum: `axes` attribute before opset 13, an input from 13
        return self.fc(x)
"""


def _net():
    import torch

    scope: dict = {}
    exec(NET, scope)  # noqa: S102 - the model above, defined once for every export
    torch.manual_seed(0)
    net = scope["Net"]()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _export(net, path: Path, opset: int, batch: int = 1, dynamic: bool = False) -> Path:
    import torch

    torch.onnx.export(net, (torch.zeros(batch, 3, 16, 16),), str(path), opset_version=opset, dynamo=False,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}} if dynamic else None)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("int8_shapes")
    net = _net()
    found = {f"b1_op{op}": _export(net, folder / f"b1_op{op}.onnx", op) for op in (11, 12, 13)}
    found["b2_op13"] = _export(net, folder / "b2_op13.onnx", 13, batch=2)
    found["dyn_op13"] = _export(net, folder / "dyn_op13.onnx", 13, dynamic=True)
    rng = np.random.default_rng(0)
    data = rng.uniform(-1, 1, size=(48, 3, 16, 16)).astype(np.float32)
    np.save(folder / "calib.npy", data)
    found["calib"] = folder / "calib.npy"
    found["folder"] = folder
    return found


def _ort(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_models_have_the_shapes_under_test(models):
    for op in (11, 12, 13):
        model = onnx.load(str(models[f"b1_op{op}"]))
        assert default_opset(model) == op
        assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 16, 16]
    ops11 = {n.op_type for n in onnx.load(str(models["b1_op11"])).graph.node}
    assert {"Split", "ReduceSum", "Conv", "Gemm"} <= ops11


# ------------------------------------------------------------------ chunked runs (quantize/batches.py)

def test_fixed_batch_from_input_shapes():
    assert fixed_batch([[1, 3, 8, 8]]) == 1
    assert fixed_batch([[4, 3, 8, 8], ["batch", 6]]) == 4
    assert fixed_batch([["batch", 3], [None, 3]]) is None
    assert fixed_batch([[], ["n", 3]]) is None  # a scalar input is not batched
    assert fixed_batch([[-1, 3]]) is None  # an unnamed dynamic dim written as -1


@pytest.mark.parametrize("name", ["b1_op13", "b2_op13"])
def test_fixed_batch_model_runs_any_count_like_the_dynamic_one(models, name):
    """7 samples through a batch-1 model (7 runs) and a batch-2 model (4 runs, the last padded) give exactly
    the rows the dynamic-batch model gives for all 7 at once."""
    x = np.random.default_rng(1).uniform(-1, 1, size=(7, 3, 16, 16)).astype(np.float32)
    want = run_session(_ort(models["dyn_op13"]), {"x": x})[0]
    calls = []
    sess = _ort(models[name])
    real_run = sess.run

    class Counting:  # the session, with its runs counted
        def __getattr__(self, attr):
            return getattr(sess, attr)

        def run(self, names, feeds):
            calls.append(len(feeds["x"]))
            return real_run(names, feeds)

    got = run_session(Counting(), {"x": x}, chunk=None)[0]
    batch = 1 if name == "b1_op13" else 2
    assert calls == [batch] * -(-7 // batch)  # every run exactly the model's batch
    assert got.shape == want.shape == (7, 10)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_model_runs_stack_and_pad_for_a_fixed_batch():
    samples = [{"x": np.full((1, 2), i, np.float32)} for i in range(5)]
    assert [(f["x"].shape[0], n) for f, n in model_runs(iter(samples), None)] == [(1, 1)] * 5
    runs = list(model_runs(iter(samples), 2))
    assert [(f["x"].shape[0], n) for f, n in runs] == [(2, 2), (2, 2), (2, 1)]
    assert runs[-1][0]["x"][:, 0].tolist() == [4.0, 4.0]  # the last sample, copied


def test_layer_errors_of_a_fixed_batch_model_match_the_dynamic_model(models, tmp_path):
    """The per-layer ranking feeds its samples stacked on axis 0: a batch-1 model gets them one at a time, and
    its rows are the dynamic model's rows."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    x = np.random.default_rng(2).uniform(-1, 1, size=(9, 3, 16, 16)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.items, None)

    rows = {}
    for name in ("b1_op13", "dyn_op13"):
        qdq = tmp_path / f"{name}.qdq.onnx"
        quantize_static(str(models[name]), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        rows[name] = {r["node"]: r for r in layer_errors(models[name], qdq, {"x": x}, chunk=None)}
    assert rows["b1_op13"].keys() == rows["dyn_op13"].keys() and len(rows["b1_op13"]) == 4  # 3 convs, the fc
    for node, row in rows["b1_op13"].items():
        assert row["sqnr_db"] == pytest.approx(rows["dyn_op13"][node]["sqnr_db"], abs=0.05)


# ------------------------------------------------------------------ the opset upgrade (quantize/opset.py)

@pytest.mark.parametrize("op", [11, 12])
def test_upgrade_is_verified_and_exact(models, tmp_path, op):
    x = np.random.default_rng(3).uniform(-1, 1, size=(5, 3, 16, 16)).astype(np.float32)
    up = upgrade_for_qdq(models[f"b1_op{op}"], tmp_path, {"x": x}, chunk=1, tolerance=FP32)
    assert up is not None and up.path == tmp_path / f"model.opset{QDQ_OPSET}.onnx"
    upgraded = onnx.load(str(up.path))
    assert default_opset(upgraded) == QDQ_OPSET
    onnx.checker.check_model(upgraded, full_check=True)
    split = next(n for n in upgraded.graph.node if n.op_type == "Split")
    assert len(split.input) == 2 and not any(a.name == "split" for a in split.attribute)  # really rewritten
    d = up.details
    assert (d["from_opset"], d["to_opset"], d["samples"], d["passed"]) == (op, 13, 5, True)
    assert d["max_abs"] <= 1e-5 and d["cosine"] >= 0.99999
    assert up.comparison.passed is True
    assert f"opset {op} -> 13" in up.finding


def test_upgrade_keeps_external_weights_beside_the_upgraded_model(models, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(onnx.load(str(models["b1_op11"])), str(src / "m.onnx"), save_as_external_data=True,
                    location="m.onnx.data", size_threshold=0)
    x = np.random.default_rng(6).uniform(-1, 1, size=(3, 3, 16, 16)).astype(np.float32)
    up = upgrade_for_qdq(src / "m.onnx", tmp_path / "q", {"x": x}, chunk=1, tolerance=FP32)
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["model.opset13.onnx", "model.opset13.onnx.data"]
    assert up.details["max_abs"] <= 1e-5


def test_no_upgrade_at_opset_13(models, tmp_path):
    x = np.zeros((2, 3, 16, 16), np.float32)
    assert upgrade_for_qdq(models["b1_op13"], tmp_path, {"x": x}, chunk=1, tolerance=FP32) is None
    assert not list(tmp_path.iterdir())


def test_converter_failure_is_a_usage_error(models, tmp_path, monkeypatch):
    from onnx import version_converter

    def fails(model, target):
        raise RuntimeError("No Adapter For Split\nmore lines")

    monkeypatch.setattr(version_converter, "convert_version", fails)
    with pytest.raises(UsageError) as err:
        upgrade_for_qdq(models["b1_op11"], tmp_path, {"x": np.zeros((1, 3, 16, 16), np.float32)}, 1, FP32)
    assert "opset 11" in err.value.message and "No Adapter For Split" in err.value.message
    assert "\n" not in err.value.message and "opset 13 or newer" in err.value.hint


def test_upgrade_that_changes_the_outputs_is_refused(models, tmp_path, monkeypatch):
    from onnx import version_converter

    real = version_converter.convert_version

    def drifts(model, target):  # a converter bug: the fc weights come out scaled
        out = real(model, target)
        for init in out.graph.initializer:
            if init.name == "fc.weight":
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
        return out

    monkeypatch.setattr(version_converter, "convert_version", drifts)
    x = np.random.default_rng(4).uniform(-1, 1, size=(4, 3, 16, 16)).astype(np.float32)
    with pytest.raises(UsageError) as err:
        upgrade_for_qdq(models["b1_op11"], tmp_path, {"x": x}, 1, FP32)
    assert "opset 11" in err.value.message and "beyond the FP32 tolerance" in err.value.message
    assert "opset 13 or newer" in err.value.hint


# ------------------------------------------------------------------ the CLI, end to end

def _quantize(models, name: str, out: Path, *targets: str):
    args = ["quantize", models[name], "--int8", "--calib", models["calib"], "--num-samples", "36", "-o", out]
    for t in targets:
        args += ["-t", t]
    return run_cli(*args, cwd=models["folder"])


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory) -> dict:
    """One `quantize --int8` per opset, each of a fixed-batch-1 model; opset 11 also to OpenVINO and TensorRT."""
    done = {}
    with pytest.MonkeyPatch.context() as mp:  # the calibration table cache: this test's own
        mp.setenv("CONVERTCTL_CACHE", str(tmp_path_factory.mktemp("calib_cache")))
        for op in (11, 12, 13):
            out = models["folder"] / f"q_op{op}"
            targets = ("onnxruntime", "openvino", "tensorrt") if op == 11 else ("onnxruntime",)
            res = _quantize(models, f"b1_op{op}", out, *targets)
            assert res.code == 0, res.stderr
            done[op] = out
    return done


def _stage(manifest: dict, name: str) -> dict:
    return next(s for s in manifest["stages"] if s["name"] == name)


def _artifact(manifest: dict, ident: str) -> dict:
    return next(a for a in manifest["artifacts"] if a["id"] == ident)


@pytest.mark.parametrize("op", [11, 12, 13])
def test_quantize_fixed_batch_model_end_to_end(runs, op):
    out = runs[op]
    manifest = load_manifest(out)
    stage = _stage(manifest, "quantize")
    int8 = _artifact(manifest, "onnxruntime_int8")
    assert int8["status"] == "ok"
    metrics = next(iter(int8["verification"][0]["outputs"].values()))
    assert metrics["cosine"] >= MIN_COSINE and metrics["sqnr_db"] >= MIN_SQNR_DB
    # every batching stage ran on the held-out samples, one at a time
    held_out = manifest["samples"]["shapes"]["x"][0]
    assert held_out >= 8
    layers = json.loads((out / "quantize" / "layer_errors.json").read_text())
    assert len(layers) == 4 and all(r["sqnr_db"] > 20 for r in layers)
    sensitivity = json.loads((out / "quantize" / "sensitivity.json").read_text())
    assert len(sensitivity) == 4 and {r["samples"] for r in sensitivity} == {min(8, held_out)}
    histograms = json.loads((out / "quantize" / "histograms.json").read_text())
    assert histograms["samples"] == held_out and histograms["layers"]
    assert all(h["values"] > 0 for h in histograms["layers"])
    assert stage["details"]["calibration"]["num_samples"] == 36
    qdq = onnx.load(str(out / "quantize" / "model.qdq_u8s8.onnx"))
    assert default_opset(qdq) >= 13
    assert any(n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)
               for n in qdq.graph.node)  # per-channel weights
    fp32 = onnx.load(str(out / "targets" / "onnxruntime_fp32" / "model.onnx"))
    assert default_opset(fp32) == op  # FP32 artifacts keep the model as given
    if op == 13:
        assert "opset_upgrade" not in stage["details"]
        assert not (out / "quantize" / "model.opset13.onnx").exists()
        return
    up = stage["details"]["opset_upgrade"]
    assert (up["from_opset"], up["to_opset"], up["samples"], up["passed"]) == (op, 13, held_out, True)
    assert up["max_abs"] <= 1e-5 and up["cosine"] >= 0.99999
    assert stage["details"]["qdq_u8s8"]["opset"] == 13
    assert any(f.startswith(f"opset {op} -> 13") for f in stage["findings"])
    assert any(c["against"].startswith(f"opset {op} onnx") and c["passed"] for c in stage["verification"])
    assert "quantize/model.opset13.onnx" in {f["path"] for f in stage["outputs"]}


def test_opset11_fixed_batch_to_openvino_and_tensorrt(runs):
    manifest = load_manifest(runs[11])
    ov = _artifact(manifest, "openvino_int8")  # NNCF, from the opset 11 model as given
    assert ov["status"] == "ok"  # its int8 gate (cosine >= 0.99) held; NNCF's accuracy is not this test's subject
    assert next(iter(ov["verification"][0]["outputs"].values()))["cosine"] >= 0.99
    trt = _artifact(manifest, "tensorrt_int8")  # no TensorRT here: a kit, from the upgraded Q/DQ model
    assert trt["built_from"] == "qdq_s8"
    qdq_s8 = onnx.load(str(runs[11] / "quantize" / "model.qdq_s8.onnx"))
    assert default_opset(qdq_s8) == 13
    assert _stage(manifest, "quantize")["details"]["qdq_s8"]["tensorrt_rules"]["ok"] is True
    if trt["status"] == "skipped":
        kit = onnx.load(str(runs[11] / "targets" / "tensorrt_int8" / "model.onnx"))
        assert default_opset(kit) == 13


# ------------------------------------------------------------------ FP16 and mixed-precision models

def _half_model(path: Path, io_type: int) -> Path:
    """A Conv in FP16: inputs/outputs FP16 (an FP16 export), or FP32 with Casts around it (mixed precision)."""
    w = numpy_helper.from_array(np.random.default_rng(5).normal(size=(4, 3, 3, 3)).astype(np.float16), "w")
    nodes, inner_in, inner_out = [], "x", "y"
    if io_type == TensorProto.FLOAT:
        inner_in, inner_out = "x16", "y16"
        nodes.append(helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16, name="to16"))
    nodes.append(helper.make_node("Conv", [inner_in, "w"], [inner_out], pads=[1, 1, 1, 1], name="conv"))
    if io_type == TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT, name="to32"))
    graph = helper.make_graph(nodes, "half", [helper.make_tensor_value_info("x", io_type, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", io_type, [1, 4, 16, 16])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def test_half_precision_is_described():
    assert half_precision(onnx.ModelProto()) == ""
    bf16 = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])], "g", [],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2])],
        [helper.make_tensor("w", TensorProto.BFLOAT16, [2], [1.0, 2.0])]))
    assert half_precision(bf16) == "output 'y' BF16, 1 BF16 weight"


@pytest.mark.parametrize("kind", ["fp16", "mixed"])
def test_int8_of_a_half_precision_model_is_refused(models, tmp_path, kind):
    path = _half_model(tmp_path / f"{kind}.onnx", TensorProto.FLOAT16 if kind == "fp16" else TensorProto.FLOAT)
    res = run_cli("quantize", path, "--int8", "--calib", models["calib"], "-t", "onnxruntime", "-o", tmp_path / "q")
    assert res.code == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[0].startswith(f"error: {kind}.onnx computes in reduced precision (")
    assert "INT8 quantization needs an FP32 model" in lines[0]
    assert ("input 'x' FP16" in lines[0]) == (kind == "fp16") and "1 FP16 weight" in lines[0]
    assert ("1 Cast to FP16" in lines[0]) == (kind == "mixed")
    assert lines[1].startswith("hint: quantize the model's FP32 export")
    assert len(lines) == 2 and "Traceback" not in res.stderr
    assert not (tmp_path / "q").exists()
