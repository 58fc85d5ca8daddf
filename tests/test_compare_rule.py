"""The comparison rule (evaluate/compare.py): close (atol + rtol·RMS) or similar (cosine/SQNR/top-1), and an
output with no signal judged by absolute error only; the numbers are worked out by hand or measured."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from convertctl.evaluate.compare import compare, judge, output_metrics
from convertctl.passes.guard import guarded_pass
from convertctl.recipe import Verify
from convertctl.report.manifest import (
    SCHEMA_VERSION,
    ArtifactRecord,
    Manifest,
    RecipeRecord,
    StageRecord,
    read_manifest,
)
from convertctl.schema import Tolerance

DEFAULTS = Verify().tolerances
FP32, FP16, INT8 = DEFAULTS["fp32"], DEFAULTS["fp16"], DEFAULTS["int8"]


def one(ref, act, tol):
    cmp = compare("ref", ["y"], [np.asarray(ref)], [np.asarray(act)], tol)
    return cmp, cmp.outputs["y"]


def test_the_documented_defaults():
    assert (FP32.atol, FP32.rtol, FP32.min_cosine, FP32.max_abs, FP32.min_top1_agreement) == (1e-5, 1e-3, 0.9999, 1e-2, 1.0)
    assert (FP16.atol, FP16.rtol, FP16.min_cosine, FP16.min_top1_agreement) == (1e-3, 1e-2, 0.999, 0.9)
    assert (INT8.atol, INT8.rtol, INT8.min_cosine, INT8.min_top1_agreement) == (1e-3, 1e-2, 0.99, 0.9)
    # a precision given in a recipe replaces its default entirely: without atol/rtol, no closeness criterion
    given = Verify(tolerances={"int8": {"min_cosine": 0.985}}).tolerances
    assert given["int8"].atol is None and given["fp32"].atol == 1e-5


def test_an_all_zero_output_with_tiny_differences_passes_by_absolute_error():
    # The case: a probability map that is 0 everywhere on random input; the artifact has 1e-8 here and
    # there. Cosine is undefined (the old rule wrote 0.0 and failed it).
    ref = np.zeros((2, 1, 16, 16), np.float32)
    act = ref.copy()
    act[0, 0, 3, 4], act[1, 0, 9, 9] = 1e-8, 2e-8
    cmp, m = one(ref, act, FP32)
    assert cmp.passed is True and cmp.failures == []
    assert m.cosine is None and m.sqnr_db is None
    assert (m.decided_by, m.ref_rms, m.ref_half_range) == ("absolute", 0.0, 0.0)
    assert m.close_bound == pytest.approx(1e-5) and m.max_abs == pytest.approx(2e-8)
    # the same map with a real error, 1% of a probability's scale: fails, and says why
    act[1, 0, 9, 9] = 0.01
    cmp, m = one(ref, act, FP32)
    assert cmp.passed is False and m.decided_by == "absolute" and m.passed is False
    assert cmp.failures == ["y: no signal (the reference stays within 1e-05 of one value), max abs error 0.01 > 1e-05 "
                            "(atol 1e-05 + rtol 0.001 × RMS 0)"]


def near_zero_map():
    """A detector's probability map on random input, as measured on PP-OCRv4 det (ONNX Runtime vs OpenVINO FP32
    at 640x640): max 9.5e-5, RMS 1.6e-7, mostly exact zeros; the runtimes differ by multiples of 2^-24 (ONNX
    Runtime's Sigmoid has an absolute precision of about 6e-8 near 0), max |Δ| 1.4e-7, cosine 0.9997."""
    rng = np.random.default_rng(0)
    ref = np.zeros(200_000)
    ref[rng.choice(ref.size, 2000, replace=False)] = rng.integers(1, 4, 2000) * 2.0**-24  # 6e-8 .. 1.8e-7
    ref[:3] = [9.47e-5, 3.6e-7, 2.4e-7]
    act = ref.copy()
    moved = rng.choice(ref.size, 1200, replace=False)
    act[moved] = np.clip(act[moved] + rng.choice([-2, -1, 1, 2], 1200) * 2.0**-24, 0, None)
    return ref.astype(np.float32), act.astype(np.float32)


def test_an_openvino_difference_of_1e7_with_cosine_09997_passes_as_allclose():
    ref, act = near_zero_map()
    before = Tolerance(min_cosine=0.9999, max_abs=1e-2, min_top1_agreement=1.0)  # the old fp32 default
    cmp, m = one(ref, act, before)
    assert m.cosine == pytest.approx(0.9997, abs=1e-4) and m.cosine < 0.9999 and m.max_abs == pytest.approx(1.19e-7, rel=0.01)
    assert cmp.passed is False and cmp.failures[0].startswith("y: cosine 0.99")  # what the issue found
    cmp, m = one(ref, act, FP32)
    assert cmp.passed is True and m.decided_by == "allclose"  # the reference has a signal: 9.5e-5 > the bound
    assert m.ref_half_range > m.close_bound == pytest.approx(1e-5 + 1e-3 * m.ref_rms)
    assert m.ref_rms == pytest.approx(2.1e-7, rel=0.05)


def test_fp32_outputs_within_the_scale_are_allclose_and_a_1_percent_error_is_not():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 3, (8, 100)).astype(np.float32)  # logits; RMS 3
    act = ref + rng.normal(0, 1e-5, ref.shape).astype(np.float32)  # an FP32 runtime's rounding
    cmp, m = one(ref, act, FP32)
    assert cmp.passed is True and m.decided_by == "allclose" and m.close_bound == pytest.approx(1e-5 + 1e-3 * 3, rel=0.05)
    # 1% of the scale everywhere: never close at FP32; cosine (0.99995) still passes it, so max_abs, the cap on
    # every output, is what rejects it
    act = ref + (0.01 * m.ref_rms * rng.choice([-1, 1], ref.shape)).astype(np.float32)
    cmp, m = one(ref, act, FP32)
    assert m.decided_by == "cosine" and m.cosine == pytest.approx(0.99995, abs=1e-5)
    assert cmp.passed is False and cmp.failures == [f"y: max abs error {m.max_abs:.3g} > 0.01"]


