"""Bad input: one clear line, the documented exit code, no traceback, no folder that looks complete."""

from __future__ import annotations

import pytest

from convertctl.errors import EXIT_ACCURACY_GATE, EXIT_USAGE

from .conftest import load_manifest, run_cli, small_cnn_recipe


def assert_clean_error(res, code: int, *needles: str):
    assert res.code == code, (res.code, res.stderr)
    assert "Traceback" not in res.stderr
    assert "error:" in res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


def test_missing_model_file(tmp_path):
    res = run_cli("build", tmp_path / "nope.onnx", "--target", "openvino", "-o", tmp_path / "o")
    assert_clean_error(res, EXIT_USAGE, "model file not found")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_missing_factory_file(tmp_path, write_recipe):
    res = run_cli("run", write_recipe(small_cnn_recipe(source={"framework": "pytorch", "factory": "gone.py:f"})))
    assert_clean_error(res, EXIT_USAGE, "factory file not found")


def test_factory_that_raises(models_file, tmp_path, write_recipe):
    recipe = write_recipe(small_cnn_recipe(source={"framework": "pytorch", "factory": "models.py:raises"}))
    res = run_cli("run", recipe)
    assert_clean_error(res, EXIT_USAGE, "raised RuntimeError: weights server unreachable")
    assert not (tmp_path / "out").exists()
    partial = tmp_path / "out.partial"
    assert (partial / "ERROR.txt").exists() and not (partial / "manifest.json").exists()
    assert "partial output kept in" in res.stderr
    log = partial / "export" / "export.log"
    assert f"full log: {log}" in " ".join(res.stderr.split())  # the hint points into the kept folder
    assert "weights server unreachable" in log.read_text()


def test_factory_returning_non_module(models_file, write_recipe):
    recipe = write_recipe(small_cnn_recipe(source={"framework": "pytorch", "factory": "models.py:not_a_module"}))
    assert_clean_error(run_cli("run", recipe), EXIT_USAGE, "returned int, not a torch.nn.Module")


@pytest.mark.slow
def test_shape_the_model_rejects(models_file, write_recipe):
    recipe = write_recipe(small_cnn_recipe(inputs=[{"name": "image", "shape": ["batch", 5, 32, 32]}]))
    assert_clean_error(run_cli("run", recipe), EXIT_USAGE, "the model rejected the declared inputs",
                       "image: [4, 5, 32, 32]")


def test_verbose_shows_traceback(models_file, write_recipe):
    recipe = write_recipe(small_cnn_recipe(source={"framework": "pytorch", "factory": "gone.py:f"}))
    res = run_cli("run", recipe, "-v")
    assert res.code == EXIT_USAGE and "Traceback" in res.stderr


