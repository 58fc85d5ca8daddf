"""Output folders and signals: convertctl never replaces a folder it did not make, never leaves a staging
folder behind, and stops its children when it is stopped.

Every case asserts the exit code, the message and the filesystem afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convertctl.errors import EXIT_USAGE, UsageError
from convertctl.report.outdir import INVENTORY, MARKER, OutputFolder, made_by_convertctl

from .conftest import load_manifest, run_cli, small_cnn_recipe


def assert_refused(res, *needles: str):
    assert res.code == EXIT_USAGE, (res.code, res.stderr)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    text = " ".join(res.stderr.split())
    for n in needles:
        assert n in text, (n, res.stderr)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what must be unchanged after a refused run."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A real exported ONNX (the small CNN of conftest), made once for the module."""
    from .conftest import SMALL_MODELS

    folder = tmp_path_factory.mktemp("tiny")
    (folder / "models.py").write_text(SMALL_MODELS)
    res = run_cli("export", f"{folder / 'models.py'}:small_cnn", "--input", "image:1,3,32,32", "-o", folder / "e",
                  "-q")
    assert res.code == 0, res.stderr
    return folder / "e" / "model.onnx"


@pytest.fixture
def project(tmp_path, tiny_onnx) -> Path:
    """A user's project: a model in project/models/, a notes file, a source file."""
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    shutil.copyfile(tiny_onnx, root / "models" / "model.onnx")
    (root / "notes.txt").write_text("my notes")
    (root / "train.py").write_text("print('training')\n")
    return root


def build(model, output, *extra, cwd=None):
    return run_cli("build", model, "-t", "onnxruntime", "-o", output, "--no-optimize", *extra, cwd=cwd)


# -- refused outputs: the user's folder survives byte for byte ----------------------------------------------
def test_output_that_contains_the_input_model_is_refused(project):
    before = snapshot(project)
    res = build(project / "models" / "model.onnx", project)
    assert_refused(res, f"output folder {project} contains", "model.onnx", "choose an empty or new folder")
    assert snapshot(project) == before
    assert sorted(p.name for p in project.parent.iterdir()) == ["project"]  # no staging, no partial


def test_output_that_is_the_models_folder_is_refused(project):
    before = snapshot(project)
    assert_refused(build(project / "models" / "model.onnx", project / "models"), "which this run reads")
    assert snapshot(project) == before


def test_output_dot_is_refused(project):
    before = snapshot(project)
    assert_refused(build("models/model.onnx", ".", cwd=project), "which this run reads")
    assert snapshot(project) == before


def test_output_dot_in_a_recipe_is_refused(project, write_recipe, tmp_path):
    recipe = project / "recipe.yaml"
    recipe.write_text(json.dumps({"name": "m", "source": {"framework": "onnx", "path": "models/model.onnx"},
                                  "targets": [{"runtime": "onnxruntime", "precision": "fp32"}], "output": "."}))
    before = snapshot(project)
    assert_refused(run_cli("run", recipe), "which this run reads")
    assert snapshot(project) == before


def test_output_that_is_the_parent_of_the_current_directory_is_refused(project, tiny_onnx):
    before = snapshot(project)
    assert_refused(build(tiny_onnx, "..", cwd=project / "models"), "which this run reads")
    assert snapshot(project) == before


def test_a_folder_of_the_users_is_never_replaced(tmp_path, tiny_onnx):
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    res = build(tiny_onnx, mine)
    assert_refused(res, f"output folder {mine} exists and was not made by convertctl", "choose an empty or new folder")
    assert (mine / "thesis.tex").read_text() == "years of work" and sorted(os.listdir(mine)) == ["thesis.tex"]
    assert not list(tmp_path.glob(".results.*")) and not (tmp_path / "results.partial").exists()


def test_output_that_is_a_file_is_refused(tmp_path, tiny_onnx):
    f = tmp_path / "out"
    f.write_text("a file")
    assert_refused(build(tiny_onnx, f), "exists and is not a folder")
    assert f.read_text() == "a file"


def test_output_that_is_a_symlink_is_refused(tmp_path, tiny_onnx):
    real = tmp_path / "real"
    real.mkdir()
    (real / MARKER).write_text("")  # even a convertctl output behind a link: the link would be replaced
    (real / "keep.txt").write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert_refused(build(tiny_onnx, link), "is a symbolic link")
    assert link.is_symlink() and (real / "keep.txt").read_text() == "keep"


