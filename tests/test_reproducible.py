"""Same recipe, same inputs, same bytes: two runs (each with a cache of its own, so nothing is reused) give
byte-identical ONNX, Q/DQ and FP16 ONNX, OpenVINO IR (FP32 and NNCF INT8) and calibration tables. Timings and
timestamps live in the manifest and the reports only. Also: the environment fingerprint, and the CI job page."""

from __future__ import annotations

import hashlib
import re

import pytest

from .conftest import IMAGES, load_manifest, run_cli, small_cnn_recipe

ARTIFACTS = ["model.onnx", "export/model.onnx", "optimize/model.onnx", "samples.npz",
             "quantize/calibration.json", "quantize/model.qdq_u8s8.onnx", "quantize/model.fp16.onnx",
             "targets/onnxruntime_int8/model.onnx", "targets/onnxruntime_fp16/model.onnx",
             "targets/openvino_fp32/model.xml", "targets/openvino_fp32/model.bin",
             "targets/openvino_int8/model.xml", "targets/openvino_int8/model.bin"]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    from .conftest import SMALL_MODELS

    (root / "models.py").write_text(SMALL_MODELS)
    import yaml

    recipe = small_cnn_recipe(
        calibration={"data": str(IMAGES), "num_samples": 16, "preprocess": {"resize": 36, "crop": 32}},
        targets=[{"runtime": "onnxruntime", "precision": "int8"}, {"runtime": "onnxruntime", "precision": "fp16"},
                 {"runtime": "openvino", "precision": "fp32"},
                 # about bytes, not accuracy: NNCF's INT8 of this CNN reaches cosine 0.989 on a CPU without VNNI
                 {"runtime": "openvino", "precision": "int8", "tolerance": {"min_cosine": 0.98}}])
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    outs = []
    for i in (1, 2):
        mp = pytest.MonkeyPatch()
        mp.setenv("CONVERTCTL_CACHE", str(root / f"cache{i}"))  # a calibration table of its own: computed twice
        mp.setenv("GITHUB_STEP_SUMMARY", str(root / "step_summary.md"))
        try:
            res = run_cli("run", root / "recipe.yaml", "-o", root / f"out{i}")
        finally:
            mp.undo()
        assert res.code == 0, res.stderr
        outs.append(root / f"out{i}")
    return root, outs


@pytest.mark.slow
def test_artifacts_are_byte_identical_across_runs(two_runs):
    _, (a, b) = two_runs
    for name in ARTIFACTS:
        assert (a / name).is_file(), name
        assert sha(a / name) == sha(b / name), f"{name} differs between two runs of the same recipe"
    # the manifest records the same hashes, and differs only where time is involved
    files = {f["path"]: f["sha256"] for f in load_manifest(a)["files"]}
    assert files["model.onnx"] == sha(b / "model.onnx")
    assert not load_manifest(a)["stages"][3]["details"]["calibration"]["reused"]  # really computed twice


@pytest.mark.slow
def test_no_staging_path_or_timestamp_inside_artifacts(two_runs):
    _, (a, _) = two_runs
    for name in ("targets/openvino_fp32/model.xml", "targets/openvino_int8/model.xml", "check/check.json"):
        text = (a / name).read_text(errors="replace")
        assert ".staging-" not in text and not re.search(r"20\d\d-\d\d-\d\dT\d\d:\d\d", text), name


@pytest.mark.slow
def test_environment_fingerprint(two_runs):
    _, (a, b) = two_runs
    env_a, env_b = load_manifest(a)["environment"], load_manifest(b)["environment"]
    assert re.fullmatch(r"[0-9a-f]{16}", env_a["fingerprint"]) and env_a["fingerprint"] == env_b["fingerprint"]
    assert env_a["cpu"] and isinstance(env_a["cpu_flags"], list) and isinstance(env_a["gpus"], list)
    assert {"onnxruntime", "openvino", "torch", "onnx"} <= set(env_a["packages"])


@pytest.mark.slow
def test_github_step_summary_gets_each_runs_summary(two_runs):
    root, (a, _) = two_runs
    page = (root / "step_summary.md").read_text()
    summary = (a / "summary.md").read_text().rstrip()
    assert page.count("small_cnn") >= 2 and summary.splitlines()[0] in page
    assert page.count(summary.splitlines()[0]) == 2  # appended by both runs, not overwritten
