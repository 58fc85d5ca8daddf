"""Front ends in child processes: format detection from the files, the interpreter per framework, and a native
crash in the child reported as one clear error. No framework is imported in this process."""

from __future__ import annotations

import os
import struct
import sys
import zipfile
from pathlib import Path

import pytest

from convertctl.errors import EXIT_INTERNAL, EXIT_USAGE, SourceModelError, UsageError
from convertctl.frontends.formats import detect
from convertctl.frontends.interpreters import env_var, resolve

from .conftest import run_cli, small_cnn_recipe
from .test_bad_inputs import assert_clean_error

PADDLE3 = Path(os.environ.get("CONVERTCTL_CACHE") or Path.home() / ".cache" / "convertctl") / "envs" / "paddle"


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- which framework and format, from the files ------------------------------------------------------------
def test_formats_are_told_apart_by_their_files(tmp_path):
    legacy = _touch(tmp_path / "legacy" / "inference.pdmodel")
    _touch(tmp_path / "legacy" / "inference.pdiparams")
    assert (detect(tmp_path / "legacy").format, detect(tmp_path / "legacy").model) == ("paddle_legacy", legacy)
    assert detect(legacy).params == tmp_path / "legacy" / "inference.pdiparams"
    _touch(tmp_path / "pir" / "inference.json", b"{}")
    _touch(tmp_path / "pir" / "inference.pdiparams")
    assert detect(tmp_path / "pir").format == "paddle_pir" and detect(tmp_path / "pir").framework == "paddle"
    _touch(tmp_path / "sm" / "saved_model.pb")
    assert (detect(tmp_path / "sm").framework, detect(tmp_path / "sm").format) == ("tensorflow", "saved_model")
    keras = tmp_path / "m.keras"
    with zipfile.ZipFile(keras, "w") as z:
        z.writestr("config.json", "{}")
    assert detect(keras).format == "keras"
    h5 = _touch(tmp_path / "m.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))
    assert detect(h5).format == "h5"


@pytest.mark.parametrize("layout, needle", [
    ({"only.pdmodel": b"x"}, "has no only.pdiparams next to it"),
    ({"w.pdiparams": b"x"}, "incomplete Paddle model"),
    ({"notes.txt": b"x"}, "is neither a Paddle inference model"),
    ({"a.pdmodel": b"x", "a.pdiparams": b"x", "b.pdmodel": b"x", "b.pdiparams": b"x"}, "more than one Paddle model"),
])
def test_bad_model_folders_are_named(tmp_path, layout, needle):
    for name, data in layout.items():
        _touch(tmp_path / "m" / name, data)
    with pytest.raises(SourceModelError, match=needle):
        detect(tmp_path / "m")


def test_bad_model_files_are_named(tmp_path):
    with pytest.raises(SourceModelError, match="not a Keras 3 .keras file \\(not a zip archive\\)"):
        detect(_touch(tmp_path / "x.keras"))
    with pytest.raises(SourceModelError, match="not an HDF5 file"):
        detect(_touch(tmp_path / "x.h5", struct.pack("<8s", b"notahdf5")))
    with pytest.raises(SourceModelError, match="source.format is 'paddle_pir'"):
        _touch(tmp_path / "l" / "m.pdmodel")
        _touch(tmp_path / "l" / "m.pdiparams")
        detect(tmp_path / "l", "paddle_pir")


def test_cli_export_of_a_folder_that_is_no_model(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.txt").write_text("hello")
    res = run_cli("export", tmp_path / "stuff", "-o", tmp_path / "o")
    assert_clean_error(res, EXIT_USAGE, "is neither a Paddle inference model", "TensorFlow")
    assert not (tmp_path / "o").exists()


# -- the interpreter each framework's child runs in --------------------------------------------------------
def test_interpreter_order_recipe_then_variable_then_managed_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVERTCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(env_var("paddle"), raising=False)
    assert resolve("pytorch", None).python == sys.executable  # torch is here
    assert resolve("pytorch", None, Path(sys.executable)).origin == "export.python"
    monkeypatch.setenv(env_var("tensorflow"), str(tmp_path / "nope" / "python"))
    with pytest.raises(UsageError, match="CONVERTCTL_TENSORFLOW_PYTHON names .* not an executable Python"):
        resolve("tensorflow", "keras")
    monkeypatch.setenv(env_var("tensorflow"), sys.executable)
    assert resolve("tensorflow", "keras").origin == "CONVERTCTL_TENSORFLOW_PYTHON"
    managed = tmp_path / "cache" / "envs" / "paddle" / "bin" / "python"
    managed.parent.mkdir(parents=True)
    managed.symlink_to(sys.executable)
    # bin/python alone is what an interrupted `make frameworks` leaves: said as such, not "No module named paddle"
    with pytest.raises(UsageError, match=r"envs/paddle has no paddle or paddle2onnx: it was not finished") as err:
        resolve("paddle", "paddle_pir")
    assert "make frameworks" in err.value.hint
    site = managed.parent.parent / "lib" / "python3.11" / "site-packages"
    (site / "paddle").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"has no paddle2onnx: it was not finished"):
        resolve("paddle", "paddle_pir")
    (site / "paddle2onnx-2.1.0.dist-info").mkdir()
    (site / "paddle2onnx").mkdir()
    chosen = resolve("paddle", "paddle_pir")
    assert chosen.python == str(managed) and "make frameworks" in chosen.origin


def test_missing_paddle_stack_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVERTCTL_CACHE", str(tmp_path / "empty"))
    for stack in ("paddle", "paddle-legacy"):
        monkeypatch.delenv(env_var(stack), raising=False)
    with pytest.raises(UsageError) as err:
        resolve("paddle", "paddle_legacy")
    assert err.value.message == "no Python environment with paddle and paddle2onnx for paddle-legacy sources"
    assert "make frameworks" in err.value.hint and "paddle-legacy.txt" in err.value.hint
    assert "CONVERTCTL_PADDLE_LEGACY_PYTHON" in err.value.hint


@pytest.mark.frameworks
@pytest.mark.skipif(not (PADDLE3 / "bin" / "python").exists(), reason="`make frameworks` has not built the paddle env")
def test_legacy_model_falls_back_to_the_paddle3_stack_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVERTCTL_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv(env_var("paddle-legacy"), raising=False)
    monkeypatch.setenv(env_var("paddle"), str(PADDLE3 / "bin" / "python"))
    chosen = resolve("paddle", "paddle_legacy")
    assert chosen.stack == "paddle" and chosen.python == str(PADDLE3 / "bin" / "python")
    assert chosen.warning.startswith("legacy Paddle model converted with the Paddle 3 stack")


# -- a native crash in the child ---------------------------------------------------------------------------
CRASHING_FACTORY = """
import ctypes, sys
import torch


def crash():
    print("building the model, then a native crash", flush=True)
    ctypes.string_at(0)  # reads address 0: SIGSEGV in native code, as a framework bug would
"""


def test_a_segfault_in_the_export_child_is_one_clear_error(tmp_path, write_recipe):
    (tmp_path / "crash.py").write_text(CRASHING_FACTORY)
    recipe = write_recipe(small_cnn_recipe(source={"framework": "pytorch", "factory": "crash.py:crash"}))
    res = run_cli("run", recipe)
    assert_clean_error(res, EXIT_INTERNAL, "the export process was killed by signal SIGSEGV (a native crash) "
                                           "without a result", "building the model, then a native crash")
    assert "full log:" in res.stderr and (tmp_path / "out.partial" / "export" / "export.log").is_file()
    assert not (tmp_path / "out").exists()


# -- the Paddle pins stay out of convertctl's environment ---------------------------------------------------
def test_paddle_extras_equal_the_environment_pins():
    """`pip install 'convertctl[paddle]'` (in an environment of its own) and `make frameworks` install the same."""
    import tomllib

    from convertctl.frontends.interpreters import ENVS_DIR

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    for stack in ("paddle", "paddle-legacy"):
        pins = [line.strip() for line in (ENVS_DIR / f"{stack}.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
        assert extras[stack] == pins, stack


def test_an_onnx_pinned_by_paddle2onnx_here_is_said_loudly():
    from convertctl.frontends.interpreters import onnx_pin_problem

    versions = {"paddle2onnx": "2.1.0", "onnx": "1.17.0"}
    assert "pinned onnx to 1.17.0 for every stage" in onnx_pin_problem(versions.__getitem__)
    assert onnx_pin_problem({"paddle2onnx": "1.3.1", "onnx": "1.16.2"}.__getitem__) is None
    assert onnx_pin_problem({"paddle2onnx": "2.1.0", "onnx": "1.23.2"}.__getitem__) is None
    assert onnx_pin_problem() is None  # this environment: no paddle2onnx beside convertctl


# -- a hung export child is stopped -------------------------------------------------------------------------------
def test_a_hung_export_child_is_stopped_after_the_timeout_with_one_clear_line(tmp_path, monkeypatch):
    """A framework's child that never returns (a deadlocked exporter) is stopped with its whole process group,
    and the run gets one line naming the timeout and how to raise it."""
    import time

    from convertctl.errors import ConvertctlError
    from convertctl.frontends.child import TIMEOUT_ENV, run_child

    work = tmp_path / "work"
    work.mkdir()
    # a worker that starts a grandchild and waits forever: both must be gone after the stop
    (work / "hang_worker.py").write_text(
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "open('grandchild.pid', 'w').write(str(p.pid))\n"
        "time.sleep(600)\n")
    monkeypatch.setenv(TIMEOUT_ENV, "3")
    t0 = time.monotonic()
    with pytest.raises(ConvertctlError) as info:
        run_child("hang_worker", {}, work, "export")
    assert time.monotonic() - t0 < 30
    assert info.value.message == "the export process did not finish within 3 s and was stopped"
    assert TIMEOUT_ENV in info.value.hint and "export.log" in info.value.hint
    pid = int((work / "grandchild.pid").read_text())
    time.sleep(0.5)
    status = Path(f"/proc/{pid}/status")  # gone, or a zombie no one has reaped yet: not running either way
    assert not status.exists() or "\nState:\tZ" in status.read_text()
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(UsageError, match="is not a number of seconds"):
        run_child("hang_worker", {}, work, "export")
