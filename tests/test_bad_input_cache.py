"""Issue 12, the stage cache and the calibration-table cache under bad input: an entry swapped for another
model's, a tampered or truncated entry, an entry that points outside its folder, a temporary folder left by a
killed store, a truncated calibration table or its metadata, a cache folder that cannot be a folder. Each is
found, said in the manifest, and recomputed: never exit 1, never a wrong artifact shipped as `ok`. And the
artifacts are the same bytes whether each stage was computed or restored.

One cold run with a cache is shared (read-only: every test works on a copy of its cache folders)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from convertctl.stage_cache import TMP, StageCache, seal

from .conftest import IMAGES, SMALL_MODELS, load_manifest, run_cli, small_cnn_recipe

RECIPE = small_cnn_recipe(
    calibration={"data": str(IMAGES), "num_samples": 16, "preprocess": {"resize": 36, "crop": 32}},
    # this test is about bytes, not accuracy: NNCF's INT8 reaches cosine 0.989 on a CPU without VNNI
    targets=[{"runtime": "onnxruntime", "precision": "int8"}, {"runtime": "openvino", "precision": "fp32"},
             {"runtime": "openvino", "precision": "int8", "tolerance": {"min_cosine": 0.98}}])
STAGES = ["export", "check", "optimize", "quantize", "onnxruntime_int8", "openvino_fp32", "openvino_int8"]
# every artifact file (not the logs, timings and reports of a run)
COMPARED = ["model.onnx", "samples.npz", "export/model.onnx", "export/reference.npz", "optimize/model.onnx",
            "quantize/calibration.json", "quantize/calibration.meta.json", "quantize/model.qdq_u8s8.onnx",
            "quantize/layer_errors.json", "quantize/sensitivity.json", "quantize/histograms.json",
            "targets/onnxruntime_int8/model.onnx", "targets/onnxruntime_int8/session.json",
            "targets/openvino_fp32/model.xml", "targets/openvino_fp32/model.bin", "targets/openvino_fp32/runtime.json",
            "targets/openvino_int8/model.xml", "targets/openvino_int8/model.bin", "targets/openvino_int8/runtime.json"]
CALIB_META = "small_cnn.calibration.meta.json"
CALIB_TABLE = "small_cnn.calibration.json"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(recipe, out, stages, cache, *extra):
    """The real CLI with this stage cache folder and this calibration cache ($CONVERTCTL_CACHE)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CONVERTCTL_CACHE", str(cache))
    try:
        return run_cli("run", recipe, "-o", out, *(["--cache-dir", stages] if stages else []), *extra)
    finally:
        mp.undo()


def hits(manifest) -> dict[str, bool]:
    out = {s["name"]: s["cache"]["hit"] for s in manifest["stages"] if s.get("cache")}
    out.update({a["id"]: a["cache"]["hit"] for a in manifest["artifacts"] if a.get("cache")})
    return out


def entry(stages, stage: str):
    """The one entry folder of `stage` (`build/<target id>` for a build)."""
    found = [e.parent for e in stages.glob(f"{stage.split('/')[0]}/*/*/entry.json")
             if json.loads(e.read_text())["stage"] == stage]
    assert len(found) == 1, (stage, found)
    return found[0]


