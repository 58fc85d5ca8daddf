"""No silent native crash: every ONNX convertctl writes is sorted and checked before a runtime loads it, and a
segfault anywhere in a run is contained by the supervisor (convertctl/supervisor.py): one clear error naming
the stage, ERROR.txt, exit 1, and the other targets still run.

The crashes here are real segmentation faults (faulthandler._sigsegv, raised at a named stage through
CONVERTCTL_FAULT_AT), not mocks: the runtimes' own crashes depend on the CPU and the runtime version (ONNX
Runtime 1.31's NCHWc transformer segfaults on a small ViT's FP16 graph on an AVX-512 Xeon), so a test that
waits for one would pass or fail by machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from convertctl.errors import ConvertctlError
from convertctl.onnx_save import save_checked, sort_graph
from tests.conftest import load_manifest, small_cnn_recipe

TWO_TARGETS = [{"runtime": "onnxruntime", "precision": "fp32"}, {"runtime": "openvino", "precision": "fp32"}]


def _run(recipe, cwd, fault: str | None, *extra, kill: bool = False):
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    if fault:
        env["CONVERTCTL_FAULT_AT"] = fault
    if kill:
        env["CONVERTCTL_FAULT_KILL"] = "1"
    return subprocess.run([sys.executable, "-m", "convertctl", "run", str(recipe), "--no-latency", *extra],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.slow
def test_a_crash_in_one_target_is_reported_and_the_other_targets_still_run(tmp_path, models_file, write_recipe):
    recipe = write_recipe(small_cnn_recipe(targets=TWO_TARGETS))
    res = _run(recipe, tmp_path, "build onnxruntime_fp32", "--json")
    assert res.returncode == 1, res.stderr
    assert "onnxruntime_fp32 crashed natively (SIGSEGV" in res.stderr and "running again without it" in res.stderr
    doc = json.loads(res.stdout)  # one JSON object: the finished attempt's manifest
    assert doc["status"] == "error" and doc["exit_code"] == 1
    by_id = {a["id"]: a for a in doc["artifacts"]}
    assert by_id["openvino_fp32"]["status"] == "ok"
    crashed = by_id["onnxruntime_fp32"]
    assert crashed["status"] == "error"
    assert "SIGSEGV (a segmentation fault) during 'build onnxruntime_fp32'" in crashed["reason"]
    assert "graph_optimization_level" in crashed["reason"]  # what to try for an ONNX Runtime target
    assert (tmp_path / "out" / "targets" / "onnxruntime_fp32" / "ERROR.txt").read_text().startswith("crashed")
    assert load_manifest(tmp_path / "out")["status"] == "error"
    assert not list(tmp_path.glob(".out.staging-*")) and not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("stage", ["optimize", "quantize"])
@pytest.mark.slow
def test_a_crash_outside_a_target_keeps_a_partial_folder_with_the_stack(tmp_path, models_file, write_recipe, stage):
    targets = TWO_TARGETS + [{"runtime": "onnxruntime", "precision": "fp16"}]
    recipe = write_recipe(small_cnn_recipe(targets=targets))
    res = _run(recipe, tmp_path, stage, "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc == {"status": "error", "exit_code": 1, "hint": doc["hint"],
                   "error": f"convertctl crashed natively: SIGSEGV (a segmentation fault) during '{stage}'"}
    assert "out.partial" in doc["hint"] and "Traceback" not in res.stderr
    partial = tmp_path / "out.partial"
    error = (partial / "ERROR.txt").read_text()
    assert f"during '{stage}'" in error and "Fatal Python error: Segmentation fault" in error
    assert "convertctl/supervisor.py" in error  # the Python stack at the crash, from faulthandler
    assert not (partial / "manifest.json").exists() and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.staging-*"))
    # the next run (no fault) replaces nothing of the user's and succeeds; the partial folder goes
    again = _run(recipe, tmp_path, None)
    assert again.returncode == 0, again.stderr
    assert load_manifest(tmp_path / "out")["status"] == "ok" and not partial.exists()


@pytest.mark.slow
def test_a_sigkill_from_outside_is_not_taken_for_the_oom_killer(tmp_path, models_file, write_recipe):
    """`kill -9` of the child (a person, a CI timeout) during a target's build: the cgroup's OOM-kill counter did not
    move, so it is no crash to work around: no second attempt, the partial folder kept, exit 137 as in a shell."""
    from convertctl.supervisor import oom_kills

    if oom_kills() is None:
        pytest.skip("this machine's memory cgroup has no readable oom_kill counter: SIGKILL is taken for the OOM killer")
    recipe = write_recipe(small_cnn_recipe(targets=TWO_TARGETS))
    res = _run(recipe, tmp_path, "build onnxruntime_fp32", "--json", kill=True)
    assert res.returncode == 137, res.stderr
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 137 and doc["error"] == (
        "convertctl was stopped: SIGKILL (killed by another process, not the out-of-memory killer) during "
        "'build onnxruntime_fp32'")
    assert "running again" not in res.stderr and "please report" not in doc["hint"]
    assert "killed by another process" in (tmp_path / "out.partial" / "ERROR.txt").read_text()
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.staging-*"))


@pytest.mark.slow
def test_without_a_crash_the_supervisor_passes_exit_codes_and_output_through(tmp_path):
    res = subprocess.run([sys.executable, "-m", "convertctl", "build", str(tmp_path / "nope.onnx"), "-t",
                          "onnxruntime", "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and json.loads(res.stdout)["status"] == "error"
    assert "crashed" not in res.stderr


# -- every ONNX convertctl writes is in topological order and checked -------------------------------------
def _chain(order: list[int]):
    """x -> Relu -> Neg -> Abs -> y, with the nodes listed in `order`."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Neg", ["a"], ["b"], name="neg"),
             helper.make_node("Abs", ["b"], ["y"], name="abs")]
    graph = helper.make_graph([nodes[i] for i in order], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.slow
def test_a_graph_out_of_order_is_sorted_saved_checked_and_runs(tmp_path):
    import onnxruntime as ort

    model = _chain([2, 0, 1])
    assert save_checked(model, tmp_path / "m.onnx") is True
    saved = onnx.load(str(tmp_path / "m.onnx"))
    assert [n.name for n in saved.graph.node] == ["relu", "neg", "abs"]
    x = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]], np.float32)
    (y,) = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0))


