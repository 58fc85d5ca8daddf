"""convertctl sends nothing anywhere: OpenVINO's convert_model and NNCF would send usage telemetry (and write
a client id under ~/intel) on a machine without their consent file; convertctl's process turns it off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import load_manifest, small_cnn_recipe


@pytest.mark.slow
def test_an_openvino_build_writes_no_telemetry_client_id(tmp_path, models_file, write_recipe):
    home = tmp_path / "home"
    home.mkdir()
    recipe = write_recipe(small_cnn_recipe(targets=[{"runtime": "openvino", "precision": "fp32"}]))
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # as on a developer's machine
    env.update(HOME=str(home), NO_COLOR="1")
    res = subprocess.run([sys.executable, "-m", "convertctl", "run", str(recipe), "--no-latency"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert load_manifest(tmp_path / "out")["artifacts"][0]["status"] == "ok"  # convert_model did run
    assert not (home / "intel").exists(), sorted(p.name for p in (home / "intel").iterdir())
