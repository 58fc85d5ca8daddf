"""Fan-out for CI, through the real CLI: `run FOLDER`, `run --target`, `plan` and `merge` on small real models."""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from .conftest import SMALL_MODELS, load_manifest, run_cli, small_cnn_recipe

TARGETS = [{"runtime": "onnxruntime", "precision": "fp32"}, {"runtime": "openvino", "precision": "fp32"}]
IDS = ["onnxruntime_fp32", "openvino_fp32"]


def recipe(models: Path, name: str, factory: str = "small_cnn", **overrides) -> dict:
    data = small_cnn_recipe(name=name, targets=TARGETS,
                            source={"framework": "pytorch", "factory": f"{models}:{factory}"}, **overrides)
    data.pop("output")  # the command line decides where each run writes
    return data


def write(folder: Path, file: str, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """good/: recipes a and b; mixed/: the same plus one with a misspelt key and one whose factory raises."""
    root = tmp_path_factory.mktemp("fanout")
    models = root / "models.py"
    models.write_text(SMALL_MODELS)
    for folder in ("good", "mixed"):
        write(root / folder, "a.yaml", recipe(models, "a"))
        write(root / folder, "b.yaml", recipe(models, "b"))
    bad = recipe(models, "bad")
    bad["sampels"] = bad.pop("samples")
    write(root / "mixed", "bad.yaml", bad)
    write(root / "mixed", "boom.yaml", recipe(models, "boom", factory="raises"))
    (root / "mixed" / "notes.txt").write_text("not a recipe")
    (root / "mixed" / "sub").mkdir()
    write(root / "mixed" / "sub", "deeper.yaml", recipe(models, "deeper"))  # not recursive: never run
    return root


@pytest.fixture(scope="module")
def mixed_run(ws):
    return run_cli("run", ws / "mixed", "--jobs", "2", "-o", ws / "mixed_out", "--no-latency", "--json", cwd=ws)


@pytest.fixture(scope="module")
def good_run(ws):
    return run_cli("run", "good", "--jobs", "2", "-o", "good_out", "--json", cwd=ws)


@pytest.fixture(scope="module")
def plan_a(ws):
    """plan -> the jobs of recipe a, each run as CI would (from the workspace, concurrently)."""
    res = run_cli("plan", "good", "--format", "json", cwd=ws)
    assert res.code == 0, res.stderr
    jobs = [j for j in res.json() if j["recipe"] == "good/a.yaml"]
    assert len(jobs) == 2

    def one(job):
        # concurrent jobs are concurrent processes (one working folder, one environment each)
        return run_cli("run", job["recipe"], "--target", job["target"], "-o", job["output"], "--json", cwd=ws,
                       subprocess=True)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, jobs))
    return jobs, results


# --- run FOLDER ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_folder_run_reports_each_recipe_and_invalid_counts_as_2(ws, mixed_run):
    res = mixed_run
    assert res.code == 2, res.stderr
    summary = res.json()
    assert summary["exit_code"] == 2
    runs = {r["name"]: r for r in summary["runs"]}
    assert [r["recipe"] for r in summary["runs"]] == [f"mixed/{f}" for f in ("a.yaml", "b.yaml", "bad.yaml",
                                                                             "boom.yaml")]
    for name in ("a", "b"):  # the others still ran, to the end
        r = runs[name]
        assert (r["exit_code"], r["status"], r["artifacts"], r["error"]) == (0, "ok", {"ok": 2, "total": 2}, None)
        assert r["output"] == f"mixed_out/{name}" and r["seconds"] > 0
        m = load_manifest(ws / "mixed_out" / name)
        assert m["recipe"]["name"] == name and [a["id"] for a in m["artifacts"]] == IDS
        assert "export" in (ws / r["log"]).read_text()  # the child's progress went to its log
    bad = runs["bad"]
    assert (bad["exit_code"], bad["status"], bad["artifacts"]) == (2, "invalid", {"ok": 0, "total": 0})
    assert "sampels" in bad["error"] and "bad.yaml" in bad["error"]
    boom = runs["boom"]  # validates, then its child fails: the child's own error message
    assert (boom["exit_code"], boom["status"]) == (2, "error")
    assert "weights server unreachable" in boom["error"]
    assert not (ws / "mixed_out" / "boom").exists() and not (ws / "mixed_out" / "deeper").exists()
    # one table on stderr
    for needle in ("4 recipe(s): exit code 2", "artifacts ok", "mixed/bad.yaml", "invalid", "2/2", "mixed_out/a"):
        assert needle in res.stderr