def test_output_that_contains_the_calibration_data_is_refused(tmp_path, tiny_onnx):
    data = tmp_path / "work" / "calib"
    data.mkdir(parents=True)
    import numpy as np

    np.save(data / "x.npy", np.zeros((2, 3, 32, 32), np.float32))
    res = run_cli("quantize", tiny_onnx, "--int8", "--calib", data / "x.npy", "-t", "onnxruntime", "-o", tmp_path / "work")
    assert_refused(res, "which this run reads")
    assert (data / "x.npy").is_file()


def test_mount_point_is_refused_before_anything_is_written():
    mount = next((Path(p) for p in ("/proc", "/sys", "/dev/shm", "/dev") if os.path.ismount(p)), None)
    if mount is None:
        pytest.skip("no mount point to try on this machine")
    with pytest.raises(UsageError, match="is a mount point"):
        OutputFolder(mount).open()
    assert not list(mount.parent.glob(f".{mount.name}.staging-*"))


# -- outputs that may be replaced -----------------------------------------------------------------------
def test_an_empty_folder_becomes_the_output(tmp_path, tiny_onnx):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = build(tiny_onnx, empty)
    assert res.code == 0, res.stderr
    assert load_manifest(empty)["status"] == "ok" and (empty / MARKER).is_file()


def test_a_previous_output_is_replaced_and_its_marker_kept(tmp_path, tiny_onnx):
    out = tmp_path / "o"
    assert build(tiny_onnx, out).code == 0
    (out / "stale.txt").write_text("from the first run")
    with (out / INVENTORY).open("a") as inventory:  # a file the earlier run wrote (its inventory says so) goes
        inventory.write("stale.txt\n")
    res = build(tiny_onnx, out)
    assert res.code == 0, res.stderr
    assert not (out / "stale.txt").exists() and made_by_convertctl(out)
    (out / "mine.txt").write_text("the user's")  # one nobody wrote: the folder is left alone
    assert_refused(build(tiny_onnx, out), "holds files convertctl did not write (mine.txt)")
    assert (out / "mine.txt").read_text() == "the user's"
    assert MARKER not in [f["path"] for f in load_manifest(out)["files"]]  # the marker is not an artifact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_an_output_made_before_the_marker_is_recognised_by_its_manifest(tmp_path, tiny_onnx):
    out = tmp_path / "o"
    assert build(tiny_onnx, out).code == 0
    (out / MARKER).unlink()
    assert made_by_convertctl(out)
    assert build(tiny_onnx, out).code == 0
    (out / MARKER).unlink()
    (out / "manifest.json").write_text(json.dumps({"tool": {"name": "something-else"}}))
    assert_refused(build(tiny_onnx, out), "was not made by convertctl")