def test_a_genuinely_wrong_output_fails_every_way():
    rng = np.random.default_rng(2)
    ref = rng.normal(0, 1, (4, 10, 32)).astype(np.float32)
    act = ref.copy()
    act[:, :3] *= -1  # a sign error in three channels
    cmp, m = one(ref, act, FP32)
    assert m.decided_by == "cosine" and m.passed is False and m.cosine == pytest.approx(0.4, abs=0.1)
    assert cmp.failures[0].startswith("y: cosine 0.") and "< 0.9999 (and not close: max abs error" in cmp.failures[0]
    assert cmp.failures[-1].startswith("y: max abs error")
    for tol in (FP16, INT8):  # looser precisions reject it too
        assert one(ref, act, tol)[0].passed is False


def test_a_constant_output_is_judged_by_absolute_error_not_by_cosine():
    # cosine is blind to scale: a constant 0.5 against a constant 0.9 has cosine 1.0 and passed every old gate
    ref, act = np.full((4, 8), 0.5, np.float32), np.full((4, 8), 0.9, np.float32)
    old = Tolerance(min_cosine=0.99, min_top1_agreement=0.9)
    assert one(ref, act, old)[0].passed is True and one(ref, act, old)[1].cosine == pytest.approx(1.0)
    for tol in (FP32, FP16, INT8):
        cmp, m = one(ref, act, tol)
        assert cmp.passed is False and m.decided_by == "absolute" and m.ref_rms == pytest.approx(0.5)
    cmp, m = one(ref, ref + np.float32(2e-5), FP32)  # within 1e-5 + 1e-3 * 0.5
    assert cmp.passed is True and m.decided_by == "absolute"


