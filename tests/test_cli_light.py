"""Start-up stays light: no heavy framework is imported to show help or validate a recipe."""

from __future__ import annotations

import subprocess
import sys

import pytest

from convertctl import __version__

from .conftest import REPO, run_cli

HEAVY = ("torch", "onnxruntime", "openvino", "tensorflow", "paddle", "onnx", "onnxslim", "onnxsim", "nncf", "tensorrt", "cuda")


def imported_top_modules(*args) -> set[str]:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['convertctl', *{list(args)!r}]\n"
        "try:\n    runpy.run_module('convertctl', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('MODULES', ' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("MODULES"))
    return set(line.split()[1:])


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["export", "--help"],
        ["check", "--help"],
        ["build", "--help"],
        ["optimize", "--help"],
        ["quantize", "--help"],
        ["recipe", "validate", "recipes/efficientnet_lite0.yaml"],
        ["targets"],
    ],
)
def test_no_heavy_imports(args):
    loaded = imported_top_modules(*args)
    assert loaded, "the probe printed no module list"
    assert "click" in loaded  # the probe really ran the CLI
    assert not (loaded & set(HEAVY)), f"{args} imported {sorted(loaded & set(HEAVY))}"


def test_version():
    res = run_cli("--version")
    assert res.code == 0 and __version__ in res.stdout


def test_every_command_has_help():
    for cmd in ("run", "export", "check", "optimize", "build", "quantize", "recipe", "targets"):
        res = run_cli(cmd, "--help")
        assert res.code == 0 and "Usage:" in res.stdout and "--help" in res.stdout, cmd


def test_unknown_command_is_usage_error():
    res = run_cli("convert-everything")
    assert res.code == 2 and "No such command" in res.stderr


def test_targets_json_lists_installed_runtimes():
    res = run_cli("targets", "--json")
    assert res.code == 0
    rows = {r["name"]: r for r in res.json()}
    assert set(rows) >= {"openvino", "onnxruntime"}
    assert rows["openvino"]["installed"] is True and rows["openvino"]["version"].startswith("20")
    assert rows["openvino"]["precisions"] == ["fp32", "fp16", "int8"]
