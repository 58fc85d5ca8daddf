"""`convertctl diff` on real manifests of one real run, with regressions made up by editing copies of its JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from convertctl.errors import EXIT_ACCURACY_GATE, EXIT_OK, EXIT_PERF_REGRESSION, EXIT_USAGE
from convertctl.report.environment import fingerprint
from convertctl.report.manifest import SCHEMA_VERSION
from convertctl.report.markdown import fmt_ms

from .conftest import SMALL_MODELS, load_manifest, run_cli, small_cnn_recipe

IDS = ["onnxruntime_fp32", "openvino_fp32"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """One real timed run of the small CNN (onnxruntime fp32, openvino fp32), shared by every test."""
    folder = tmp_path_factory.mktemp("diff")
    (folder / "models.py").write_text(SMALL_MODELS)
    recipe = small_cnn_recipe(targets=[{"runtime": "onnxruntime", "precision": "fp32"},
                                       {"runtime": "openvino", "precision": "fp32"}],
                              verify={"latency": {"runs": 20, "warmup": 3}})
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = run_cli("run", folder / "recipe.yaml", latency=True)
    assert res.code == 0, res.stderr
    return folder / "out"


@pytest.fixture
def base(run_folder) -> dict:
    return load_manifest(run_folder)


def art(m: dict, aid: str) -> dict:
    return next(a for a in m["artifacts"] if a["id"] == aid)


def gate_output(m: dict, aid: str) -> tuple[str, dict]:
    """(name, metrics) of the first output of an artifact's accuracy gate."""
    outputs = art(m, aid)["verification"][0]["outputs"]
    name = next(iter(outputs))
    return name, outputs[name]


def steady(m: dict, spread: float = 0.05) -> dict:
    """p90 = p50 * (1 + spread) everywhere, so the noise diff sees is known, whatever this machine did."""
    for lat in [a["latency"] for a in m["artifacts"]] + [m["latency_baseline"]]:
        lat["p90_ms"] = lat["p50_ms"] * (1 + spread)
    return m


def scale(m: dict, aid: str, factor: float) -> None:
    lat = art(m, aid)["latency"]
    for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms"):
        lat[key] *= factor


def diff(tmp_path: Path, base: dict | Path, new: dict | Path, *flags):
    """Run `convertctl diff` on two manifests (dicts are written to files first)."""
    paths = []
    for name, m in (("base.json", base), ("new.json", new)):
        if isinstance(m, dict):
            (tmp_path / name).write_text(json.dumps(m))
            m = tmp_path / name
        paths.append(m)
    return run_cli("diff", *paths, *flags)


def regression_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("REGRESSION:")]


@pytest.mark.slow
def test_the_real_run_has_what_diff_reads(base):
    assert base["schema_version"] == SCHEMA_VERSION and [a["id"] for a in base["artifacts"]] == IDS
    for aid in IDS:
        a = art(base, aid)
        assert a["status"] == "ok" and a["latency"]["status"] == "measured" and a["latency"]["p50_ms"] > 0
    assert base["latency_baseline"]["status"] == "measured"
    check = next(s for s in base["stages"] if s["name"] == "check")
    assert check["details"]["op_counts"]["Conv"] == 2
    assert base["recipe"]["content"]["verify"]["regression"] == {
        "max_cosine_drop": 0.001, "max_top1_agreement_drop": 0.01, "max_accuracy_drop": 0.005,
        "max_latency_increase": 0.1}


