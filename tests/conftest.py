"""Shared helpers: small real models written as factory files, and running the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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


# The commands that build artifacts, and so time them (verify.latency) unless told not to.
LATENCY_COMMANDS = {"run", "build", "quantize"}


def run_cli(*args, cwd=None, timeout=600, latency=False) -> CliResult:
    """The real CLI in a subprocess. Latency measurement (a child process per artifact, a few seconds each) is
    the subject of tests/test_latency.py only: elsewhere `--no-latency` is added unless `latency=True`."""
    args = [str(a) for a in args]
    command = next((a for a in args if not a.startswith("-")), None)
    if not latency and command in LATENCY_COMMANDS and "--help" not in args:
        args.append("--no-latency")
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-m", "convertctl", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


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
