"""Bad input to the CI-side commands (diff, merge, plan; $GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY), through the real CLI.

Every case: exit 2 (or a warning, for the job page), one line naming the file and its first bad field, no
traceback, valid JSON on stdout with --json, and the filesystem as it was: nothing half-written, nothing of the
user's replaced. Manifests are copies of one real run's, edited.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from convertctl.ci import fanout
from convertctl.errors import EXIT_OK, EXIT_USAGE
from convertctl.report.manifest import LatencyRecord

from .conftest import SMALL_MODELS, load_manifest, run_cli, small_cnn_recipe


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """One real run (small CNN, onnxruntime fp32, no optimize), with $GITHUB_STEP_SUMMARY pointing into a file."""
    root = tmp_path_factory.mktemp("ci_bad")
    (root / "models.py").write_text(SMALL_MODELS)
    recipe = small_cnn_recipe(targets=[{"runtime": "onnxruntime", "precision": "fp32"}],
                              stages=["export", "check", "build"])
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (root / "afile").write_text("a regular file\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GITHUB_STEP_SUMMARY", str(root / "afile" / "summary.md"))
        res = run_cli("run", root / "recipe.yaml", "-o", root / "out")
    return root, res


@pytest.fixture
def good(real) -> dict:
    return load_manifest(real[0] / "out")


def write(path: Path, manifest: dict | str) -> Path:
    """A manifest (Python's json writes NaN/Infinity literals for non-finite floats, as a careless tool would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    return path


def first_output(m: dict) -> dict:
    return next(iter(m["artifacts"][0]["verification"][0]["outputs"].values()))


def timed(m: dict, p50: float) -> dict:
    m["artifacts"][0]["latency"] = LatencyRecord(status="measured", of=m["artifacts"][0]["id"], runs=5,
                                                 p50_ms=p50, p90_ms=abs(p50)).model_dump(mode="json")
    return m


def refused(res, *needles: str) -> dict:
    """Exit 2, each needle on stderr, no traceback, and (--json) one JSON error object on stdout."""
    assert res.code == EXIT_USAGE, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    for needle in needles:
        assert needle in res.stderr
    error = json.loads(res.stdout)
    assert isinstance(error, dict) and error["status"] == "error" and error["exit_code"] == EXIT_USAGE
    assert needles[0] in error["error"]
    return error


def nothing_beside(folder: Path, keep: set[str]) -> None:
    """No staging or half-written folder next to `folder`'s expected entries."""
    assert {p.name for p in folder.iterdir()} == keep


# --- the job page ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_unwritable_step_summary_is_a_warning(real):
    root, res = real
    assert res.code == EXIT_OK, res.stderr
    assert f"warning: cannot append the job summary to GITHUB_STEP_SUMMARY={root / 'afile' / 'summary.md'}" \
        in res.stderr
    assert "Traceback" not in res.stderr and (root / "out" / "manifest.json").is_file()
    assert (root / "afile").read_text() == "a regular file\n"


# --- merge ---------------------------------------------------------------------------------------------------------

MERGE_CASES = {
    "not_json": (lambda m: "garbage\n", "not JSON (Expecting value: line 1 column 1"),
    "json_array": (lambda m: "[1, 2]", "not a convertctl manifest (no schema_version): the file holds a JSON array"),
    "other_json": (lambda m: {"include": []}, "not a convertctl manifest (no schema_version)"),
    "missing_field": (lambda m: {k: v for k, v in m.items() if k != "artifacts"},
                      "not a valid manifest: artifacts: Field required"),
    "wrong_type": (lambda m: {**m, "exit_code": "0"}, "not a valid manifest: exit_code: Input should be a valid integer"),
    "nan": (lambda m: first_output(m).update(cosine=float("nan")) or m,
            "cosine: NaN is not a number (JSON has no NaN or Infinity)"),
    "huge_number": (lambda m: json.dumps(m).replace('"seconds": ', '"seconds": 1e999, "_": ', 1),
                    "not a valid manifest: seconds: Infinity is not a number"),
}


@pytest.mark.parametrize("case", list(MERGE_CASES))
@pytest.mark.slow
def test_merge_refuses_a_bad_manifest_and_writes_nothing(real, good, tmp_path, case):
    edit, needle = MERGE_CASES[case]
    bad = write(tmp_path / "jobs" / "bad" / "manifest.json", edit(copy.deepcopy(good)))
    res = run_cli("merge", real[0] / "out", tmp_path / "jobs", "-o", tmp_path / "release", "--json")
    refused(res, f"{bad}: ", needle)
    nothing_beside(tmp_path, {"jobs"})


def test_merge_a_folder_without_manifests(tmp_path):
    (tmp_path / "jobs" / "a").mkdir(parents=True)
    (tmp_path / "jobs" / "a" / "notes.txt").write_text("a job that did not finish\n")
    res = run_cli("merge", tmp_path / "jobs", "-o", tmp_path / "release", "--json")
    refused(res, f"{tmp_path / 'jobs'}: no manifest.json in it or in its sub-folders")
    nothing_beside(tmp_path, {"jobs"})


@pytest.mark.slow
def test_merge_never_replaces_a_folder_that_is_not_a_merge_output(real, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    res = run_cli("merge", real[0] / "out", "-o", mine, "--json")
    refused(res, f"release folder {mine} exists and is not the output of `convertctl merge`",
            "choose an empty or new folder")
    assert (mine / "notes.txt").read_text() == "my notes\n"
    nothing_beside(mine, {"notes.txt"})
    nothing_beside(tmp_path, {"mine"})


@pytest.mark.slow
def test_merge_replaces_its_own_output_but_not_a_file_put_in_it(real, tmp_path):
    release = tmp_path / "release"
    assert run_cli("merge", real[0] / "out", "-o", release).code == EXIT_OK
    assert run_cli("merge", real[0] / "out", "-o", release).code == EXIT_OK  # a previous merge's: replaced
    (release / "README.md").write_text("added by hand\n")
    res = run_cli("merge", real[0] / "out", "-o", release, "--json")
    refused(res, f"release folder {release} holds README.md, which `convertctl merge` did not write")
    assert (release / "README.md").read_text() == "added by hand\n"
    nothing_beside(release, {"README.md", "index.json", "index.md", "manifests"})


@pytest.mark.slow
def test_merge_after_a_failed_merge_succeeds(real, good, tmp_path):
    release = tmp_path / "release"
    assert run_cli("merge", real[0] / "out", "-o", release).code == EXIT_OK
    before = (release / "index.json").read_bytes()
    bad = write(tmp_path / "bad.json", {k: v for k, v in good.items() if k != "recipe"})
    refused(run_cli("merge", real[0] / "out", bad, "-o", release, "--json"), f"{bad}: not a valid manifest: recipe")
    assert (release / "index.json").read_bytes() == before  # the previous release, untouched
    nothing_beside(tmp_path, {"release", "bad.json"})
    res = run_cli("merge", real[0] / "out", "-o", release, "--json")
    assert res.code == EXIT_OK, res.stderr
    index = res.json()
    assert index["kind"] == "convertctl-release-index" and [e["recipe"] for e in index["entries"]] == ["small_cnn"]
    assert (release / index["entries"][0]["manifest"]).read_bytes() == (real[0] / "out" / "manifest.json").read_bytes()


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
@pytest.mark.slow
def test_a_merge_that_fails_halfway_leaves_the_previous_release(real, tmp_path, monkeypatch, failure):
    """In-process: the failure comes after the staging folder was filled, just before it would be moved in."""
    release = tmp_path / "release"
    assert run_cli("merge", real[0] / "out", "-o", release).code == EXIT_OK
    before = {p.relative_to(release): p.read_bytes() for p in release.rglob("*") if p.is_file()}

    def fail(staging, final):
        assert (staging / "index.json").is_file()
        raise failure

    monkeypatch.setattr(fanout, "swap_in", fail)
    with pytest.raises(fanout.UsageError if isinstance(failure, OSError) else KeyboardInterrupt) as exc:
        fanout.merge([str(real[0] / "out")], release)
    if isinstance(failure, OSError):
        assert exc.value.message == f"cannot write the release folder {release}: No space left on device"
    assert {p.relative_to(release): p.read_bytes() for p in release.rglob("*") if p.is_file()} == before
    nothing_beside(tmp_path, {"release"})


# --- diff ----------------------------------------------------------------------------------------------------------

DIFF_CASES = {
    "missing_artifacts": (lambda m: {k: v for k, v in m.items() if k != "artifacts"},
                          "not a valid manifest: artifacts: Field required"),
    "nan_cosine": (lambda m: first_output(m).update(cosine=float("nan")) or m,
                   "outputs.linear.cosine: NaN is not a number"),
    "infinite_cosine": (lambda m: first_output(m).update(cosine=float("-inf")) or m,
                        "outputs.linear.cosine: -Infinity is not a number"),
    "negative_p50": (lambda m: timed(m, -0.5), "artifacts.0.latency.p50_ms: -0.5 is negative"),
    "nan_p50": (lambda m: timed(m, float("nan")), "artifacts.0.latency.p50_ms: NaN is not a number"),
    "cosine_1.5": (lambda m: first_output(m).update(cosine=1.5) or m, "outputs.linear.cosine: 1.5 is outside [-1, 1]"),
    "top1_agreement_1.2": (lambda m: first_output(m).update(top1_agreement=1.2) or m,
                         "outputs.linear.top1_agreement: 1.2 is outside [0, 1]"),
    "cosine_as_text": (lambda m: first_output(m).update(cosine="0.99") or m,
                       "outputs.linear.cosine: Input should be a valid number"),
    "missing_status": (lambda m: m["artifacts"][0].pop("status") and m, "artifacts.0.status: Field required"),
    "not_json": (lambda m: "{'schema_version': '1.3.0'}", "not JSON (Expecting property name enclosed in double quotes"),
    "huge_integer": (lambda m: json.dumps(m).replace('"seconds": ', '"seconds": ' + "9" * 5000 + ', "_s": ', 1),
                     "a number with thousands of digits"),
}


@pytest.mark.parametrize("case", list(DIFF_CASES))
@pytest.mark.slow
def test_diff_refuses_a_bad_manifest(real, good, tmp_path, case):
    edit, needle = DIFF_CASES[case]
    new = write(tmp_path / "new.json", edit(copy.deepcopy(good)))
    res = run_cli("diff", real[0] / "out", new, "--json", "-o", tmp_path / "diff.md")
    refused(res, f"NEW {new}: ", needle)
    nothing_beside(tmp_path, {"new.json"})  # no diff.md from garbage


@pytest.mark.slow
def test_diff_a_missing_file_and_a_nan_threshold(real, tmp_path):
    refused(run_cli("diff", tmp_path / "nosuch.json", real[0] / "out", "--json"),
            f"BASE {tmp_path / 'nosuch.json'}: no such file")
    res = run_cli("diff", real[0] / "out", real[0] / "out", "--max-cosine-drop", "nan", "--json")
    refused(res, "Invalid value for '--max-cosine-drop': 'nan' is not a finite number >= 0")


@pytest.mark.slow
def test_diff_still_reads_good_and_older_manifests(real, good, tmp_path):
    old = copy.deepcopy(good)
    old["schema_version"] = "1.1.0"  # before latency (1.2) and cache (1.3): those fields may be absent
    del old["latency_baseline"]
    for a in old["artifacts"]:
        del a["latency"], a["cache"]
    res = run_cli("diff", write(tmp_path / "old.json", old), real[0] / "out", "--json")
    assert res.code == EXIT_OK, res.stderr
    assert res.json()["exit_code"] == EXIT_OK and res.json()["regressions"] == []
    new = copy.deepcopy(good)
    del new["artifacts"][0]["cache"]  # a 1.3.0 manifest was written with it: its absence is damage
    refused(run_cli("diff", real[0] / "out", write(tmp_path / "new.json", new), "--json"),
            "artifacts.0.cache: Field required")


# --- plan ----------------------------------------------------------------------------------------------------------


def plan_inputs(root: Path) -> dict[str, tuple[Path, str]]:
    (root / "empty").mkdir()
    (root / "empty" / "README.md").write_text("no recipes here\n")
    data = small_cnn_recipe(targets=[{"runtime": "coreml", "precision": "fp32"}])
    (root / "unknown.yaml").write_text(yaml.safe_dump(data))
    (root / "broken.yaml").write_text("name: [a, b\n")
    return {"no_recipes": (root / "empty", f"no recipes (*.yaml) in {root / 'empty'}"),
            "unknown_target": (root / "unknown.yaml", "1 invalid recipe: "),
            "not_yaml": (root / "broken.yaml", f"{root / 'broken.yaml'}: not valid YAML at line 2")}


@pytest.mark.parametrize("case", ["no_recipes", "unknown_target", "not_yaml"])
def test_plan_refuses_bad_recipes(tmp_path, case):
    path, needle = plan_inputs(tmp_path)[case]
    res = refused(run_cli("plan", path, "--json"), needle)
    if case == "unknown_target":
        assert "targets[0]" in res["error"] and "coreml" in res["error"] and "onnxruntime" in res["error"]


@pytest.mark.slow
def test_plan_with_an_unwritable_github_output(real, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("a regular file\n")
    target = tmp_path / "afile" / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(target))
    res = run_cli("plan", real[0] / "recipe.yaml", "--format", "github", "--json")
    refused(res, f"cannot write the job output to GITHUB_OUTPUT={target}: Not a directory")
    assert len(res.stdout.strip().splitlines()) == 1  # the error object alone, not the matrix before it
    assert (tmp_path / "afile").read_text() == "a regular file\n"