@pytest.mark.slow
def test_folder_run_all_ok(ws, good_run):
    assert good_run.code == 0, good_run.stderr
    summary = good_run.json()
    assert summary["exit_code"] == 0
    assert [(r["name"], r["exit_code"], r["status"], r["output"]) for r in summary["runs"]] == [
        ("a", 0, "ok", "good_out/a"), ("b", 0, "ok", "good_out/b")]
    for name in ("a", "b"):
        m = load_manifest(ws / "good_out" / name)
        assert m["status"] == "ok" and m["exit_code"] == 0
        assert [a["id"] for a in m["artifacts"]] == IDS and all(a["latency"] is None for a in m["artifacts"])


def test_folder_usage_errors(ws, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no recipes here")
    res = run_cli("run", empty)
    assert res.code == 2 and f"no recipes (*.yaml) in {empty}" in res.stderr
    res = run_cli("run", ws / "good", "--target", "onnxruntime_fp32")
    assert res.code == 2 and "--target applies to a single recipe" in res.stderr


# --- run --target ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_target_builds_only_that_target(ws, plan_a):
    jobs, results = plan_a
    for job, res in zip(jobs, results, strict=True):
        assert res.code == 0, res.stderr
        m = res.json()
        assert [a["id"] for a in m["artifacts"]] == [job["target"]]
        runtime = job["target"].split("_")[0]
        assert [t["runtime"] for t in m["recipe"]["content"]["targets"]] == [runtime]  # the recipe as run
        assert load_manifest(ws / job["output"]) == m
        assert (ws / job["output"] / "targets" / job["target"]).is_dir()
        assert [p.name for p in (ws / job["output"] / "targets").iterdir()] == [job["target"]]


def test_unknown_target_is_a_usage_error(ws):
    res = run_cli("run", ws / "good" / "a.yaml", "--target", "tensorrt_int8", "--json")
    assert res.code == 2
    assert res.json()["exit_code"] == 2
    assert "--target tensorrt_int8" in res.stderr and "onnxruntime_fp32, openvino_fp32" in res.stderr


# --- plan ------------------------------------------------------------------------------------------------


def expected_jobs():
    return [{"name": f"{r}-{t}", "recipe": f"good/{r}.yaml", "target": t, "output": f"out/{r}/{t}"}
            for r in ("a", "b") for t in IDS]


def test_plan_github_matrix_and_github_output(ws, monkeypatch, tmp_path):
    gh = tmp_path / "github_output"
    gh.write_text("earlier=1\n")
    monkeypatch.setenv("GITHUB_OUTPUT", str(gh))
    res = run_cli("plan", "good", "--format", "github", cwd=ws)
    assert res.code == 0, res.stderr
    assert len(res.stdout.strip().splitlines()) == 1  # one line: a step output
    matrix = res.json()
    assert matrix == {"include": expected_jobs()}
    lines = gh.read_text().splitlines()
    assert lines[0] == "earlier=1" and lines[1].startswith("matrix=")  # appended, not overwritten
    assert json.loads(lines[1].removeprefix("matrix=")) == matrix


def test_plan_per_recipe_and_repeated_recipe(ws):
    res = run_cli("plan", "good", "good/a.yaml", "--per", "recipe", "--json", cwd=ws)
    assert res.code == 0, res.stderr
    assert res.json() == [{"name": n, "recipe": f"good/{n}.yaml", "target": None, "output": f"out/{n}"}
                          for n in ("a", "b")]


def test_plan_gitlab_child_pipeline(ws):
    res = run_cli("plan", "good", "--format", "gitlab", cwd=ws)
    assert res.code == 0, res.stderr
    doc = yaml.safe_load(res.stdout)
    assert doc["stages"] == ["build", "release"]
    builds = {k: v for k, v in doc.items() if k.startswith("build:")}
    assert len(builds) == 4
    for job in expected_jobs():
        b = builds[f"build:{job['name']}"]
        assert b["stage"] == "build"
        assert b["script"] == [f"convertctl run {job['recipe']} --target {job['target']} -o {job['output']}"]
        assert job["output"] in b["artifacts"]["paths"] and b["artifacts"]["when"] == "always"
    assert doc["release"]["script"] == ["convertctl merge out/* -o release"]
    assert doc["release"]["when"] == "always"


def test_plan_invalid_recipe_exits_2_naming_it(ws):
    res = run_cli("plan", "mixed", cwd=ws)
    assert res.code == 2 and res.stdout == ""
    assert "mixed/bad.yaml" in res.stderr and "sampels" in res.stderr


# --- merge -----------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_merge_the_jobs_into_a_release(ws, plan_a):
    assert all(r.code == 0 for r in plan_a[1])
    res = run_cli("merge", "out/a", "-o", "release", cwd=ws)
    assert res.code == 0, res.stderr
    release = ws / "release"
    index = json.loads((release / "index.json").read_text())
    assert index["schema_version"] == "1.0.0" and index["kind"] == "convertctl-release-index"
    assert index["created_at"].endswith("+00:00") and index["exit_code"] == 0
    assert [e["manifest"] for e in index["entries"]] == ["manifests/a__onnxruntime_fp32.json",
                                                         "manifests/a__openvino_fp32.json"]
    recipe_sha = sha256(ws / "good" / "a.yaml")
    for entry, target in zip(index["entries"], IDS, strict=True):
        src = ws / "out" / "a" / target / "manifest.json"
        assert entry["recipe"] == "a" and entry["recipe_sha256"] == recipe_sha
        assert entry["status"] == "ok" and entry["exit_code"] == 0 and entry["targets"] == [target]
        assert entry["manifest_sha256"] == sha256(release / entry["manifest"]) == sha256(src)
        (art,) = entry["artifacts"]
        assert (art["id"], art["precision"], art["status"]) == (target, "fp32", "ok")
        assert art["runtime"] == target.split("_")[0]
        assert art["files"] and all(f.startswith(f"targets/{target}/") for f in art["files"])
        assert all((src.parent / f).is_file() for f in art["files"])
        assert art["cosine"] > 0.9999 and art["p50_ms"] is None  # --no-latency: nothing measured
    md = (release / "index.md").read_text()
    assert "| recipe | artifact | status | cosine | p50 ms |" in md
    for target in IDS:
        assert f"| a | {target} | ok | 1.000000 | – |" in md


@pytest.mark.slow
def test_merge_duplicate_and_bad_inputs_exit_2(ws, plan_a, tmp_path):
    one = "out/a/onnxruntime_fp32/manifest.json"
    res = run_cli("merge", "out/a", one, "-o", tmp_path / "dup", cwd=ws)
    assert res.code == 2 and "duplicate: target onnxruntime_fp32 of recipe a" in res.stderr
    assert not (tmp_path / "dup" / "index.json").exists()
    res = run_cli("merge", one, one, "-o", tmp_path / "dup", cwd=ws)
    assert res.code == 2 and "given twice" in res.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"include": []}))
    res = run_cli("merge", one, other, "-o", tmp_path / "x", cwd=ws)
    assert res.code == 2 and "not a convertctl manifest" in res.stderr
    res = run_cli("merge", one, tmp_path / "missing.json", "-o", tmp_path / "x", cwd=ws)
    assert res.code == 2 and "no such file or folder" in res.stderr


@pytest.mark.slow
def test_merge_exits_with_the_worst_job(ws, plan_a, tmp_path):
    failed = tmp_path / "failed"
    failed.mkdir()
    m = load_manifest(ws / "out" / "a" / "openvino_fp32")
    m["exit_code"], m["status"] = 4, "failed"
    (failed / "manifest.json").write_text(json.dumps(m))
    shutil.copytree(ws / "out" / "a" / "onnxruntime_fp32", tmp_path / "ok")
    res = run_cli("merge", tmp_path / "ok", failed, "-o", tmp_path / "release", "--json")
    assert res.code == 4, res.stderr
    index = res.json()
    assert index == json.loads((tmp_path / "release" / "index.json").read_text())
    assert index["exit_code"] == 4
    assert [(e["status"], e["exit_code"]) for e in index["entries"]] == [("ok", 0), ("failed", 4)]
    assert "exit code 4" in (tmp_path / "release" / "index.md").read_text()