def message(manifest, start: str) -> str:
    found = [m for m in manifest["messages"] if m.startswith(start)]
    assert len(found) == 1, (start, manifest["messages"])
    return found[0]


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """A cold run: every stage computed and stored in a fresh cache."""
    root = tmp_path_factory.mktemp("badcache")
    (root / "models.py").write_text(SMALL_MODELS)
    (root / "recipe.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    res = run(root / "recipe.yaml", root / "cold", root / "stages", root / "cache")
    assert res.code == 0, res.stderr
    assert hits(load_manifest(root / "cold")) == dict.fromkeys(STAGES, False)
    return root


def clone(cold, tmp_path):
    """This test's own copy of the cold run's stage cache and calibration cache."""
    shutil.copytree(cold / "stages", tmp_path / "stages", ignore=shutil.ignore_patterns("*.lock"))
    shutil.copytree(cold / "cache", tmp_path / "cache", ignore=shutil.ignore_patterns("*.lock"))
    return tmp_path / "stages", tmp_path / "cache"


def same_artifacts(a, b):
    different = [name for name in COMPARED if sha(a / name) != sha(b / name)]
    assert not different, f"{different} differ between {a.name} and {b.name}"
    for folder in ("targets", "quantize", "optimize"):
        assert sorted(p.relative_to(a) for p in (a / folder).rglob("*")) == \
            sorted(p.relative_to(b) for p in (b / folder).rglob("*")), folder


# -- a damaged cache: six kinds of bad entry in one run ----------------------------------------------------------
def _swap_in_another_model(stages, tmp):
    """optimize: an entry stored by the real store code for another key (a model with other weights), with an
    entry.json that matches its files, moved in under this key."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    folder = entry(stages, "optimize")
    meta = json.loads((folder / "entry.json").read_text())
    model = onnx.load(str(folder / "files" / "optimize" / "model.onnx"))
    first = model.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) * np.float32(2), first.name))
    onnx.save(model, str(tmp / "other.onnx"))
    files = {rel: folder / "files" / rel for rel in meta["files"]}
    files["optimize/model.onnx"] = tmp / "other.onnx"
    other_key = hashlib.sha256(b"another model").hexdigest()
    other, _ = StageCache(tmp / "other_cache").put("optimize", other_key, files, meta["state"])
    shutil.rmtree(folder)
    shutil.move(other.folder, folder)
    return sha(tmp / "other.onnx")


def _forge(stages):
    """build/onnxruntime_int8: the model replaced by another (the FP32 one) and its hash in entry.json updated."""
    folder = entry(stages, "build/onnxruntime_int8")
    meta = json.loads((folder / "entry.json").read_text())
    rel = "targets/onnxruntime_int8/model.onnx"
    shutil.copyfile(stages.parent / "fp32.onnx", folder / "files" / rel)
    meta["files"][rel] = sha(folder / "files" / rel)
    (folder / "entry.json").write_text(json.dumps(meta))


def _escape(stages):
    """build/openvino_fp32: an entry whose author knew the seal's recipe, listing a file outside the output."""
    folder = entry(stages, "build/openvino_fp32")
    meta = json.loads((folder / "entry.json").read_text())
    rel = "targets/../../escaped.txt"
    (folder / "escaped.txt").write_text("written outside the output folder")
    meta["files"][rel] = sha(folder / "escaped.txt")
    meta["seal"] = seal(meta["stage"], meta["key"], meta["files"], meta["state"])
    (folder / "entry.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def damaged(cold, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("damaged")
    stages, cache = clone(cold, tmp)
    shutil.copyfile(cold / "cold" / "model.onnx", tmp / "fp32.onnx")
    other_sha = _swap_in_another_model(stages, tmp)
    check = entry(stages, "check") / "entry.json"  # truncated, as a full disk leaves it
    check.write_bytes(check.read_bytes()[: check.stat().st_size // 2])
    with open(entry(stages, "quantize") / "files" / "quantize" / "model.qdq_u8s8.onnx", "ab") as f:
        f.write(b"\0")  # one byte more
    _forge(stages)
    _escape(stages)
    killed = entry(stages, "build/openvino_int8")  # a store killed just before its rename: a whole temporary
    leftover = killed.with_name(f"{TMP}{killed.name}-x1y2z3")
    killed.rename(leftover)
    res = run(cold / "recipe.yaml", tmp / "out" / "run", stages, cache)
    return {"res": res, "out": tmp / "out" / "run", "stages": stages, "other_sha": other_sha, "leftover": leftover,
            "manifest": load_manifest(tmp / "out" / "run") if (tmp / "out" / "run" / "manifest.json").exists()
            else None}


@pytest.mark.slow
def test_swapped_entry_is_not_restored_and_the_artifacts_equal_a_cold_run(cold, damaged):
    assert damaged["res"].code == 0, damaged["res"].stderr
    manifest = damaged["manifest"]
    assert manifest["status"] == "ok" and all(a["status"] == "ok" for a in manifest["artifacts"])
    text = message(manifest, "cache entry for optimize failed its hash check: recomputed")
    assert "entry.json was stored for optimize key" in text and "not this one" in text
    assert "note: cache entry for optimize failed its hash check" in damaged["res"].stderr
    assert hits(manifest)["optimize"] is False and hits(manifest)["export"] is True
    assert sha(damaged["out"] / "optimize" / "model.onnx") != damaged["other_sha"]
    same_artifacts(cold / "cold", damaged["out"])
    # the stage is stored again, sealed for its own key, and a lookup trusts it
    folder = entry(damaged["stages"], "optimize")
    restored, problem = StageCache(damaged["stages"]).get("optimize", folder.name)
    assert problem is None and restored is not None
    assert restored.files["optimize/model.onnx"] == sha(cold / "cold" / "optimize" / "model.onnx")


@pytest.mark.slow
def test_truncated_entry_json_is_recomputed(damaged):
    assert damaged["res"].code == 0
    text = message(damaged["manifest"], "cache entry for check failed its hash check: recomputed")
    assert "entry.json is unreadable (JSONDecodeError" in text
    assert hits(damaged["manifest"])["check"] is False
    assert (damaged["out"] / "check" / "check.json").is_file()
    json.loads((entry(damaged["stages"], "check") / "entry.json").read_text())  # rewritten whole


@pytest.mark.slow
def test_tampered_file_fails_its_hash(cold, damaged):
    assert damaged["res"].code == 0
    text = message(damaged["manifest"], "cache entry for quantize failed its hash check: recomputed")
    assert "quantize/model.qdq_u8s8.onnx does not match its recorded sha256" in text
    assert hits(damaged["manifest"])["quantize"] is False
    assert sha(damaged["out"] / "quantize" / "model.qdq_u8s8.onnx") == \
        sha(cold / "cold" / "quantize" / "model.qdq_u8s8.onnx")


@pytest.mark.slow
def test_forged_hash_in_entry_json_fails_the_seal(cold, damaged):
    assert damaged["res"].code == 0
    text = message(damaged["manifest"], "cache entry for build/onnxruntime_int8 failed its hash check: recomputed")
    assert "seal does not match" in text
    assert hits(damaged["manifest"])["onnxruntime_int8"] is False
    shipped = damaged["out"] / "targets" / "onnxruntime_int8" / "model.onnx"
    assert sha(shipped) != sha(cold / "cold" / "model.onnx")  # not the forged (FP32) model
    assert sha(shipped) == sha(cold / "cold" / "targets" / "onnxruntime_int8" / "model.onnx")


@pytest.mark.slow
def test_entry_listing_a_file_outside_is_refused_and_nothing_is_written_outside(damaged):
    assert damaged["res"].code == 0
    text = message(damaged["manifest"], "cache entry for build/openvino_fp32 failed its hash check: recomputed")
    assert "lists a file outside the entry" in text
    assert hits(damaged["manifest"])["openvino_fp32"] is False
    everywhere = damaged["out"].parent.parent  # the test's folder: the output's parent, the cache, ...
    assert [p for p in everywhere.rglob("escaped.txt") if damaged["stages"] not in p.parents] == []


@pytest.mark.slow
def test_temporary_entry_left_by_a_kill_is_never_restored_and_is_cleaned(damaged):
    assert damaged["res"].code == 0
    manifest = damaged["manifest"]
    assert hits(manifest)["openvino_int8"] is False  # computed: the whole-looking temporary folder was not read
    assert message(manifest, "stage cache: removed 1 unfinished entry left by an interrupted run")
    assert not damaged["leftover"].exists()
    assert (entry(damaged["stages"], "build/openvino_int8") / "entry.json").is_file()
    # every other stage: one message each, nothing else said about the cache
    assert hits(manifest) == {**dict.fromkeys(STAGES, False), "export": True}
    assert len([m for m in manifest["messages"] if "cache" in m]) == 6


# -- byte-identical artifacts: computed or restored ---------------------------------------------------------------
@pytest.mark.slow
def test_artifacts_are_byte_identical_cold_partial_hits_and_all_hits(cold, damaged, tmp_path):
    stages, cache = clone(cold, tmp_path)
    # partial: quantize and the OpenVINO builds computed in a process whose check was restored, i.e. one that
    # converted fewer models with OpenVINO before them (its node counter differed: other layer names)
    for stage in ("quantize", "build/openvino_fp32", "build/openvino_int8"):
        shutil.rmtree(entry(stages, stage))
    res = run(cold / "recipe.yaml", tmp_path / "partial", stages, cache)
    assert res.code == 0, res.stderr
    partial = load_manifest(tmp_path / "partial")
    assert hits(partial) == {**dict.fromkeys(STAGES, True), "quantize": False, "openvino_fp32": False,
                             "openvino_int8": False}
    assert "calibration table (minmax, 16 samples" in partial["stages"][3]["findings"][0]
    res = run(cold / "recipe.yaml", tmp_path / "hits", stages, cache)
    assert res.code == 0, res.stderr
    assert hits(load_manifest(tmp_path / "hits")) == dict.fromkeys(STAGES, True)
    for other in (tmp_path / "partial", tmp_path / "hits", damaged["out"]):
        same_artifacts(cold / "cold", other)
    xml = (tmp_path / "partial" / "targets" / "openvino_int8" / "model.xml").read_text()
    assert 'name="Constant.q' in xml  # NNCF's constants are named by position, not by OpenVINO's counter


# -- the calibration-table cache ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_truncated_calibration_metadata_is_recomputed_and_a_later_run_reuses_it(cold, tmp_path):
    stages, cache = clone(cold, tmp_path)
    meta = cache / "calibration" / CALIB_META
    meta.write_bytes(meta.read_bytes()[:40])
    shutil.rmtree(entry(stages, "quantize"))  # so that the quantize stage reads the calibration cache
    res = run(cold / "recipe.yaml", tmp_path / "a", stages, cache)
    assert res.code == 0, res.stderr
    finding = load_manifest(tmp_path / "a")["stages"][3]["findings"][0]
    assert f"recalibrated: the cached metadata file {CALIB_META} is unreadable (JSONDecodeError" in finding
    assert json.loads(meta.read_text())["table_sha256"] == sha(cache / "calibration" / CALIB_TABLE)  # rewritten
    assert sha(tmp_path / "a" / "quantize" / "calibration.json") == sha(cold / "cold" / "quantize" / "calibration.json")
    assert not [p for p in (cache / "calibration").iterdir() if p.name.startswith(".")]  # no temporary left
    shutil.rmtree(entry(stages, "quantize"))
    res = run(cold / "recipe.yaml", tmp_path / "b", stages, cache)
    assert res.code == 0, res.stderr
    assert "reused from cache" in load_manifest(tmp_path / "b")["stages"][3]["findings"][0]


@pytest.mark.slow
def test_truncated_calibration_table_is_recomputed(cold, tmp_path):
    stages, cache = clone(cold, tmp_path)
    table = cache / "calibration" / CALIB_TABLE
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 3])
    shutil.rmtree(entry(stages, "quantize"))
    res = run(cold / "recipe.yaml", tmp_path / "a", stages, cache)
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "a")
    assert "recalibrated: the table file does not match its recorded hash" in manifest["stages"][3]["findings"][0]
    assert sha(table) == sha(cold / "cold" / "quantize" / "calibration.json")
    same_artifacts(cold / "cold", tmp_path / "a")


# -- a cache folder that cannot be one ------------------------------------------------------------------------------
@pytest.fixture
def onnx_recipe(cold, tmp_path):
    """A recipe whose source is the cold run's ONNX: no export to compute, a fast run."""
    shutil.copyfile(cold / "cold" / "model.onnx", tmp_path / "model.onnx")
    data = {"name": "tiny", "source": {"framework": "onnx", "path": str(tmp_path / "model.onnx")},
            "samples": {"count": 4, "seed": 3}, "targets": [{"runtime": "onnxruntime"}]}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / "tiny.yaml"


@pytest.mark.slow
def test_cache_folder_whose_parent_is_a_file_runs_uncached_with_a_note(onnx_recipe, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    res = run(onnx_recipe, tmp_path / "out", tmp_path / "afile" / "stages", tmp_path / "cache")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "out")
    text = message(manifest, f"stage cache folder {tmp_path / 'afile' / 'stages'} cannot be used (NotADirectoryError")
    assert text.endswith("this run is computed and not cached")
    assert "note: stage cache folder" in res.stderr
    assert manifest["status"] == "ok" and hits(manifest) == {}
    assert (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.slow
def test_cache_folder_that_is_a_file(onnx_recipe, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("not a folder")
    # on the command line: a usage error before anything runs
    res = run(onnx_recipe, tmp_path / "out", tmp_path / "afile", tmp_path / "cache")
    assert res.code == 2 and "afile' is a file" in res.stderr
    assert not (tmp_path / "out").exists()
    # from the environment (a CI setting): a note, the run goes on uncached
    monkeypatch.setenv("CONVERTCTL_STAGE_CACHE", str(tmp_path / "afile"))
    res = run(onnx_recipe, tmp_path / "out", None, tmp_path / "cache")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "out")
    assert "(FileExistsError" in message(manifest, f"stage cache folder {tmp_path / 'afile'} cannot be used")
    assert hits(manifest) == {} and (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.slow
def test_symlinked_cache_folder_is_used_but_links_inside_it_are_refused(onnx_recipe, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")  # the user's choice: fine
    assert run(onnx_recipe, tmp_path / "a", tmp_path / "link", tmp_path / "cache").code == 0
    assert list((tmp_path / "real").glob("export/*/*/entry.json"))
    res = run(onnx_recipe, tmp_path / "b", tmp_path / "link", tmp_path / "cache")
    assert res.code == 0 and set(hits(load_manifest(tmp_path / "b")).values()) == {True}
    # a link below the cache folder would send entries elsewhere: refused, the run goes on uncached
    (tmp_path / "outside").mkdir()
    shutil.rmtree(tmp_path / "real" / "export")
    (tmp_path / "real" / "export").symlink_to(tmp_path / "outside")
    res = run(onnx_recipe, tmp_path / "c", tmp_path / "link", tmp_path / "cache")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "c")
    text = message(manifest, f"stage cache folder {tmp_path / 'link'} cannot be used (CacheError")
    assert "export is not a folder of the stage cache" in text and hits(manifest) == {}
    assert not list((tmp_path / "outside").iterdir())


# -- a store killed with SIGKILL ------------------------------------------------------------------------------------
KILLED_STORE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import convertctl.stage_cache as sc

    copies = []
    real = sc.sha256_file
    def sha_then_die(path):  # the second file's hash: one file copied, the next in the middle, entry.json unwritten
        copies.append(path)
        if len(copies) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path)
    sc.sha256_file = sha_then_die
    root, src, key = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    cache = sc.StageCache(root)
    with cache.locked("optimize", key):
        cache.put("optimize", key, {"optimize/a.onnx": src, "optimize/b.onnx": src}, {"seconds": 1})
""")


def test_kill_9_in_the_middle_of_a_store_leaves_nothing_a_later_run_restores(tmp_path):
    src = tmp_path / "model.onnx"
    src.write_bytes(os.urandom(4096))
    key = hashlib.sha256(b"killed").hexdigest()
    proc = subprocess.run([sys.executable, "-c", KILLED_STORE, str(tmp_path / "stages"), str(src), key],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    cache = StageCache(tmp_path / "stages")
    left = list((tmp_path / "stages" / "optimize" / key[:2]).glob(f"{TMP}*"))
    assert len(left) == 1 and (left[0] / "files" / "optimize" / "a.onnx").is_file()
    assert cache.get("optimize", key) == (None, None)  # a miss, not an entry
    with cache.locked("optimize", key):
        stored, cleaned = cache.put("optimize", key, {"optimize/a.onnx": src}, {"seconds": 1})
    assert cleaned == 1 and not left[0].exists()
    found, problem = cache.get("optimize", key)
    assert problem is None and found.files == {"optimize/a.onnx": sha(src)}


def test_temporary_folder_of_a_store_in_progress_is_not_cleaned(tmp_path):
    import fcntl

    cache = StageCache(tmp_path)
    mine, busy, idle = (hashlib.sha256(s).hexdigest() for s in (b"mine", b"busy", b"idle"))
    busy, idle = mine[:2] + busy[2:], mine[:2] + idle[2:]  # three keys in one folder
    sub = tmp_path / "check" / mine[:2]
    for key in (busy, idle):
        (sub / f"{TMP}{key}-abc").mkdir(parents=True)
    (sub / ".not-ours").mkdir()
    with open(sub / f"{busy}.lock", "a") as held:  # another run storing `busy` right now
        fcntl.flock(held, fcntl.LOCK_EX)
        with cache.locked("check", mine):
            _, cleaned = cache.put("check", mine, {}, {"seconds": 0})
    assert cleaned == 1
    assert (sub / f"{TMP}{busy}-abc").is_dir() and not (sub / f"{TMP}{idle}-abc").exists()
    assert (sub / ".not-ours").is_dir()
    with pytest.raises(ValueError):  # names come from a stage name and a hex key only
        cache.put("check", "../../etc", {}, {})
    with pytest.raises(ValueError):
        cache.put("check", mine, {"../outside": tmp_path / "x"}, {})
