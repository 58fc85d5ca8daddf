"""`convertctl check` and the pipeline's check stage, through the real CLI, on small ONNX models built here.

The verdicts come from the real ONNX Runtime and OpenVINO: `ai.onnx.ml.Scaler` runs in ONNX Runtime but
OpenVINO's ONNX frontend has no conversion rule for it; an operator of an unknown domain runs nowhere.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convertctl.checks.verdicts import CheckReport

from .conftest import load_manifest, run_cli, small_cnn_recipe

SUPPORTED = ("supported", "conditional")  # what a target that can build the model may say


def _save(nodes, inits, path, *, opsets=(("", 17),), batch="batch"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _dense(rng):
    w = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    return [helper.make_node("MatMul", ["x", "w"], ["mm"], name="dense/matmul"),
            helper.make_node("Add", ["mm", "b"], ["add"], name="dense/add"),
            helper.make_node("Relu", ["add"], ["r"], name="relu0")], [w, b]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    nodes, inits = _dense(rng)
    plain = _save(nodes + [helper.make_node("Sigmoid", ["r"], ["y"], name="sig0")], inits, folder / "plain.onnx",
                  batch=1)
    nodes, inits = _dense(rng)
    scaler = helper.make_node("Scaler", ["r"], ["y"], name="scale0", domain="ai.onnx.ml", offset=[0.5] * 4,
                              scale=[2.0] * 4)
    ml = _save(nodes + [scaler], inits, folder / "scaler.onnx", opsets=(("", 17), ("ai.onnx.ml", 3)))
    nodes, inits = _dense(rng)
    fancy = helper.make_node("FancyOp", ["r"], ["y"], name="fancy0", domain="com.example")
    # the checker does not know com.example: save without it (onnx.checker would reject the unknown domain op)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    model = helper.make_model(helper.make_graph(nodes + [fancy], "g", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    custom = folder / "fancy.onnx"
    onnx.save(model, str(custom))
    return {"plain": plain, "scaler": ml, "custom": custom, "folder": folder}


def _report(res) -> CheckReport:
    return CheckReport.model_validate(json.loads(res.stdout))  # stdout is the JSON and nothing else


def test_supported_model_exits_0_with_a_table(models):
    res = run_cli("check", models["plain"], "-t", "onnxruntime", "-t", "openvino", "-t", "tensorrt")
    assert res.code == 0, res.stderr
    assert res.stdout == ""
    rows = {line.split("│")[1].strip(): line for line in res.stderr.splitlines() if line.startswith("│")}
    for op in ("MatMul", "Add", "Relu", "Sigmoid"):
        assert op in rows, res.stderr
        assert rows[op].count("supported") >= 2 and "unsupported" not in rows[op], rows[op]
    assert "no target rejects the model" in res.stderr


def test_supported_model_json(models):
    res = run_cli("check", models["plain"], "-t", "onnxruntime", "-t", "openvino", "--json")
    assert res.code == 0, res.stderr
    report = _report(res)
    assert [t.target for t in report.targets] == ["onnxruntime", "openvino"]
    assert all(t.verdict in SUPPORTED for t in report.targets), report.targets
    assert report.node_count == 4 and report.unsupported == []
    ops = {o.op_type: o for o in report.targets[0].ops}
    assert set(ops) == {"MatMul", "Add", "Relu", "Sigmoid"} and ops["MatMul"].count == 1 and ops["MatMul"].opset == 17


def test_op_openvino_lacks_exits_3_and_names_the_node(models, tmp_path):
    res = run_cli("check", models["scaler"], "-t", "onnxruntime", "-t", "openvino", "-o", tmp_path / "c")
    assert res.code == 3, res.stderr
    assert "scale0" in res.stderr and "Scaler" in res.stderr and "ai.onnx.ml" in res.stderr
    assert "error: openvino: unsupported" in res.stderr
    report = CheckReport.model_validate_json((tmp_path / "c" / "check.json").read_text())
    verdicts = {t.target: t for t in report.targets}
    assert verdicts["onnxruntime"].verdict in SUPPORTED
    assert verdicts["openvino"].verdict == "unsupported" and report.unsupported == ["openvino"]
    assert any(n.node == "scale0" and n.verdict == "unsupported" for n in verdicts["openvino"].nodes)
    md = (tmp_path / "c" / "check.md").read_text()
    assert "| Scaler | ai.onnx.ml |" in md and "scale0" in md


def test_custom_domain_op_is_unsupported_everywhere(models):
    res = run_cli("check", models["custom"], "-t", "onnxruntime", "-t", "openvino", "-t", "tensorrt", "--json")
    assert res.code == 3, res.stderr
    report = _report(res)
    assert report.unsupported == ["onnxruntime", "openvino"]
    for t in report.targets:
        # ONNX Runtime and OpenVINO cannot run it; TensorRT's table cannot know a plugin: never "supported" there
        expected = "unknown" if t.target == "tensorrt" else "unsupported"
        assert any(n.node == "fancy0" and n.verdict == expected for n in t.nodes), t
        assert next(o for o in t.ops if o.op_type == "FancyOp").domain == "com.example"


def test_bad_targets_and_files(models, tmp_path):
    res = run_cli("check", models["plain"], "-t", "tpu")
    assert res.code == 2 and "unknown target 'tpu'" in res.stderr and "onnxruntime, openvino, tensorrt" in res.stderr
    res = run_cli("check", models["plain"])
    assert res.code == 2 and "no target given" in res.stderr
    res = run_cli("check", tmp_path / "nosuch.onnx", "-t", "openvino", "--json")
    assert res.code == 2 and "model file not found" in res.stderr
    assert json.loads(res.stdout)["exit_code"] == 2  # the usual JSON error object
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("this is not a model\n")
    res = run_cli("check", garbage, "-t", "openvino")
    assert res.code == 2 and "is not an ONNX model" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "model.pt").write_bytes(b"torchscript")  # not even a zip: named by its suffix
    res = run_cli("check", tmp_path / "model.pt", "-t", "openvino")
    assert res.code == 2 and "is a PyTorch file, not an ONNX model" in res.stderr and "convertctl export" in res.stderr


def test_check_pytorch_recipe_exports_first(models_file, write_recipe, tmp_path):
    recipe = write_recipe(small_cnn_recipe(dims={"batch": {"min": 1, "opt": 2, "max": 4}}))
    res = run_cli("check", recipe, "-o", tmp_path / "chk")
    assert res.code == 0, res.stderr
    assert "export" in res.stderr and "Conv" in res.stderr
    report = CheckReport.model_validate_json((tmp_path / "chk" / "check.json").read_text())
    assert [t.target for t in report.targets] == ["openvino", "onnxruntime"]  # the recipe's runtimes, once each
    assert report.model == str((tmp_path / "chk" / "model.onnx").resolve()) and (tmp_path / "chk" / "model.onnx").is_file()
    assert all(t.verdict in SUPPORTED for t in report.targets), [(t.target, t.verdict, t.nodes) for t in report.targets]
    assert not (tmp_path / "out").exists()  # the export went to a temporary folder, not the recipe's output


def _scaler_recipe(write_recipe, model, **extra):
    data = {"name": "scaler", "source": {"framework": "onnx", "path": str(model)},
            "dims": {"batch": {"min": 1, "max": 8}},
            "targets": [{"runtime": "openvino", "precision": "fp32"}, {"runtime": "onnxruntime", "precision": "fp32"}],
            "output": "out", **extra}
    return write_recipe(data)


def test_check_recipe_checks_its_runtimes(models, write_recipe):
    recipe = _scaler_recipe(write_recipe, models["scaler"])
    res = run_cli("check", recipe, "--json")
    assert res.code == 3, res.stderr
    report = _report(res)
    assert [t.target for t in report.targets] == ["openvino", "onnxruntime"]
    assert report.unsupported == ["openvino"]


def test_run_builds_the_supported_target_and_errors_the_other(models, write_recipe, tmp_path):
    recipe = _scaler_recipe(write_recipe, models["scaler"])
    res = run_cli("run", recipe)
    assert res.code == 1, res.stderr  # an "error" artifact: the existing rule
    m = load_manifest(tmp_path / "out")
    assert m["status"] == "error" and m["exit_code"] == 1
    arts = {a["id"]: a for a in m["artifacts"]}
    assert arts["onnxruntime_fp32"]["status"] == "ok"
    reason = arts["openvino_fp32"]["reason"]
    assert arts["openvino_fp32"]["status"] == "error" and not arts["openvino_fp32"]["files"]
    assert reason.startswith("unsupported by openvino: ai.onnx.ml.Scaler (scale0): ") and reason.endswith(
        "; see check/check.json"), reason
    check = next(s for s in m["stages"] if s["name"] == "check")
    assert check["details"]["targets"]["openvino"]["verdict"] == "unsupported"
    assert check["details"]["targets"]["openvino"]["nodes"][0]["node"] == "scale0"
    assert check["details"]["targets"]["onnxruntime"]["verdict"] in SUPPORTED
    assert check["details"]["op_counts"]  # the structure findings are kept
    assert [f["path"] for f in check["outputs"]] == ["check/check.json"]
    report = CheckReport.model_validate_json((tmp_path / "out" / "check" / "check.json").read_text())
    assert report.unsupported == ["openvino"]
    assert "unsupported by openvino" in res.stderr


def test_fail_fast_stops_before_quantize_with_exit_3(models, write_recipe, tmp_path):
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(1).standard_normal((40, 4)).astype(np.float32))
    recipe = _scaler_recipe(write_recipe, models["scaler"], check={"fail_fast": True},
                            calibration={"data": str(calib), "num_samples": 20},
                            targets=[{"runtime": "openvino", "precision": "fp32"},
                                     {"runtime": "onnxruntime", "precision": "int8"}])
    res = run_cli("run", recipe, "--json")
    assert res.code == 3, res.stderr
    m = json.loads(res.stdout)
    assert m == load_manifest(tmp_path / "out")
    assert m["status"] != "ok" and m["exit_code"] == 3
    assert [s["name"] for s in m["stages"]] == ["export", "check"]  # no optimize, no quantize
    assert {a["id"]: a["status"] for a in m["artifacts"]} == {"openvino_fp32": "error", "onnxruntime_int8": "skipped"}
    assert not (tmp_path / "out" / "quantize").exists() and not (tmp_path / "out" / "targets").exists()
    assert any("check.fail_fast" in msg for msg in m["messages"])


def test_recipe_rejects_unknown_check_keys(models, write_recipe):
    recipe = _scaler_recipe(write_recipe, models["scaler"], check={"fail_fats": True})
    res = run_cli("recipe", "validate", recipe)
    assert res.code == 2 and "check.fail_fats" in res.stderr
