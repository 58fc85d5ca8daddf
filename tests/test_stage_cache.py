"""The stage cache: a re-run with nothing changed reuses every stage and says so; a change re-runs exactly the
stages downstream of it; a corrupted entry is detected by its hashes and rebuilt; a run killed halfway leaves
nothing that a later run trusts; two concurrent runs compute each stage once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from .conftest import IMAGES, SMALL_MODELS, load_manifest, run_cli, small_cnn_recipe


def recipe_data(**calibration) -> dict:
    return small_cnn_recipe(
        calibration={"data": str(IMAGES), "num_samples": 16, "preprocess": {"resize": 36, "crop": 32}, **calibration},
        targets=[{"runtime": "onnxruntime", "precision": "fp32"}, {"runtime": "onnxruntime", "precision": "int8"},
                 {"runtime": "openvino", "precision": "fp32"}])


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """A recipe folder and a stage cache of this test's own (conftest turns the cache off elsewhere)."""
    (tmp_path / "models.py").write_text(SMALL_MODELS)
    monkeypatch.setenv("CONVERTCTL_STAGE_CACHE", str(tmp_path / "stages"))
    monkeypatch.setenv("CONVERTCTL_CACHE", str(tmp_path / "cache"))  # the calibration table cache too

    def write(data, name="recipe.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(data, sort_keys=False))
        return tmp_path / name

    return tmp_path, write


def hits(manifest) -> dict[str, bool]:
    out = {s["name"]: s["cache"]["hit"] for s in manifest["stages"] if s.get("cache")}
    out.update({a["id"]: a["cache"]["hit"] for a in manifest["artifacts"] if a.get("cache")})
    return out


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_rerun_reuses_every_stage_and_a_change_reruns_exactly_what_it_affects(cached):
    root, write = cached
    recipe = write(recipe_data())
    assert run_cli("run", recipe, "-o", root / "first").code == 0
    first = load_manifest(root / "first")
    every = {"export", "check", "optimize", "quantize", "onnxruntime_fp32", "onnxruntime_int8", "openvino_fp32"}
    assert hits(first) == dict.fromkeys(every, False)

    res = run_cli("run", recipe, "-o", root / "second")
    assert res.code == 0, res.stderr
    second = load_manifest(root / "second")
    assert hits(second) == dict.fromkeys(every, True)
    assert all(s["findings"][0].startswith("reused from the stage cache (key ") for s in second["stages"])
    for name in ("model.onnx", "quantize/model.qdq_u8s8.onnx", "targets/openvino_fp32/model.xml",
                 "targets/openvino_fp32/model.bin", "targets/onnxruntime_int8/model.onnx", "export/export.log"):
        assert sha(root / "first" / name) == sha(root / "second" / name), name
    first_gate = first["artifacts"][1]["verification"][0]
    assert second["artifacts"][1]["verification"][0] == first_gate  # the record is the computed one

    # one change: the calibration method. Export, check, optimize and the fp32 builds stay reused.
    changed = write(recipe_data(method="percentile"), "changed.yaml")
    assert run_cli("run", changed, "-o", root / "third").code == 0
    third = hits(load_manifest(root / "third"))
    assert third == {"export": True, "check": True, "optimize": True, "quantize": False,
                     "onnxruntime_fp32": True, "onnxruntime_int8": False, "openvino_fp32": True}


@pytest.mark.slow
def test_corrupted_entry_is_detected_by_hash_and_rebuilt(cached):
    root, write = cached
    recipe = write(recipe_data())
    assert run_cli("run", recipe, "-o", root / "a").code == 0
    entries = list((root / "stages" / "optimize").glob("*/*/files/optimize/model.onnx"))
    assert len(entries) == 1
    with open(entries[0], "ab") as f:  # one byte more: the file no longer has the hash the entry recorded
        f.write(b"\0")
    res = run_cli("run", recipe, "-o", root / "b")
    assert res.code == 0, res.stderr
    manifest = load_manifest(root / "b")
    assert hits(manifest)["optimize"] is False and hits(manifest)["export"] is True
    message = next(m for m in manifest["messages"] if "hash check" in m)
    assert message.startswith("cache entry for optimize failed its hash check: recomputed (optimize/model.onnx "
                              "does not match its recorded sha256; entry ")
    # the rebuilt optimize output is the same model, so everything after it is reused again
    assert hits(manifest)["quantize"] is True and sha(root / "a" / "model.onnx") == sha(root / "b" / "model.onnx")


@pytest.mark.slow
def test_a_run_killed_halfway_leaves_nothing_trusted(cached):
    root, write = cached
    recipe = write(recipe_data())
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "convertctl", "run", str(recipe), "-o", str(root / "killed"),
                             "--no-latency"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while not list((root / "stages").glob("export/*/*/entry.json")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its children, in the middle of its next stages
    proc.wait()
    # what a write killed in mid-copy would leave: a temporary folder without entry.json
    half = root / "stages" / "optimize" / "ab" / (".tmp-ab" + "0" * 62 + "-x")
    (half / "files" / "optimize").mkdir(parents=True)
    (half / "files" / "optimize" / "model.onnx").write_bytes(b"half")
    for entry in (root / "stages").glob("*/*/*/entry.json"):  # every entry in place is whole
        meta = json.loads(entry.read_text())
        assert all((entry.parent / "files" / rel).is_file() for rel in meta["files"])
    assert not (root / "killed" / "manifest.json").exists()
    res = run_cli("run", recipe, "-o", root / "after")
    assert res.code == 0, res.stderr
    after = load_manifest(root / "after")
    assert after["status"] == "ok" and hits(after)["export"] is True
    assert all(a["status"] == "ok" for a in after["artifacts"])
    if not all(hits(after).values()):  # a later store cleans what killed stores left
        assert not half.exists()


@pytest.mark.slow
def test_two_concurrent_runs_compute_each_stage_once(cached):
    root, write = cached
    recipe = write(recipe_data())
    runs = [subprocess.Popen([sys.executable, "-m", "convertctl", "run", str(recipe), "-o", str(root / f"c{i}"),
                              "--no-latency", "-q"], env=dict(os.environ), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    for proc in runs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    one, two = hits(load_manifest(root / "c1")), hits(load_manifest(root / "c2"))
    assert set(one) == set(two)
    for name in one:  # the lock: exactly one of the two computed it, the other reused it
        assert sorted([one[name], two[name]]) == [False, True], name


@pytest.mark.slow
def test_cache_folder_flag_and_no_cache(cached):
    root, write = cached
    recipe = write(small_cnn_recipe(targets=[{"runtime": "onnxruntime"}]))
    res = run_cli("run", recipe, "-o", root / "x", "--cache-dir", root / "elsewhere")
    assert res.code == 0, res.stderr
    assert list((root / "elsewhere").glob("export/*/*/entry.json")) and not (root / "stages").exists()
    res = run_cli("run", recipe, "-o", root / "y", "--no-cache")
    assert res.code == 0, res.stderr
    assert hits(load_manifest(root / "y")) == {}  # computed, and the records say the cache was not used
    res = run_cli("run", recipe, "--no-cache", "--cache-dir", root / "z")
    assert res.code == 2 and "contradict" in res.stderr