@pytest.mark.slow
def test_identical_runs_exit_0(run_folder, base, tmp_path):
    res = diff(tmp_path, run_folder, base, "--json")  # BASE as a run folder, NEW as a file
    assert res.code == EXIT_OK, res.stderr
    report = res.json()
    assert report["exit_code"] == 0 and report["regressions"] == [] and report["warnings"] == []
    assert report["base"]["path"] == str(run_folder / "manifest.json")
    assert report["recipe"] == {"name": "small_cnn", "base_sha256": base["recipe"]["sha256"],
                                "new_sha256": base["recipe"]["sha256"], "same": True}
    assert report["thresholds"] == {"max_cosine_drop": 0.001, "max_top1_agreement_drop": 0.01,
                                    "max_accuracy_drop": 0.005, "max_latency_increase": 0.1,
                                    "source": "NEW's recipe verify.regression"}
    assert [a["id"] for a in report["artifacts"]] == IDS and report["added"] == report["removed"] == []
    for a in report["artifacts"]:
        assert a["status_base"] == a["status_new"] == "ok" and a["gate"] == "pytorch" and a["regressions"] == []
        (out,) = a["outputs"].values()
        assert out["cosine"]["change"] == 0.0 and out["top1_agreement"]["change"] == 0.0 and not out["regression"]
        assert a["latency"]["change"] == 0.0 and a["latency"]["regression"] is False
        size = sum(f["bytes"] for f in art(base, a["id"])["files"])
        assert a["size"] == {"base_bytes": size, "new_bytes": size, "change": 0} and size > 1000
        assert a["accuracy"] is None
    assert report["latency_baseline"]["change"] == 0.0 and report["latency_baseline"]["allowed"] is None
    assert report["ops"] == {"added": {}, "removed": {}, "changed": {}}
    assert report["packages"] == {} and report["environment_differences"] == {}
    assert "no regression" in res.stderr and not regression_lines(res.stderr)
    assert "onnxruntime_fp32" in res.stderr and "openvino_fp32" in res.stderr  # the table


@pytest.mark.slow
def test_p50_doubled_is_a_latency_regression(base, tmp_path):
    base = steady(base)
    new = copy.deepcopy(base)
    scale(new, "onnxruntime_fp32", 2.0)
    res = diff(tmp_path, base, new)
    assert res.code == EXIT_PERF_REGRESSION, res.stderr
    p50 = art(base, "onnxruntime_fp32")["latency"]["p50_ms"]
    assert regression_lines(res.stderr) == [
        f"REGRESSION: onnxruntime_fp32: p50 latency {fmt_ms(p50)} ms -> {fmt_ms(2 * p50)} ms (+100.0%), more than "
        "the allowed 10.0% plus the runs' own noise 5.0% (= 15.0%)"]
    assert "1 regression: exit 5" in res.stderr
    report = diff(tmp_path, base, new, "--json").json()
    lat = {a["id"]: a["latency"] for a in report["artifacts"]}
    assert lat["onnxruntime_fp32"]["change"] == pytest.approx(1.0)
    assert lat["onnxruntime_fp32"]["noise"] == pytest.approx(0.05)
    assert lat["onnxruntime_fp32"]["allowed"] == pytest.approx(0.15)
    assert lat["onnxruntime_fp32"]["regression"] is True and lat["openvino_fp32"]["regression"] is False


@pytest.mark.slow
def test_cosine_drop_is_an_accuracy_regression(base, tmp_path):
    new = copy.deepcopy(base)
    name, metrics = gate_output(new, "openvino_fp32")
    cos = metrics["cosine"]
    metrics["cosine"] = cos - 0.01
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_ACCURACY_GATE, res.stderr
    line = f"openvino_fp32: output '{name}': cosine {cos:.6f} -> {cos - 0.01:.6f} (drop 0.01 > 0.001)"
    assert regression_lines(res.stderr) == [f"REGRESSION: {line}"]
    report = res.json()
    assert report["regressions"] == [line] and report["exit_code"] == EXIT_ACCURACY_GATE
    out = {a["id"]: a for a in report["artifacts"]}["openvino_fp32"]["outputs"][name]
    assert out["cosine"]["change"] == pytest.approx(-0.01) and out["regression"] is True


@pytest.mark.slow
def test_top1_agreement_drop_is_an_accuracy_regression(base, tmp_path):
    new = copy.deepcopy(base)
    name, metrics = gate_output(new, "onnxruntime_fp32")
    metrics["top1_agreement"] = 0.75
    res = diff(tmp_path, base, new)
    assert res.code == EXIT_ACCURACY_GATE
    assert regression_lines(res.stderr) == [
        f"REGRESSION: onnxruntime_fp32: output '{name}': top-1 agreement 1.000 -> 0.750 (drop 0.25 > 0.01)"]
    assert diff(tmp_path, base, new, "--max-top1-drop", "0.3").code == EXIT_OK


