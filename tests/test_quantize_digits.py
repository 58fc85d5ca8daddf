"""INT8 and FP16 on a real labelled task: a small CNN trained here on scikit-learn's digits.

The issue's bar: at most 0.5 points of top-1 accuracy lost in INT8 for every target that runs here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, load_manifest, run_cli

DIGITS = REPO / "calib_data" / "digits"
# The INT8 artifacts' gate. The issue's bar is top-1 accuracy; the cosine floor only catches a broken quantization
# (a wrong scale or axis gives far less), not the last digits of one CPU's INT8 kernels: without VNNI/AMX, ONNX
# Runtime's U8S8 kernel (VPMADDUBSW) saturates 16-bit sums, and measured 0.9899 for this CNN on an AVX2-only EPYC
# where the emitted Q/DQ arithmetic itself gives 0.9999 (checked CPU-independently by _exact_qdq_arithmetic).
INT8_GATE = {"min_cosine": 0.95, "max_accuracy_drop": 0.005}

MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn


    class DigitsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                nn.Flatten(), nn.Linear(64, 10),
            )

        def forward(self, x):
            return self.body(x)


    def build():
        return DigitsNet().eval()


    def train(path):
        import numpy as np
        from sklearn.datasets import load_digits

        torch.manual_seed(0)
        torch.set_num_threads(2)
        digits = load_digits()
        x = torch.tensor(digits.images[:, None] / 16.0, dtype=torch.float32)
        y = torch.tensor(digits.target)
        model = DigitsNet()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for epoch in range(25):
            perm = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                idx = perm[i:i + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
        model.eval()
        torch.save(model.state_dict(), path)
    """
)


_TRAINED: dict[int | None, Path] = {}  # epochs -> weights trained once in this pytest process


def train_digits(folder, epochs: int | None = None) -> None:
    """Write digits_model.py into `folder` and train it there into weights.pt (all 25 epochs by default). Training
    is seeded, so the weights of one number of epochs are trained once per session and copied after that (each
    target's tests use the same digits CNN; training took up to 140 s on 2 loaded cores)."""
    assert (DIGITS / ".complete").exists(), "run `make data` first"
    assert "range(25)" in MODEL
    (folder / "digits_model.py").write_text(MODEL if epochs is None else MODEL.replace("range(25)", f"range({epochs})"))
    if epochs in _TRAINED:
        shutil.copyfile(_TRAINED[epochs], Path(folder) / "weights.pt")
        return
    subprocess.run([sys.executable, "-c", "import digits_model; digits_model.train('weights.pt')"], cwd=folder,
                   check=True)
    kept = Path(tempfile.mkdtemp(prefix="convertctl-digits-")) / "weights.pt"
    shutil.copyfile(Path(folder) / "weights.pt", kept)
    _TRAINED[epochs] = kept


def digits_recipe(name: str, calibration: dict | None = None, **sections) -> dict:
    """A recipe for the trained digits CNN, calibrated on the digit images (`calibration` keys override)."""
    calib = {"data": str(DIGITS), "cache": "cache", "num_samples": 300, "holdout": 0.3, "seed": 0, "method": "minmax",
             "preprocess": {"resize": 8, "crop": 8, "scale": 1 / 255, "mean": [0.0], "std": [1.0]}}
    return {"name": name,
            "source": {"framework": "pytorch", "factory": "digits_model.py:build", "path": "weights.pt"},
            "inputs": [{"name": "image", "shape": ["batch", 1, 8, 8]}],
            "dims": {"batch": {"min": 1, "opt": 1, "max": 512}},
            "calibration": {**calib, **(calibration or {})}, "output": "out", **sections}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    train_digits(folder)
    recipe = {
        **digits_recipe("digits"),
        "targets": [
            {"runtime": "onnxruntime", "precision": "fp32"},
            {"runtime": "onnxruntime", "precision": "int8"},
            {"runtime": "onnxruntime", "precision": "fp16"},
            {"runtime": "openvino", "precision": "int8", "name": "openvino_int8_nncf"},
            {"runtime": "openvino", "precision": "int8", "int8_method": "qdq", "name": "openvino_int8_qdq"},
        ],
        "verify": {"tolerances": {"int8": INT8_GATE, "fp16": {"min_cosine": 0.9999, "max_accuracy_drop": 0.0}}},
        "output": "out",
    }
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = run_cli("run", folder / "recipe.yaml", "--json")
    return folder, res