@pytest.mark.slow
def test_a_sorted_graph_is_left_as_it_is_and_ties_keep_their_order():
    model = _chain([0, 1, 2])
    before = model.SerializeToString()
    assert sort_graph(model.graph) is False and model.SerializeToString() == before


@pytest.mark.slow
def test_an_if_waits_for_the_values_its_branches_read_from_the_outer_scope():
    # the If's branches read 'a' from the outer scope: the If must come after the Relu that defines it,
    # although the If's own inputs (the condition) are ready first
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    then_g = helper.make_graph([helper.make_node("Identity", ["a"], ["y"])], "then", [], [out])
    else_g = helper.make_graph([helper.make_node("Neg", ["a"], ["y"])], "else", [], [out])
    nodes = [helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g),
             helper.make_node("Relu", ["x"], ["a"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert sort_graph(model.graph) is True
    assert [n.name for n in model.graph.node] == ["relu", "if"]
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.slow
def test_a_cycle_is_refused_with_the_nodes_named(tmp_path):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    with pytest.raises(ConvertctlError, match="cycle.*first"):
        save_checked(helper.make_model(graph), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_the_fp16_emission_of_a_transformer_is_sorted_and_checked(tmp_path):
    """onnxruntime.transformers' FP16 converter puts Casts after the nodes that read them on a ViT-like graph
    (Softmax kept in FP32, the decomposed LayerNorm's statistics too): the emission comes out sorted, passes the
    full checker, loads in ONNX Runtime and stays close to FP32."""
    import onnxruntime as ort
    import torch

    from convertctl.quantize.emit import emit_fp16

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=True).eval()
    x = torch.randn(2, 5, 32)
    torch.onnx.export(layer, (x,), str(tmp_path / "fp32.onnx"), input_names=["x"], output_names=["y"], dynamo=True,
                      opset_version=18, external_data=False)
    info = emit_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx", None, 32752.0)
    model = onnx.load(str(tmp_path / "fp16.onnx"))
    assert sort_graph(model.graph) is False  # already in order as written
    onnx.checker.check_model(model, full_check=True)
    assert isinstance(info["nodes_reordered"], bool)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    (y,) = ort.InferenceSession(str(tmp_path / "fp16.onnx"), opts, providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy()})
    ref = layer(x).detach().numpy()
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()  # FP16 has 11 significant bits; a wrong graph is far off


@pytest.mark.slow
def test_an_error_outranks_a_gate_failure_in_one_run(tmp_path, models_file, write_recipe):
    # openvino_fp16 fails its gate (max abs error 0 cannot hold in FP16); onnxruntime_fp32 crashes: exit 1
    targets = [{"runtime": "onnxruntime", "precision": "fp32"},
               {"runtime": "openvino", "precision": "fp16", "tolerance": {"max_abs": 0.0}}]
    recipe = write_recipe(small_cnn_recipe(targets=targets))
    res = _run(recipe, tmp_path, "build onnxruntime_fp32")
    statuses = {a["id"]: a["status"] for a in load_manifest(tmp_path / "out")["artifacts"]}
    assert statuses == {"onnxruntime_fp32": "error", "openvino_fp16": "failed"}
    assert res.returncode == 1 and load_manifest(tmp_path / "out")["exit_code"] == 1