@pytest.mark.slow
def test_accuracy_and_latency_regressions_exit_4(base, tmp_path):
    base = steady(base)
    new = copy.deepcopy(base)
    scale(new, "openvino_fp32", 2.0)
    gate_output(new, "onnxruntime_fp32")[1]["cosine"] -= 0.01
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_ACCURACY_GATE  # accuracy takes precedence over latency
    report = res.json()
    assert report["exit_code"] == EXIT_ACCURACY_GATE and len(report["regressions"]) == 2
    assert report["regressions"][0].startswith("onnxruntime_fp32: output ")  # accuracy first
    assert report["regressions"][1].startswith("openvino_fp32: p50 latency ")
    assert [line.removeprefix("REGRESSION: ") for line in regression_lines(res.stderr)] == report["regressions"]
    assert "2 regressions: exit 4" in res.stderr


@pytest.mark.slow
def test_increase_within_the_runs_noise_is_not_a_regression(base, tmp_path):
    base = steady(base)
    new = steady(copy.deepcopy(base), spread=0.3)  # NEW's own p90 sits 30% above its p50
    scale(new, "onnxruntime_fp32", 1.2)  # +20%: over the 10% threshold, under 10% + 30% noise
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_OK, res.stderr
    lat = {a["id"]: a for a in res.json()["artifacts"]}["onnxruntime_fp32"]["latency"]
    assert lat["change"] == pytest.approx(0.2) and lat["noise"] == pytest.approx(0.3)
    assert lat["allowed"] == pytest.approx(0.4) and lat["regression"] is False
    # the same +20% with quiet runs is a regression
    new = steady(copy.deepcopy(base), spread=0.0)
    base = steady(base, spread=0.0)
    scale(new, "onnxruntime_fp32", 1.2)
    res = diff(tmp_path, base, new)
    assert res.code == EXIT_PERF_REGRESSION
    assert "(+20.0%), more than the allowed 10.0% plus the runs' own noise 0.0% (= 10.0%)" in res.stderr


@pytest.mark.slow
def test_flags_override_the_thresholds(base, tmp_path):
    base = steady(base)
    new = copy.deepcopy(base)
    scale(new, "onnxruntime_fp32", 2.0)
    res = diff(tmp_path, base, new, "--max-latency-increase", "1.5", "--json")
    assert res.code == EXIT_OK, res.stderr
    th = res.json()["thresholds"]
    assert th["max_latency_increase"] == 1.5 and th["max_cosine_drop"] == 0.001
    assert th["source"] == "NEW's recipe verify.regression; --max-latency-increase"

    new = copy.deepcopy(base)
    gate_output(new, "openvino_fp32")[1]["cosine"] -= 0.01
    assert diff(tmp_path, base, new, "--max-cosine-drop", "0.02").code == EXIT_OK
    new = copy.deepcopy(base)
    gate_output(new, "openvino_fp32")[1]["cosine"] -= 0.0005  # within the default 0.001
    assert diff(tmp_path, base, new).code == EXIT_OK
    res = diff(tmp_path, base, new, "--max-cosine-drop", "0.0001")
    assert res.code == EXIT_ACCURACY_GATE and "(drop 0.0005 > 0.0001)" in res.stderr


@pytest.mark.slow
def test_thresholds_come_from_the_recipes_else_the_defaults(base, tmp_path):
    base = steady(base)
    new = copy.deepcopy(base)
    scale(new, "onnxruntime_fp32", 2.0)
    new["recipe"]["content"]["verify"]["regression"]["max_latency_increase"] = 1.5
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_OK and res.json()["thresholds"]["max_latency_increase"] == 1.5
    # a flag beats the recipe
    assert diff(tmp_path, base, new, "--max-latency-increase", "0.5").code == EXIT_PERF_REGRESSION
    # NEW without verify.regression (an older convertctl): BASE's
    base["recipe"]["content"]["verify"]["regression"]["max_latency_increase"] = 2.0
    del new["recipe"]["content"]["verify"]["regression"]
    th = diff(tmp_path, base, new, "--json").json()["thresholds"]
    assert th["max_latency_increase"] == 2.0 and th["source"] == "BASE's recipe verify.regression"
    # neither: the defaults
    del base["recipe"]["content"]["verify"]["regression"]
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_PERF_REGRESSION
    assert res.json()["thresholds"] == {"max_cosine_drop": 0.001, "max_top1_agreement_drop": 0.01,
                                        "max_accuracy_drop": 0.005, "max_latency_increase": 0.1,
                                        "source": "defaults"}