def _exact_qdq_arithmetic(out, qdq):
    """(cosine, top-1 agreement) of a Q/DQ model against the FP32 ONNX on the held-out samples, with ONNX Runtime's
    graph optimizations off: DequantizeLinear -> float op -> QuantizeLinear, no INT8 kernel. That is the
    quantization convertctl emitted (calibration, scales, exclusions), the same on every CPU but for float32
    rounding; what a CPU's INT8 kernels then make of it is the runtime's (INT8_GATE)."""
    import numpy as np
    import onnxruntime as ort

    feeds = dict(np.load(out / "samples.npz"))

    def run(path, level):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    ref = run(out / "model.onnx", ort.GraphOptimizationLevel.ORT_ENABLE_ALL).astype(np.float64)
    act = run(qdq, ort.GraphOptimizationLevel.ORT_DISABLE_ALL).astype(np.float64)
    cosine = float((ref * act).sum() / (np.linalg.norm(ref) * np.linalg.norm(act)))
    return cosine, float(np.mean(ref.argmax(axis=1) == act.argmax(axis=1)))


@pytest.mark.slow
def test_run_passes_every_gate(digits_run):
    folder, res = digits_run
    assert res.code == 0, res.stderr
    m = res.json()
    assert m["status"] == "ok"
    assert "held-out" in m["samples"]["description"] and m["samples"]["shapes"]["image"][0] >= 500


@pytest.mark.slow
def test_int8_loses_at_most_half_a_point(digits_run):
    folder, _ = digits_run
    arts = {a["id"]: a for a in load_manifest(folder / "out")["artifacts"]}
    fp32 = arts["onnxruntime_fp32"]["accuracy"]
    assert fp32["reference_top1"] > 0.95  # the trained model is really good: a meaningful bar
    for name in ("onnxruntime_int8", "openvino_int8_nncf", "openvino_int8_qdq"):
        acc = arts[name]["accuracy"]
        assert acc["samples"] >= 500
        assert acc["top1_drop"] <= 0.005, (name, acc)
        assert arts[name]["status"] == "ok"
    assert arts["onnxruntime_int8"]["built_from"] == "qdq_u8s8"
    assert arts["openvino_int8_qdq"]["built_from"] == "qdq_s8"
    assert arts["openvino_int8_nncf"]["settings"]["weights"] == "int8 (nncf)"
    assert arts["onnxruntime_fp16"]["accuracy"]["top1_drop"] == 0.0


@pytest.mark.slow
def test_emitted_qdq_arithmetic_is_close_to_fp32(digits_run):
    """The quantization itself, tightly, on any CPU: both emitted Q/DQ forms computed without INT8 kernels."""
    folder, _ = digits_run
    out = folder / "out"
    for form in ("qdq_u8s8", "qdq_s8"):
        cosine, agreement = _exact_qdq_arithmetic(out, out / "quantize" / f"model.{form}.onnx")
        assert cosine > 0.999 and agreement >= 0.995, (form, cosine, agreement)  # measured 0.99987, 1.0


@pytest.mark.slow
def test_quantize_stage_records_table_emissions_and_layers(digits_run):
    folder, _ = digits_run
    stage = next(s for s in load_manifest(folder / "out")["stages"] if s["name"] == "quantize")
    calib = stage["details"]["calibration"]
    assert calib["num_samples"] == 300 and calib["method"] == "minmax" and calib["tensors"] > 5
    assert stage["details"]["qdq_s8"]["tensorrt_rules"]["ok"] is True
    assert stage["details"]["qdq_u8s8"]["activation"] == "uint8 asymmetric"
    layers = json.loads((folder / "out" / "quantize" / "layer_errors.json").read_text())
    assert {row["source"] for row in layers} == {"body.0", "body.3", "body.7", "body.12"}  # module paths
    assert all(row["sqnr_db"] > 10 for row in layers)
    assert [r["introduced_db"] for r in layers] == sorted((r["introduced_db"] for r in layers), reverse=True)


@pytest.mark.slow
def test_calibration_table_is_reused_then_invalidated(digits_run, tmp_path):
    folder, _ = digits_run
    again = run_cli("run", folder / "recipe.yaml", "-o", tmp_path / "again", "--json")
    assert again.code == 0, again.stderr
    calib = next(s for s in again.json()["stages"] if s["name"] == "quantize")["details"]["calibration"]
    assert calib["reused"] is True
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    recipe["calibration"]["num_samples"] = 200  # different data -> the table must not be reused
    (folder / "changed.yaml").write_text(yaml.safe_dump(recipe))
    changed = run_cli("run", folder / "changed.yaml", "-o", tmp_path / "changed", "--json")
    assert changed.code == 0, changed.stderr
    calib = next(s for s in changed.json()["stages"] if s["name"] == "quantize")["details"]["calibration"]
    assert calib["reused"] is False and "calibration data changed" in calib["invalidated"]


