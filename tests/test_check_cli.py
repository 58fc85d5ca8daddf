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


@pytest.mark.slow
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


# ------------------------------------------------------------------------------------------------ dynamic dims

def _image_net(path, metadata=None):
    """Relu over x [-1, 3, ?, ?]: an unnamed batch, height and width, as paddle2onnx writes them."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3, "?", "?"])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def _rows(stderr: str, column: int) -> list[str]:
    """One cell of every row of the "not fully supported" table (wrapped cells joined)."""
    table = stderr.split("not fully supported", 1)[1] if "not fully supported" in stderr else ""
    rows: list[list[str]] = []
    for line in table.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.split("│")[1:-1]]
            if cells[0] or not rows:
                rows.append(cells)
            else:
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return [r[column] for r in rows]


def test_dim_out_of_bounds_is_one_line_exit_2(models):
    res = run_cli("check", models["scaler"], "-t", "onnxruntime", "--dim", "batch=0:99999999")
    assert res.code == 2, res.stderr
    assert [line for line in res.stderr.splitlines() if line.strip()] == [
        "error: --dim 'batch=0:99999999': a dim must be 1..2147483647"]
    res = run_cli("check", models["scaler"], "-t", "onnxruntime", "--dim", "batch=1:2147483648")
    assert res.code == 2 and "a dim must be 1..2147483647" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("check", models["scaler"], "-t", "onnxruntime", "--dim", "batch=4:2")
    assert res.code == 2 and "need MIN <= OPT <= MAX" in res.stderr
    res = run_cli("check", models["scaler"], "-t", "onnxruntime", "--dim", "batch")  # the shared parser's hint
    assert res.code == 2 and "expected NAME=VALUE" in res.stderr and "hint:" in res.stderr


def test_dims_suggestion_is_shown_once_and_taken_verbatim(tmp_path):
    model = _image_net(tmp_path / "m.onnx")
    res = run_cli("check", model, "-t", "tensorrt", "-t", "openvino")
    assert res.code == 0, res.stderr
    suggestions = [s for s in _rows(res.stderr, -1) if "--dim" in s]
    assert len(suggestions) == 1, res.stderr  # TensorRT's profile, not again per dim for "all"
    assert _rows(res.stderr, 0) == ["tensorrt"]
    assert suggestions[0].startswith("give each a profile: --dim batch=1:1:8 --dim x_2=SIZE --dim x_3=SIZE, or in "
                                     "the recipe: dims: {batch: {min: 1, opt: 1, max: 8}, x_2: SIZE, x_3: SIZE}")
    # the JSON keeps the model-level findings (one per dim) beside TensorRT's
    report = _report(run_cli("check", model, "-t", "tensorrt", "-t", "openvino", "--json"))
    assert sum(f.kind == "dynamic_dim" for f in report.findings) == 3
    # without TensorRT: one row per dim, each in the same verbatim form (never "N" or "{min, opt, max}")
    res = run_cli("check", model, "-t", "openvino")
    assert res.code == 0, res.stderr
    suggestions = _rows(res.stderr, -1)
    assert [s.split(", or in the recipe: ")[0] for s in suggestions] == [
        "give it a range: --dim batch=1:1:8", "give it a size: --dim x_2=SIZE", "give it a size: --dim x_3=SIZE"]
    assert "dims: {batch: {min: 1, opt: 1, max: 8}}" in suggestions[0] and "dims: {x_2: SIZE}" in suggestions[1]
    assert not any("=N " in s or "{min, opt, max}" in s for s in suggestions)
    # pasted (SIZE filled in): nothing left to say
    res = run_cli("check", model, "-t", "tensorrt", "-t", "openvino", "--dim", "batch=1:1:8", "--dim", "x_2=64",
                  "--dim", "x_3=48", "--json")
    assert res.code == 0 and _report(res).findings == [], res.stderr
    assert all(t.verdict == "supported" for t in _report(res).targets)
    # a size from the model's metadata is written in, in both forms
    meta = _image_net(tmp_path / "meta.onnx", {"imgsz": "32"})
    res = run_cli("check", meta, "-t", "openvino")
    assert _rows(res.stderr, -1)[1].startswith("give it a size: --dim x_2=32, or in the recipe: dims: {x_2: 32}; "
                                               "x_2 = 32 from the model's metadata (imgsz: 32)")


def test_recipe_given_dims_have_their_range(tmp_path, write_recipe):
    """A dim the recipe gives any value has its range: a `dims` range, a fixed value (min = opt = max, or
    `--dim NAME=N`), or a size fixed in inputs[].shape. The check names the rest as the recipe does."""
    model = _image_net(tmp_path / "m.onnx")
    base = {"name": "img", "source": {"framework": "onnx", "path": str(model)},
            "targets": [{"runtime": "tensorrt", "precision": "fp32"}], "output": "out"}

    def dims_findings(recipe, *args):
        res = run_cli("check", recipe, "--json", *args)
        assert res.code == 0, res.stderr
        report = _report(res)
        trt = [n for t in report.targets for n in t.nodes if n.kind == "dynamic_dim"]
        return [f.reason for f in report.findings if f.kind == "dynamic_dim"], [n.reason for n in trt]

    fixed = write_recipe({**base, "inputs": [{"name": "x", "shape": [1, 3, 64, 48]}]}, "fixed.yaml")
    assert dims_findings(fixed) == ([], [])
    ranged = write_recipe({**base, "inputs": [{"name": "x", "shape": ["batch", 3, "height", "width"]}],
                           "dims": {"batch": {"min": 1, "opt": 1, "max": 1}, "height": 64,
                                    "width": {"min": 48, "opt": 48, "max": 48}}}, "ranged.yaml")
    assert dims_findings(ranged) == ([], [])
    named = write_recipe({**base, "inputs": [{"name": "x", "shape": ["batch", 3, "height", "width"]}]}, "named.yaml")
    model_level, trt = dims_findings(named, "--dim", "height=64", "--dim", "width=48")
    assert len(model_level) == 1 and "'batch'" in model_level[0] and len(trt) == 1 and "'height'" not in trt[0]
    model_level, trt = dims_findings(named)  # under the recipe's names, which `--dim` and its `dims` take
    assert "named 'height' by the recipe" in model_level[1] and "'height' (input 'x' axis 2)" in trt[0]
    assert "x_2" not in " ".join(model_level + trt)


def test_run_check_stage_counts_dims_the_recipe_fixes(tmp_path, write_recipe):
    model = _image_net(tmp_path / "m.onnx")
    recipe = write_recipe({"name": "img", "source": {"framework": "onnx", "path": str(model)},
                           "inputs": [{"name": "x", "shape": ["batch", 3, 16, "width"]}],
                           "dims": {"batch": {"min": 1, "max": 2}, "width": 24}, "samples": {"count": 2},
                           "targets": [{"runtime": "onnxruntime", "precision": "fp32"},
                                       {"runtime": "tensorrt", "precision": "fp32"}], "output": "out"})
    res = run_cli("run", recipe)
    assert res.code == 0, res.stderr
    check = next(s for s in load_manifest(tmp_path / "out")["stages"] if s["name"] == "check")
    assert check["details"]["targets"]["tensorrt"]["verdict"] == "supported", check["details"]["targets"]
    assert not any("without a range" in f for f in check["findings"]), check["findings"]
