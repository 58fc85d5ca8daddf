"""Shared helpers: small real models written as factory files, and running the real CLI (in this process by
default, in a fresh one with `run_cli(..., subprocess=True)`)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess as _subprocess
import sys
import tempfile
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# The stage cache (convertctl/stage_cache.py) is off in tests unless a test turns it on with a folder of its own:
# a test must see its stages computed, not a result an earlier test left in the user's cache.
os.environ["CONVERTCTL_STAGE_CACHE"] = "off"
IMAGES = REPO / "calib_data" / "images"

SMALL_MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn


    class SmallCNN(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
                nn.AdaptiveAvgPool2d(1),
            )
            self.head = nn.Linear(16, classes)

        def forward(self, x):
            return self.head(torch.flatten(self.features(x), 1))


    def small_cnn(classes=10):
        torch.manual_seed(0)
        model = SmallCNN(classes)
        # non-trivial BatchNorm statistics, so folding them is really exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        return model.eval()


    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 4)
            self.b = nn.Linear(3, 4)

        def forward(self, x, y):
            return self.a(x) + self.b(y), torch.relu(self.a(x))


    def two_inputs():
        torch.manual_seed(1)
        return TwoInputs().eval()


    class Branchy(nn.Module):
        # data-dependent control flow: torch.export (dynamo) refuses it, the legacy tracer takes one branch
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(x)
            return self.fc(-x)


    def branchy():
        torch.manual_seed(2)
        return Branchy().eval()


    def raises():
        raise RuntimeError("weights server unreachable")


    def not_a_module():
        return 42
    """
)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


# CONVERTCTL_TESTS_SUBPROCESS=1 runs every run_cli call in a fresh process, as before the in-process runner
# (to measure the difference, or to rule the runner out when a test fails).
SUBPROCESS_ENV = "CONVERTCTL_TESTS_SUBPROCESS"

# The commands that build artifacts, and so time them (verify.latency) unless told not to.
LATENCY_COMMANDS = {"run", "build", "quantize"}


def run_cli(*args, cwd=None, timeout=600, latency=False, subprocess=False) -> CliResult:
    """The real CLI: its exit code, stdout and stderr, with COLUMNS=200 and NO_COLOR=1.

    In this process by default (`convertctl.cli.main`, unsupervised: no child re-executes the command), which
    spares each call Python's start-up and the imports of torch and the runtimes. `subprocess=True` runs
    `python -m convertctl` in a fresh process instead, for the tests that are about processes: the real entry
    point and its supervisor, signals, a timeout on a command that could hang, state read at start-up.

    Latency measurement (a child process per artifact, a few seconds each) is the subject of
    tests/test_latency.py only: elsewhere `--no-latency` is added unless `latency=True`."""
    args = [str(a) for a in args]
    command = next((a for a in args if not a.startswith("-")), None)
    if not latency and command in LATENCY_COMMANDS and "--help" not in args:
        args.append("--no-latency")
    if not subprocess and os.environ.get(SUBPROCESS_ENV) != "1":
        return _run_in_process(args, cwd)
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    proc = _subprocess.run([sys.executable, "-m", "convertctl", *args], capture_output=True, text=True,
                           cwd=cwd, env=env, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _run_in_process(args: list[str], cwd) -> CliResult:
    """`convertctl ARGS` as a fresh process would see it, in this one. What a run changes for the process is put
    back afterwards: the environment (`main` sets CI, `--cache-dir` sets CONVERTCTL_STAGE_CACHE), the working
    folder, the CLI's flags, the stop-signal handlers and pending signal, the root logger, the warning filters.
    File descriptors 1 and 2 go to files for the run, so what native code and child processes print is captured
    as a subprocess's pipes would capture it; sys.stdout/stderr write straight to those descriptors (no buffer:
    the order of Python's and native output is kept)."""
    import threading

    from convertctl import processes
    from convertctl.cli import main, state

    if threading.current_thread() is not threading.main_thread():
        # the working folder, the environment and file descriptors 1 and 2 belong to the whole process
        raise RuntimeError("run_cli in a thread: concurrent runs need processes of their own (subprocess=True)")
    environ = dict(os.environ)
    folder = os.getcwd()
    flags = (state.verbose, state.quiet, state.json_output)
    handlers = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    streams = sys.stdout, sys.stderr
    saved_fds = []
    code = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, warnings.catch_warnings():
        _as_a_fresh_process_warns()
        try:
            for stream in streams:
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, file in ((1, out), (2, err)):
                saved_fds.append(os.dup(fd))
                os.dup2(file.fileno(), fd)
            sys.stdout, sys.stderr = _fd_writer(1), _fd_writer(2)
            os.environ.update(COLUMNS="200", NO_COLOR="1")
            if cwd is not None:
                os.chdir(cwd)
            state.verbose = state.quiet = state.json_output = False
            processes._pending = None
            try:
                main(args, supervised=False)
            except SystemExit as exc:
                code = _exit_code(exc.code)
        finally:
            for fd, saved in zip((1, 2), saved_fds, strict=False):
                os.dup2(saved, fd)
                os.close(saved)
            sys.stdout, sys.stderr = streams
            os.chdir(folder)
            os.environ.clear()
            os.environ.update(environ)
            state.verbose, state.quiet, state.json_output = flags
            processes._pending = None
            for s, handler in handlers.items():
                signal.signal(s, handler)
            root.setLevel(root_level)
            root.handlers[:] = root_handlers
        results = []
        for file in (out, err):
            file.seek(0)
            results.append(file.read().decode("utf-8", errors="replace"))
    return CliResult(code, *results)


def _fd_writer(fd: int) -> io.TextIOWrapper:
    """A text stream that writes each call straight to file descriptor `fd`. It never closes the descriptor:
    a logging handler that kept it (NNCF's writes to the sys.stdout it saw at import) writes to whatever the
    descriptor is then, the capture of a later run included, as it would in that run's fresh process."""
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                            write_through=True)


def _as_a_fresh_process_warns() -> None:
    """Python's default warning filters, shown on stderr: pytest's own filters and recorder are for the tests."""
    warnings.resetwarnings()
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _exit_code(value) -> int:
    """A process's exit status for `sys.exit(value)`."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


@pytest.fixture
def models_file(tmp_path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(SMALL_MODELS)
    return path


@pytest.fixture
def write_recipe(tmp_path):
    def write(data: dict, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def small_cnn_recipe(**overrides) -> dict:
    data = {
        "name": "small_cnn",
        "source": {"framework": "pytorch", "factory": "models.py:small_cnn"},
        "inputs": [{"name": "image", "shape": ["batch", 3, 32, 32], "range": [-1.0, 1.0]}],
        "samples": {"count": 4, "seed": 3},
        "targets": [
            {"runtime": "openvino", "precision": "fp32"},
            {"runtime": "openvino", "precision": "fp16"},
            {"runtime": "onnxruntime", "precision": "fp32"},
        ],
        "output": "out",
    }
    data.update(overrides)
    return data


def load_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())