@pytest.mark.slow
def test_quantize_command_on_onnx_with_tensor_calibration(digits_run, tmp_path):
    folder, _ = digits_run
    # a recipe for the gates only (INT8_GATE, not the default 0.99 cosine that ONNX Runtime's INT8 kernels miss
    # on CPUs without VNNI: 0.9904 measured on an AVX2-only EPYC); the model, data and settings are the flags'
    gates = tmp_path / "gates.yaml"
    gates.write_text(yaml.safe_dump({
        "name": "digits_gates", "source": {"framework": "onnx", "path": str(folder / "out" / "model.onnx")},
        "inputs": [{"name": "image", "shape": ["batch", 1, 8, 8]}], "verify": {"tolerances": {"int8": INT8_GATE}}}))
    res = run_cli("quantize", folder / "out" / "model.onnx", "--int8", "--fp16", "--calib", REPO / "calib_data" /
                  "digits.npz", "--num-samples", "200", "-t", "onnxruntime", "--recipe", gates, "-o", tmp_path / "q",
                  "--json")
    assert res.code == 0, res.stderr
    m = res.json()
    assert [a["id"] for a in m["artifacts"]] == ["onnxruntime_fp32", "onnxruntime_int8", "onnxruntime_fp16"]
    int8 = m["artifacts"][1]
    assert int8["accuracy"]["samples"] >= 300 and int8["accuracy"]["top1_drop"] <= 0.005  # labels from the .npz
    assert [s["name"] for s in m["stages"]] == ["export", "check", "optimize", "quantize"]
    assert (tmp_path / "q" / "quantize" / "calibration.json").exists()


@pytest.mark.slow
def test_html_report_is_self_contained_and_shows_layers(digits_run):
    folder, _ = digits_run
    html = (folder / "out" / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    layers = json.loads((folder / "out" / "quantize" / "layer_errors.json").read_text())
    assert html.count('class="bar"') == len(layers)  # one bar per quantized layer
    for art in ("onnxruntime_int8", "openvino_int8_nncf", "openvino_int8_qdq"):
        assert f"<td>{art}</td>" in html


@pytest.mark.slow
def test_exclusions_reach_nncf_and_qdq(digits_run, tmp_path):
    folder, _ = digits_run
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    recipe["quantize"] = {"exclude_nodes": ["node_Conv_28"]}  # the first conv, by its ONNX name
    recipe["targets"] = [{"runtime": "openvino", "precision": "int8"},
                         {"runtime": "onnxruntime", "precision": "int8"}]
    (folder / "excluded.yaml").write_text(yaml.safe_dump(recipe))
    res = run_cli("run", folder / "excluded.yaml", "-o", tmp_path / "ex", "--json")
    assert res.code == 0, res.stderr
    arts = {a["id"]: a for a in res.json()["artifacts"]}
    scope = arts["openvino_int8"]["settings"]["ignored_scope"]
    assert scope["names"] == ["node_Conv_28/WithoutBiases"]  # mapped to the OpenVINO Convolution
    import onnx

    qdq = onnx.load(str(tmp_path / "ex" / "targets" / "onnxruntime_int8" / "model.onnx"))
    conv = next(n for n in qdq.graph.node if n.name == "node_Conv_28")
    assert not conv.input[1].endswith("_DequantizeLinear_Output")  # its weight stayed float


@pytest.mark.slow
def test_excluded_layer_stays_float_in_onnxruntime(digits_run, tmp_path):
    """A layer excluded between quantized ones must stay float in the session ONNX Runtime builds:
    its WeightBiasQuantization optimizer would otherwise quantize the float weight per tensor."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    folder, _ = digits_run
    fp32 = onnx.load(str(folder / "out" / "model.onnx"))
    second = [n.name for n in fp32.graph.node if n.op_type == "Conv"][1]  # its input comes from a Q/DQ pair
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    recipe["quantize"] = {"exclude_nodes": [second]}
    recipe["targets"] = [{"runtime": "onnxruntime", "precision": "int8"}]
    (folder / "second.yaml").write_text(yaml.safe_dump(recipe))
    res = run_cli("run", folder / "second.yaml", "-o", tmp_path / "ex", "--json")
    assert res.code == 0, res.stderr
    stage = next(s for s in res.json()["stages"] if s["name"] == "quantize")
    assert stage["details"]["qdq_u8s8"]["float_layers_fed_float"] == [second]
    artifact = tmp_path / "ex" / "targets" / "onnxruntime_int8" / "model.onnx"
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(artifact), opts, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    conv = next(n for n in optimized.graph.node if n.name == second)
    weights = {i.name: i for i in optimized.graph.initializer}
    assert conv.input[1] in weights and weights[conv.input[1]].data_type == onnx.TensorProto.FLOAT
    assert not any(n.name.startswith(f"{second}_weight_q") for n in optimized.graph.node)
    original = next(i for i in fp32.graph.initializer if i.name == conv.input[1])
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(weights[conv.input[1]]),
                                  onnx.numpy_helper.to_array(original))