def test_a_partial_folder_of_the_users_is_not_deleted_by_a_failure(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    users = tmp_path / "o.partial"
    users.mkdir()
    (users / "mine.txt").write_text("mine")
    folder = OutputFolder(tmp_path / "o")
    staging = folder.open()
    kept = folder.abandon("boom")
    assert kept == staging and (staging / "ERROR.txt").is_file()  # stays hidden: the user's folder wins
    assert (users / "mine.txt").read_text() == "mine"


def test_abandon_removes_a_manifest_that_would_claim_success(tmp_path):
    folder = OutputFolder(tmp_path / "o")
    staging = folder.open()
    (staging / "manifest.json").write_text('{"status": "ok"}')
    partial = folder.abandon("killed while committing")
    assert not (partial / "manifest.json").exists() and (partial / "ERROR.txt").is_file()


# -- leftovers of killed runs ------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_run_are_cleaned_by_the_next_run(tmp_path, tiny_onnx):
    dead = _dead_pid()
    leftover = tmp_path / f".o.staging-{dead}"
    leftover.mkdir()
    (leftover / MARKER).write_text("")
    (leftover / "manifest.json").write_text(json.dumps({"tool": {"name": "convertctl"}, "status": "ok"}))
    old = tmp_path / f".o.old-{dead}"
    old.mkdir()
    (old / MARKER).write_text("")
    not_ours = tmp_path / f".o.staging-{_dead_pid()}"  # looks like one, but has no marker: the user's
    not_ours.mkdir()
    (not_ours / "x.txt").write_text("x")
    res = build(tiny_onnx, tmp_path / "o")
    assert res.code == 0, res.stderr
    assert not leftover.exists() and not old.exists()
    assert (not_ours / "x.txt").is_file()


def test_a_live_runs_staging_folder_is_left_alone(tmp_path):
    live = tmp_path / f".o.staging-{os.getppid()}"  # a running process: maybe a concurrent run to the same place
    live.mkdir()
    (live / MARKER).write_text("")
    OutputFolder(tmp_path / "o").open()
    assert live.is_dir()


# -- --json on error paths -------------------------------------------------------------------------------
def test_json_error_object_for_an_error_raised_before_the_options_are_read(tmp_path, tiny_onnx):
    res = run_cli("build", tiny_onnx, "-t", "onnxruntime", "--no-cache", "--cache-dir", tmp_path / "c", "--json")
    assert res.code == EXIT_USAGE
    doc = json.loads(res.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 2 and "contradict" in doc["error"]


def test_json_error_object_for_a_refused_output(tmp_path, tiny_onnx):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("a")
    res = build(tiny_onnx, mine, "--json")
    assert res.code == EXIT_USAGE and json.loads(res.stdout)["exit_code"] == EXIT_USAGE


# -- signals ----------------------------------------------------------------------------------------------
def _procs_mentioning(text: str) -> list[int]:
    """Processes whose command line or working folder mentions `text` (the test's own folder): the run and
    its children (export workers get their request path, latency workers run inside the output folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            # a text ending in '-' is the prefix of staging folders' names ('.out.staging-'), else a folder
            inside = cwd.startswith(text) if text.endswith("-") else cwd == text or cwd.startswith(text + os.sep)
            if text in cmd or inside:
                found.append(int(entry.name))
    return found


def _assert_no_process_left(tmp_path: Path, within_s: float = 15.0) -> None:
    """Stopped processes take a moment to be reaped by the kernel: poll, then assert."""
    deadline = time.monotonic() + within_s
    while _procs_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _procs_mentioning(str(tmp_path)) == []


def _start_run(recipe: Path, cwd: Path, *extra) -> subprocess.Popen:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.Popen([sys.executable, "-m", "convertctl", "run", str(recipe), "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)


def _wait_for(predicate, proc, timeout=240.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        assert proc.poll() is None, f"the run ended before the moment to interrupt it: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "the moment to interrupt never came"
        time.sleep(0.05)


def _staging(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob(".out.staging-*"))


# (signal, moment): the export child is running; a target is being built; artifacts are being timed
MOMENTS = {
    "export": lambda st: any((s / "export" / "export.request.json").exists() for s in st),
    "build": lambda st: any((s / "targets").exists() for s in st),
    "latency": lambda st: any((s / "latency").exists() for s in st),
}


@pytest.mark.parametrize(("sig", "moment"), [(signal.SIGINT, "export"), (signal.SIGTERM, "build"),
                                             (signal.SIGINT, "latency")])
@pytest.mark.slow
def test_a_signal_stops_the_run_and_its_children_and_leaves_nothing(tmp_path, models_file, write_recipe, sig,
                                                                    moment):
    # many timed calls, so that the run is still timing when the signal lands (not already finished)
    recipe = write_recipe(small_cnn_recipe(targets=[{"runtime": "onnxruntime", "precision": "fp32"},
                                                    {"runtime": "openvino", "precision": "fp32"}],
                                           verify={"latency": {"runs": 2000000, "warmup": 10}}))
    proc = _start_run(recipe, tmp_path)
    _wait_for(lambda: MOMENTS[moment](_staging(tmp_path)), proc)
    if moment in ("export", "latency"):
        _wait_for(lambda: _procs_mentioning(str(tmp_path / ".out.staging-")), proc)  # a worker has started
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    doc = json.loads(out)
    assert doc["status"] == "interrupted" and doc["exit_code"] == 128 + sig
    assert f"interrupted by {signal.Signals(sig).name}" in err and "Traceback" not in err
    assert not _staging(tmp_path) and not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    _assert_no_process_left(tmp_path)
    # the next run starts from nothing half-written and succeeds
    again = run_cli("run", recipe, "--no-latency")
    assert again.code == 0, again.stderr
    assert load_manifest(tmp_path / "out")["status"] == "ok"


def test_a_stop_signal_whose_exception_was_swallowed_still_ends_a_long_wait(tmp_path):
    """A signal landing in an at-fork hook (logging's _releaseLock, run by every spawn) loses its exception; the
    handler has recorded it, and the wait for a child asks for it again: the child is stopped, not waited out."""
    import threading

    from convertctl import processes

    def lost_signal():
        time.sleep(0.5)
        processes._pending = signal.SIGINT  # what _on_signal records before its exception is swallowed

    t0 = time.monotonic()
    threading.Thread(target=lost_signal).start()
    try:
        with pytest.raises(processes.Interrupted):
            processes.run([sys.executable, "-c", "import time; time.sleep(120)"], cwd=tmp_path)
    finally:
        processes._pending = None
    assert time.monotonic() - t0 < 10
    assert not processes._live  # stopped and unregistered


@pytest.mark.slow
def test_a_killed_run_leaves_no_finished_looking_folder_and_the_next_run_cleans_up(tmp_path, models_file,
                                                                                   write_recipe):
    recipe = write_recipe(small_cnn_recipe(targets=[{"runtime": "onnxruntime", "precision": "fp32"}]))
    cache = ["--cache-dir", str(tmp_path / "cache")]  # nothing half-written may be reused from the cache either
    proc = _start_run(recipe, tmp_path, "--no-latency", *cache)
    _wait_for(lambda: _procs_mentioning(str(tmp_path / ".out.staging-")), proc)  # the export worker runs
    proc.kill()  # kill -9: no handler runs
    proc.communicate(timeout=60)
    assert _staging(tmp_path) and not (tmp_path / "out").exists()  # hidden, never under the output's name
    _assert_no_process_left(tmp_path)  # the kernel stopped the worker with its parent
    again = run_cli("run", recipe, *cache)
    assert again.code == 0, again.stderr
    assert not _staging(tmp_path) and load_manifest(tmp_path / "out")["status"] == "ok"


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_model_path_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, kind):
    model = tmp_path / "model.onnx"
    os.mkfifo(model) if kind == "fifo" else model.mkdir()
    res = run_cli("build", model, "-t", "onnxruntime", "-o", tmp_path / "o", timeout=120,
                  subprocess=True)  # a read would hang: a timeout needs a process of its own
    assert_refused(res, "is not a regular file")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


@pytest.mark.parametrize("args", [
    ["run", "{t}/nope.yaml"], ["build", "{t}/nope.onnx", "-t", "onnxruntime"], ["export", "{t}/nope.onnx"],
    ["optimize", "{t}/nope.onnx"], ["quantize", "{t}/nope.onnx", "--int8", "--calib", "{t}"],
    ["check", "{t}/nope.onnx"], ["recipe", "validate", "{t}/nope.yaml"], ["diff", "{t}/a.json", "{t}/b.json"],
    ["plan", "{t}/nope"], ["merge", "{t}/nope", "-o", "{t}/rel"], ["build", "{t}/x.onnx", "--bogus-option"],
], ids=lambda a: "-".join(x for x in a if not x.startswith("{")))
def test_every_command_prints_one_json_object_on_bad_input(tmp_path, args):
    res = run_cli(*[a.format(t=tmp_path) for a in args], "--json")
    assert res.code == EXIT_USAGE, (res.code, res.stderr)
    doc = json.loads(res.stdout)  # the whole of stdout is one JSON object
    assert isinstance(doc, dict) and doc["status"] == "error" and doc["exit_code"] == EXIT_USAGE and doc["error"]
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("outcome", ["fails", "succeeds"])
def test_a_model_inside_the_previous_partial_folder_survives(tmp_path, tiny_onnx, outcome):
    """A user runs on the model a failed run left in X.partial, with -o X: neither a new failure (which
    would replace X.partial) nor a success (which removes X.partial) may delete it."""
    partial = tmp_path / "X.partial"
    assert build(tiny_onnx, partial).code == 0  # a convertctl-made folder holding model.onnx
    model = partial / "model.onnx"
    before = model.read_bytes()
    extra = ["--input", "image:1,5,32,32"] if outcome == "fails" else []  # fails after the folder opened
    res = build(model, tmp_path / "X", *extra)
    assert res.code == (EXIT_USAGE if outcome == "fails" else 0), res.stderr
    assert model.read_bytes() == before
    if outcome == "fails":  # the failed run is kept in its hidden staging folder instead, and says so
        assert "partial output kept in" in res.stderr and "staging" in res.stderr