def test_int8_like_noise_is_judged_by_cosine_and_top1_never_by_closeness():
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 2, (200, 10)).astype(np.float32)  # a classifier's logits
    ref[np.arange(200), rng.integers(0, 10, 200)] += 4  # a clear winner per sample
    act = ref + rng.normal(0, 0.1, ref.shape).astype(np.float32)  # INT8-sized error: SQNR 27 dB
    cmp, m = one(ref, act, INT8)
    assert m.decided_by == "cosine" and cmp.passed is True
    assert m.cosine == pytest.approx(0.9991, abs=2e-4) and m.top1_agreement == pytest.approx(0.935)
    assert m.max_abs > m.close_bound  # never close at INT8's own bound (1e-3 + 1e-2 * RMS 2.6)...
    assert one(ref, act, FP32)[1].decided_by == "cosine"  # ...let alone FP32's
    assert one(ref, act, FP32)[0].passed is False  # and FP32's cosine bound rejects it
    # more noise: the INT8 gate still fails it by cosine and top-1, as before the rule
    act = ref + rng.normal(0, 1.5, ref.shape).astype(np.float32)
    cmp, m = one(ref, act, INT8)
    assert m.decided_by == "cosine" and cmp.passed is False
    assert any("top-1 agreement" in f for f in cmp.failures) and "cosine" in cmp.failures[0]


def test_a_small_scale_int8_output_is_not_passed_by_the_absolute_floor():
    # atol is the precision's noise floor, not a free pass: an output of scale 0.05 with 30% errors
    rng = np.random.default_rng(4)
    ref = rng.normal(0, 0.05, (64, 64)).astype(np.float32)
    act = ref + rng.normal(0, 0.015, ref.shape).astype(np.float32)
    cmp, m = one(ref, act, INT8)
    assert m.decided_by == "cosine" and m.max_abs > 0.01 and cmp.passed is False and m.cosine < 0.99


def test_close_passes_a_near_tie_whose_argmax_flips():
    ref = np.array([[2.0, 2.0 + 1e-6, -1.0], [0.5, 3.0, 0.1]], np.float32)
    act = np.array([[2.0 + 2e-6, 2.0 + 1e-6, -1.0], [0.5, 3.0, 0.1]], np.float32)
    cmp, m = one(ref, act, FP32)
    assert m.top1_agreement == 0.5 and m.decided_by == "allclose" and cmp.passed is True


def test_nan_and_inf():
    ref = np.array([[0.0, -np.inf, 1.0, np.nan]], np.float32)
    cmp, m = one(ref, ref.copy(), FP32)  # the same NaN/Inf at the same place match (numpy's equal_nan)
    assert cmp.passed is True and m.finite is False and m.max_abs == 0.0
    act = ref.copy()
    act[0, 3] = 5.0  # the reference's NaN: the old rule computed NaN metrics and passed it
    cmp, m = one(ref, act, FP32)
    assert cmp.passed is False and cmp.failures[0] == "y: the reference has NaN or Inf at 1 of 4 values where this output has other values"
    act = ref.copy()
    act[0, 0] = np.inf
    cmp, _ = one(ref, act, None)  # NaN/Inf of its own fail even an informative comparison
    assert cmp.passed is False and cmp.failures == ["y: contains NaN or Inf (1 of 4 values, where the reference has other values)"]


def test_tolerances_without_closeness_keep_the_old_rule():
    ref = np.zeros((3, 3), np.float32)
    act = ref + np.float32(1e-8)
    cmp, m = one(ref, act, Tolerance(min_cosine=0.9999))
    assert cmp.passed is False and m.decided_by == "cosine"
    assert cmp.failures == ["y: cosine undefined (one side is all zeros; set atol/rtol to judge such an output by "
                            "absolute error)"]
    cmp, m = one(ref, act, Tolerance(min_cosine=0.9999, atol=1e-6))
    assert cmp.passed is True and m.decided_by == "absolute"
    cmp, m = one(ref, act, Tolerance(max_abs=0.0))
    assert cmp.passed is False and m.decided_by == "absolute" and cmp.failures == ["y: max abs error 1e-08 > 0.0"]
    # only a closeness bound: an output that is not close has nothing else to pass by
    ref = np.arange(10, dtype=np.float32)
    cmp, m = one(ref, ref + 0.5, Tolerance(rtol=0.01))
    assert cmp.passed is False and m.decided_by == "allclose" and cmp.failures[0].startswith("y: not close: max abs error 0.5 >")