@pytest.mark.parametrize("content", [b"this is not a model", b"\x08\x07\x12\x04oops\xff\xff\xff"])
def test_corrupt_onnx(tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    res = run_cli("build", bad, "--target", "onnxruntime", "-o", tmp_path / "o")
    assert res.code == EXIT_USAGE, res.stderr
    assert "Traceback" not in res.stderr and "bad.onnx" in res.stderr
    assert not (tmp_path / "o" / "manifest.json").exists()


@pytest.mark.slow
def test_truncated_onnx(tmp_path, models_file):
    ok = run_cli("export", f"{models_file}:small_cnn", "--input", "image:1,3,32,32", "-o", tmp_path / "e", "-q")
    assert ok.code == 0, ok.stderr
    data = (tmp_path / "e" / "model.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    res = run_cli("build", cut, "--target", "openvino", "-o", tmp_path / "o")
    assert_clean_error(res, EXIT_USAGE, "cut.onnx")


def test_unwritable_output_folder(models_file, tmp_path, write_recipe):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    res = run_cli("run", write_recipe(small_cnn_recipe()), "-o", blocker / "out")
    assert_clean_error(res, EXIT_USAGE, "cannot write to output folder")


def test_unknown_target_name(tmp_path):
    res = run_cli("build", tmp_path / "m.onnx", "--target", "tensorflowlite")
    assert_clean_error(res, EXIT_USAGE, "unknown target 'tensorflowlite'", "openvino")


def test_int8_without_calibration(tmp_path):
    res = run_cli("build", tmp_path / "m.onnx", "--target", "onnxruntime", "--precision", "int8")
    assert_clean_error(res, EXIT_USAGE, "need a 'calibration' section")
    res = run_cli("quantize", tmp_path / "m.onnx", "--int8")
    assert_clean_error(res, EXIT_USAGE, "--int8 needs calibration data")


def test_run_needs_a_recipe(tmp_path):
    assert_clean_error(run_cli("run", tmp_path / "m.onnx"), EXIT_USAGE, "is not a recipe")


def test_json_error_on_stdout(tmp_path):
    res = run_cli("build", tmp_path / "nope.onnx", "--target", "openvino", "--json")
    assert res.code == EXIT_USAGE
    data = res.json()
    assert data["status"] == "error" and data["exit_code"] == EXIT_USAGE and "not found" in data["error"]


@pytest.mark.slow
def test_accuracy_gate_failure_exits_4_and_keeps_marked_artifacts(models_file, tmp_path, write_recipe):
    # FP16-compressed weights cannot meet an exact-match gate: a real, honest gate failure.
    recipe = write_recipe(small_cnn_recipe(
        targets=[{"runtime": "openvino", "precision": "fp16", "tolerance": {"max_abs": 0.0}},
                 {"runtime": "onnxruntime"}]))
    res = run_cli("run", recipe)
    assert res.code == EXIT_ACCURACY_GATE, res.stderr
    m = load_manifest(tmp_path / "out")
    assert m["status"] == "failed" and m["exit_code"] == EXIT_ACCURACY_GATE
    arts = {a["id"]: a for a in m["artifacts"]}
    assert arts["openvino_fp16"]["status"] == "failed"
    assert "max abs error" in arts["openvino_fp16"]["reason"]
    assert arts["onnxruntime_fp32"]["status"] == "ok"  # the other target still ran and passed
    assert (tmp_path / "out" / "targets" / "openvino_fp16" / "model.xml").exists()
    assert "failed" in (tmp_path / "out" / "summary.md").read_text()


def test_usage_error_before_json_is_parsed_still_gives_json():
    res = run_cli("--json", "build")
    assert res.code == EXIT_USAGE and res.json()["error"] == "Missing argument 'MODEL'."


def test_precision_without_target(tmp_path):
    assert_clean_error(run_cli("build", tmp_path / "m.onnx", "-p", "fp16"), EXIT_USAGE, "--precision needs --target")


def test_brackets_in_messages_survive_the_terminal(tmp_path, write_recipe):
    recipe = write_recipe(small_cnn_recipe(verify={"tolerances": {"int4": {"min_cosine": 0.9}}}))
    res = run_cli("recipe", "validate", recipe)
    assert_clean_error(res, EXIT_USAGE, "verify.tolerances.int4 (the key itself)", "'fp16' or 'int8'")


def _save(model, path):
    import onnx

    onnx.save(model, str(path))
    return path


def test_quantize_refuses_an_already_quantized_model(tmp_path):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(0, np.uint8), "z"),
             numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("MatMul", ["xd", "w"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "qdq", [x], [y], inits), opset_imports=[helper.make_opsetid("", 18)],
                              ir_version=9)
    path = _save(model, tmp_path / "qdq.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((8, 4), dtype=np.float32))
    res = run_cli("quantize", path, "--int8", "--calib", tmp_path / "calib.npy", "-t", "onnxruntime",
                  "-o", tmp_path / "q")
    assert_clean_error(res, EXIT_USAGE, "qdq.onnx is already quantized (2 nodes of DequantizeLinear, QuantizeLinear)",
                       "give the FP32 model")
    assert not (tmp_path / "q").exists()


def test_quantize_refuses_a_model_without_float_tensors(tmp_path):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4])
    y = helper.make_tensor_value_info("out", TensorProto.INT64, ["batch", 4])
    one = numpy_helper.from_array(np.ones(4, np.int64), "one")
    model = helper.make_model(helper.make_graph([helper.make_node("Add", ["ids", "one"], ["out"])], "ints", [x], [y],
                                                [one]), opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    path = _save(model, tmp_path / "ints.onnx")
    res = run_cli("quantize", path, "--fp16", "-t", "onnxruntime", "-o", tmp_path / "q")
    assert_clean_error(res, EXIT_USAGE, "ints.onnx has no float tensors to quantize")
    assert not (tmp_path / "q").exists()