@pytest.mark.slow
def test_different_recipes_are_refused(base, tmp_path):
    new = copy.deepcopy(base)
    new["recipe"]["name"] = "other"
    res = diff(tmp_path, base, new)
    assert res.code == EXIT_USAGE
    assert ("error: BASE is recipe 'small_cnn', NEW is recipe 'other': diff compares two runs of the same recipe"
            in res.stderr)
    assert "Traceback" not in res.stderr
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_USAGE and res.json()["exit_code"] == EXIT_USAGE


@pytest.mark.slow
def test_same_recipe_changed_is_noted(base, tmp_path):
    new = copy.deepcopy(base)
    new["recipe"]["sha256"] = "f" * 64
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_OK
    report = res.json()
    assert report["recipe"]["same"] is False and report["recipe"]["new_sha256"] == "f" * 64
    assert report["notes"] == [f"the recipe changed between the runs (sha256 {base['recipe']['sha256'][:12]} -> "
                               f"{'f' * 12})"]
    assert "note: the recipe changed between the runs" in res.stderr


@pytest.mark.slow
def test_a_major_schema_version_it_cannot_read_is_refused(base, tmp_path):
    new = copy.deepcopy(base)
    new["schema_version"] = "2.0.0"
    res = diff(tmp_path, base, new)
    assert res.code == EXIT_USAGE
    assert f"error: NEW {tmp_path / 'new.json'}: manifest schema 2.0.0 is not supported: this convertctl reads 1.x" \
        in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_bad_files_are_usage_errors(base, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not json\n")
    res = run_cli("diff", bad, bad)
    assert res.code == EXIT_USAGE and f"error: BASE {bad}: not JSON (Expecting value: line 1 column 1" in res.stderr
    (tmp_path / "list.json").write_text("[1, 2]")
    res = run_cli("diff", tmp_path / "list.json", tmp_path / "list.json")
    assert res.code == EXIT_USAGE and "not a convertctl manifest (no schema_version)" in res.stderr
    res = run_cli("diff", tmp_path / "missing.json", bad)
    assert res.code == EXIT_USAGE and f"error: BASE {tmp_path / 'missing.json'}: no such file" in res.stderr
    res = run_cli("diff", tmp_path, bad)  # a folder without a manifest
    assert res.code == EXIT_USAGE and f"error: BASE {tmp_path}: no manifest.json in this folder" in res.stderr
    broken = copy.deepcopy(base)
    del broken["artifacts"][0]["status"]
    res = diff(tmp_path, base, broken)
    assert res.code == EXIT_USAGE and "not a valid manifest: artifacts.0.status: Field required" in res.stderr
    assert "Traceback" not in res.stderr
    # a recipe's thresholds are checked too
    bad = copy.deepcopy(base)
    bad["recipe"]["content"]["verify"]["regression"]["max_cosine_drop"] = -1
    res = diff(tmp_path, base, bad)
    assert res.code == EXIT_USAGE
    assert "error: NEW's recipe verify.regression: max_cosine_drop: Input should be greater than or equal to 0" \
        in res.stderr


@pytest.mark.slow
def test_another_environment_is_a_warning_not_a_failure(base, tmp_path):
    # Both environments are written here, BASE's too, each with the fingerprint convertctl would record for it:
    # whatever CPU flags and GPUs the machine running the test has (AMX or not, AVX-512 or not, a GPU or none),
    # BASE and NEW differ by exactly what this test says.
    base = copy.deepcopy(base)
    base["environment"].update(cpu="Made-up CPU 1000", cpu_flags=["avx2", "avx512_vnni", "avx512f"], gpus=[])
    new = copy.deepcopy(base)
    gpu = {"name": "Made-up GPU", "driver": "1.0", "compute_capability": "9.0"}
    new["environment"].update(cpu="Made-up CPU 9000", cpu_flags=["amx_tile", "avx2", "avx512f"], gpus=[gpu])
    for m in (base, new):
        m["environment"]["fingerprint"] = fingerprint(m["environment"])
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_OK, res.stderr
    warning = ("the runs come from different environments (cpu: Made-up CPU 1000 -> Made-up CPU 9000, "
               "cpu_flags: +amx_tile -avx512_vnni, gpus: +Made-up GPU): latency deltas compare different machines")
    assert f"WARNING: {warning}" in res.stderr.splitlines()
    report = res.json()
    assert report["warnings"] == [warning] and report["regressions"] == []
    assert report["environment_differences"] == {
        "cpu": ["Made-up CPU 1000", "Made-up CPU 9000"],
        "cpu_flags": [["avx2", "avx512_vnni", "avx512f"], ["amx_tile", "avx2", "avx512f"]],
        "gpus": [[], [gpu]],
        "fingerprint": [base["environment"]["fingerprint"], new["environment"]["fingerprint"]]}
    assert base["environment"]["fingerprint"] != new["environment"]["fingerprint"]


@pytest.mark.slow
def test_tool_versions_are_listed_and_are_not_another_machine(base, tmp_path):
    base = copy.deepcopy(base)
    base["environment"]["fingerprint"] = "0" * 16  # as a run with the environment fingerprint records it
    new = copy.deepcopy(base)
    new["environment"]["packages"]["onnxruntime"] = "9.9.9"
    del new["environment"]["packages"]["numpy"]
    new["environment"]["fingerprint"] = "1" * 16  # it hashes the package versions too
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_OK, res.stderr
    report = res.json()
    assert report["packages"] == {"onnxruntime": [base["environment"]["packages"]["onnxruntime"], "9.9.9"],
                                  "numpy": [base["environment"]["packages"]["numpy"], None]}
    assert report["environment_differences"] == {"fingerprint": ["0" * 16, "1" * 16]}
    assert report["warnings"] == [] and "WARNING" not in res.stderr
    assert f"packages: onnxruntime {base['environment']['packages']['onnxruntime']} -> 9.9.9, numpy " in res.stderr
    # the same packages and another fingerprint: something this convertctl does not record differs
    new["environment"]["packages"] = base["environment"]["packages"]
    res = diff(tmp_path, base, new, "--json")
    assert res.json()["warnings"] == [f"the runs come from different environments (fingerprint: {'0' * 16} -> "
                                      f"{'1' * 16}): latency deltas compare different machines"]


@pytest.mark.slow
def test_operator_changes_are_listed(base, tmp_path):
    new = copy.deepcopy(base)
    ops = next(s for s in new["stages"] if s["name"] == "check")["details"]["op_counts"]
    assert ops.pop("Clip") == 1
    ops["Relu"] = 2
    ops["Sigmoid"] = 1
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_OK
    assert res.json()["ops"] == {"added": {"Sigmoid": 1}, "removed": {"Clip": 1}, "changed": {"Relu": [1, 2]}}
    assert "operators: +Sigmoid x1, -Clip x1, Relu 1 -> 2" in res.stderr


@pytest.mark.slow
def test_status_changes(base, tmp_path):
    new = copy.deepcopy(base)
    a = art(new, "openvino_fp32")
    a["status"], a["reason"] = "failed", "accuracy gate failed: linear: cosine 0.99 < 0.9999"
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_ACCURACY_GATE
    assert regression_lines(res.stderr) == [
        "REGRESSION: openvino_fp32: status ok -> failed (accuracy gate failed: linear: cosine 0.99 < 0.9999)"]
    assert {a["id"]: a["status_new"] for a in res.json()["artifacts"]} == {"onnxruntime_fp32": "ok",
                                                                          "openvino_fp32": "failed"}
    # skipped (runtime not installed) is reported, not a regression
    reason = "skipped: openvino not installed (pip install 'convertctl[openvino]')"
    a.update(status="skipped", reason=reason, files=[], verification=[], latency=None)
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_OK, res.stderr
    report = res.json()
    assert report["warnings"] == [f"openvino_fp32: status ok -> skipped ({reason}): not compared"]
    skipped = {a["id"]: a for a in report["artifacts"]}["openvino_fp32"]
    assert skipped["outputs"] == {} and skipped["size"]["new_bytes"] == 0 and skipped["size"]["change"] < 0
    assert skipped["latency"]["note"] == "not compared: BASE measured, NEW not timed"


@pytest.mark.slow
def test_labelled_accuracy_drop(base, tmp_path):
    base = copy.deepcopy(base)
    art(base, "onnxruntime_fp32")["accuracy"] = {"top1": 0.95, "top5": 1.0, "reference_top1": 0.95,
                                                 "reference_top5": 1.0, "top1_drop": 0.0, "samples": 40}
    new = copy.deepcopy(base)
    art(new, "onnxruntime_fp32")["accuracy"]["top1"] = 0.925
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_ACCURACY_GATE
    assert regression_lines(res.stderr) == [
        "REGRESSION: onnxruntime_fp32: labelled top-1 accuracy 0.9500 -> 0.9250 (drop 2.50 points > 0.50)"]
    acc = {a["id"]: a for a in res.json()["artifacts"]}["onnxruntime_fp32"]["accuracy"]
    assert acc["base_top1"] == 0.95 and acc["new_top1"] == 0.925 and acc["change"] == pytest.approx(-0.025)
    assert diff(tmp_path, base, new, "--max-accuracy-drop", "0.03").code == EXIT_OK


@pytest.mark.slow
def test_added_and_removed_artifacts_are_listed_not_failed(base, tmp_path):
    new = copy.deepcopy(base)
    removed = new["artifacts"].pop(1)
    added = copy.deepcopy(art(new, "onnxruntime_fp32"))
    added["id"] = "onnxruntime_fast"
    new["artifacts"].append(added)
    res = diff(tmp_path, base, new, "--json")
    assert res.code == EXIT_OK, res.stderr
    report = res.json()
    assert report["removed"] == [removed["id"]] == ["openvino_fp32"] and report["added"] == ["onnxruntime_fast"]
    assert [a["id"] for a in report["artifacts"]] == ["onnxruntime_fp32"]
    assert report["warnings"] == ["artifact openvino_fp32 is in BASE but not in NEW"]
    assert "WARNING: artifact openvino_fp32 is in BASE but not in NEW" in res.stderr


@pytest.mark.slow
def test_an_older_manifest_without_latency_reads(base, tmp_path):
    old = copy.deepcopy(base)
    old["schema_version"] = "1.1.0"
    del old["latency_baseline"]
    del old["recipe"]["content"]["verify"]["regression"]
    for a in old["artifacts"]:
        del a["latency"]
    res = diff(tmp_path, old, base, "--json")
    assert res.code == EXIT_OK, res.stderr
    report = res.json()
    assert report["base"]["schema_version"] == "1.1.0"
    assert report["latency_baseline"]["change"] is None
    assert [a["latency"]["note"] for a in report["artifacts"]] == ["not compared: BASE not timed, NEW measured"] * 2


@pytest.mark.parametrize("case", ["identical", "latency", "accuracy"])
@pytest.mark.slow
def test_json_exit_code_is_the_process_exit_code(base, tmp_path, case):
    base = steady(base)
    new = copy.deepcopy(base)
    if case == "latency":
        scale(new, "openvino_fp32", 3.0)
    elif case == "accuracy":
        gate_output(new, "onnxruntime_fp32")[1]["cosine"] -= 0.5
    res = diff(tmp_path, base, new, "--json")
    assert res.code == {"identical": 0, "latency": 5, "accuracy": 4}[case]
    assert res.json()["exit_code"] == res.code


@pytest.mark.slow
def test_markdown_output(base, tmp_path):
    base = steady(base)
    new = copy.deepcopy(base)
    scale(new, "onnxruntime_fp32", 2.0)
    md = tmp_path / "ci" / "diff.md"
    md.parent.mkdir()
    res = diff(tmp_path, base, new, "-o", md)
    assert res.code == EXIT_PERF_REGRESSION
    text = md.read_text()
    assert text.startswith("# convertctl diff: small_cnn\n\n**1 regression: exit 5**")
    for aid in IDS:
        assert f"| {aid} | ok |" in text
    assert "## Regressions" in text and "- onnxruntime_fp32: p50 latency " in text and "(+100.0%)" in text
    res = diff(tmp_path, base, new, "-o", tmp_path / "no" / "such" / "dir" / "x.md")
    assert res.code == EXIT_USAGE and "error: cannot write " in res.stderr