def test_judge_reproduces_a_verdict_from_the_record_alone():
    ref, act = near_zero_map()
    m = output_metrics(ref, act)
    recorded = m.model_copy()
    assert judge("y", recorded, FP32) == [] and recorded.decided_by == "allclose"
    assert judge("y", m.model_copy(), Tolerance(min_cosine=0.9999))  # the same numbers under the old rule fail


# --- the simplifier guard ------------------------------------------------------------------------------------------


def sigmoid_model(path, exact: bool, k=7.0, b=-20.0):
    """y = sigmoid(k*x + b) over x in [0, 1]: with k=7, b=-20 every output is 2e-9..2.3e-6, a ~0 map.
    exact: written as 1 / (1 + exp(-z)), the form a graph rewrite might produce: the same function, but ONNX
    Runtime's Sigmoid has an absolute precision of about 6e-8 there (it returns 0 below about -17.5)."""
    nodes = [helper.make_node("Mul", ["x", "k"], ["a"]), helper.make_node("Add", ["a", "b"], ["z"])]
    init = [numpy_helper.from_array(np.array(k, np.float32), "k"), numpy_helper.from_array(np.array(b, np.float32), "b")]
    if exact:
        nodes += [helper.make_node("Neg", ["z"], ["n"]), helper.make_node("Exp", ["n"], ["e"]),
                  helper.make_node("Add", ["e", "one"], ["d"]), helper.make_node("Reciprocal", ["d"], ["y"])]
        init.append(numpy_helper.from_array(np.array(1, np.float32), "one"))
    else:
        nodes.append(helper.make_node("Sigmoid", ["z"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 256])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_the_guard_keeps_a_pass_whose_near_zero_output_matches(tmp_path):
    src = tmp_path / "m.onnx"
    sigmoid_model(src, exact=False)
    feeds = {"x": np.random.default_rng(0).uniform(0, 1, (4, 256)).astype(np.float32)}

    def unfuse_sigmoid(s, d):
        sigmoid_model(d, exact=True)
        return {"nodes_before": 3, "nodes_after": 6}

    result = guarded_pass("unfuse", unfuse_sigmoid, src, tmp_path / "o.onnx", feeds, ["y"], FP32)
    assert result.status == "ok" and result.model == tmp_path / "o.onnx"
    m = result.verification[0].outputs["y"]
    assert m.decided_by == "absolute" and m.passed is True
    assert m.cosine == pytest.approx(0.999, abs=5e-4) and m.max_abs == pytest.approx(1.1e-7, rel=0.1)
    # the same pass under the old fp32 default (cosine 0.9999 only): rolled back for a 1e-7 difference
    old = Tolerance(min_cosine=0.9999, max_abs=1e-2, min_top1_agreement=1.0)
    result = guarded_pass("unfuse", unfuse_sigmoid, src, tmp_path / "o2.onnx", feeds, ["y"], old)
    assert result.status == "rolled_back" and "cosine 0.99" in result.findings[0]


def test_the_guard_rolls_back_a_pass_that_breaks_a_near_zero_output(tmp_path):
    src = tmp_path / "m.onnx"
    sigmoid_model(src, exact=False)
    feeds = {"x": np.random.default_rng(0).uniform(0, 1, (4, 256)).astype(np.float32)}

    def shift_bias(s, d):  # the map moves from ~1e-6 to ~1e-3: wrong by a thousand times
        sigmoid_model(d, exact=False, b=-13.0)
        return {}

    result = guarded_pass("shift", shift_bias, src, tmp_path / "o.onnx", feeds, ["y"], FP32)
    assert result.status == "rolled_back" and result.verification[0].outputs["y"].decided_by == "absolute"
    assert "no signal" in result.findings[0] and "max abs error 0.00" in result.findings[0]
    before = ort.InferenceSession(str(src)).run(None, feeds)[0]
    assert float(np.abs(before).max()) < 3e-6  # it really is a ~0 output


# --- the manifest ---------------------------------------------------------------------------------------------------


def manifest_with(cmp) -> dict:
    m = Manifest(tool={"name": "convertctl", "version": "0"}, status="ok", exit_code=0, started_at="t0",
                 finished_at="t1", seconds=1.0, environment={},
                 recipe=RecipeRecord(name="r", path=None, sha256="0" * 64, content={}),
                 stages=[StageRecord(name="optimize", status="ok", seconds=0.1, verification=[cmp])],
                 artifacts=[ArtifactRecord(id="onnxruntime_fp32", runtime="onnxruntime", precision="fp32",
                                           status="ok", verification=[cmp])])
    return json.loads(m.model_dump_json())


def test_the_manifest_records_the_decision_and_older_manifests_still_read(tmp_path):
    from convertctl.ci.diff import diff_manifests, load
    from convertctl.errors import UsageError

    ref, act = near_zero_map()
    data = manifest_with(compare("onnxruntime (source model)", ["y"], [ref], [act], FP32))
    assert SCHEMA_VERSION == data["schema_version"] == "1.4.0"
    out = data["artifacts"][0]["verification"][0]
    assert out["outputs"]["y"]["decided_by"] == "allclose" and out["tolerance"]["atol"] == 1e-5
    (tmp_path / "new.json").write_text(json.dumps(data))
    old = json.loads(json.dumps(data))
    old["schema_version"] = "1.3.0"  # written before the rule: none of its fields
    for c in (old["artifacts"][0]["verification"][0], old["stages"][0]["verification"][0]):
        del c["tolerance"]["atol"], c["tolerance"]["rtol"]
        for o in c["outputs"].values():
            for key in ("ref_rms", "ref_half_range", "close_bound", "decided_by", "passed"):
                del o[key]
    (tmp_path / "old.json").write_text(json.dumps(old))
    manifest, _ = read_manifest(tmp_path / "old.json", "BASE")
    assert manifest.artifacts[0].verification[0].outputs["y"].decided_by is None
    report = diff_manifests(load(tmp_path / "old.json", "BASE")[1], load(tmp_path / "new.json", "NEW")[1])
    assert report.regressions == [] and report.artifacts[0].outputs["y"].cosine.change == pytest.approx(0.0)
    damaged = json.loads(json.dumps(data))
    del damaged["artifacts"][0]["verification"][0]["outputs"]["y"]["decided_by"]  # a 1.4.0 manifest has it
    (tmp_path / "bad.json").write_text(json.dumps(damaged))
    with pytest.raises(UsageError, match="outputs.y.decided_by: Field required"):
        read_manifest(tmp_path / "bad.json", "NEW")


def test_diff_does_not_call_a_cosine_change_on_a_no_signal_output_a_regression():
    from convertctl.ci.diff import Thresholds, compare_artifact

    def artifact(cosine, decided_by):
        out = {"cosine": cosine, "max_abs": 1e-8, "top1_agreement": None, "sqnr_db": None, "decided_by": decided_by}
        return {"id": "ov", "status": "ok", "files": [], "verification": [
            {"against": "onnxruntime", "outputs": {"prob": out}, "passed": True}]}

    th = Thresholds(max_cosine_drop=0.001, max_top1_agreement_drop=0.01, max_accuracy_drop=0.005,
                    max_latency_increase=0.1, source="test")
    _, quiet, _ = compare_artifact(artifact(0.99, "absolute"), artifact(0.2, "absolute"), th, [])
    assert quiet == []  # a map of ~0: its cosine is noise
    _, flagged, _ = compare_artifact(artifact(0.99, "cosine"), artifact(0.2, "cosine"), th, [])
    assert len(flagged) == 1 and "cosine 0.990000 -> 0.200000" in flagged[0]
