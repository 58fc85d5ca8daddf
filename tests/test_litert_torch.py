"""The litert target's PyTorch path: litert-torch (its own environment, `make frameworks`) converts the PyTorch model to
model.tflite through torch.export; ai-edge-litert's Interpreter (convertctl's environment) runs it, compared with torch
run here, not in the converter's environment.

The conversions need the litert-torch environment (<cache>/envs/litert-torch or $CONVERTCTL_LITERT_TORCH_PYTHON) and
take its start-up (torch, jax: ~10 s) plus seconds each: they are marked slow and frameworks. The refusals are fast.
"""

from __future__ import annotations

import importlib.util
import json
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from .conftest import IMAGES, REPO

CORPUS = REPO / "recipes" / "models" / "corpus"
FACTORIES = REPO / "recipes" / "corpus"
PNET = {"kind": "state_dict", "path": str(CORPUS / "mtcnn_pnet" / "pnet.pt"),
        "factory": f"{FACTORIES / 'mtcnn_pnet_model.py'}:build", "factory_args": {}}
ONET = {"kind": "state_dict", "path": str(CORPUS / "mtcnn_onet" / "onet.pt"),
        "factory": f"{FACTORIES / 'mtcnn_onet_model.py'}:build", "factory_args": {}}


def _has_env() -> bool:
    from convertctl.errors import UsageError
    from convertctl.targets.litert.torch_convert import interpreter

    try:
        interpreter()
    except UsageError:
        return False
    return True


needs_runtime = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None or
                                   importlib.util.find_spec("torch") is None,
                                   reason="needs convertctl[litert] and convertctl[torch] (the reference)")
needs_env = pytest.mark.skipif(not _has_env(), reason="needs the litert-torch environment (`make frameworks`, or "
                                                      "CONVERTCTL_LITERT_TORCH_PYTHON)")
needs_corpus = pytest.mark.skipif(not (CORPUS / ".complete").exists(), reason="the corpus is fetched by `make models`")


def _cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _torch_outputs(source: dict, feeds: dict) -> list[np.ndarray]:
    """The reference, computed in convertctl's own environment with the front end's model builder."""
    import torch

    from convertctl.frontends.pytorch.worker import build_model, flatten

    model = build_model(source).eval()
    with torch.inference_mode():
        return [t.numpy() for t in flatten(model(*[torch.from_numpy(a) for a in feeds.values()]))]


def _tflite_outputs(path, feeds: dict) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=1).get_signature_runner("serving_default")(**feeds)


def _mtcnn_images(size: int, count: int) -> list[np.ndarray]:
    """Real photographs as MTCNN takes them: RGB, NCHW, (pixel - 127.5) / 128, batch 1."""
    from PIL import Image

    files = sorted(IMAGES.glob("*.png"))[:count]
    return [((np.asarray(Image.open(f).convert("RGB").resize((size, size)), np.float32) - 127.5) / 128.0)
            .transpose(2, 0, 1)[None].copy() for f in files]


# ------------------------------------------------------------------------------------------------ fast

def test_the_pins_file_pins_litert_torch_and_torch_and_make_installs_torch_first():
    """Like env.txt for onnx2tf (test_litert_target.py): exact pins; torch is installed alone first (an exact pin
    picks the local CPU wheel) by the Makefile rule that `make frameworks` depends on."""
    from convertctl.targets.litert.torch_convert import PINS

    pins = dict(line.split("==") for line in PINS.read_text().splitlines() if "==" in line and
                not line.startswith("#"))
    assert pins["litert-torch"] == "0.10.0" and pins["torch"] == "2.13.0" and pins["ai-edge-quantizer"] == "0.10.0"
    assert all(v for v in pins.values())
    make = (REPO / "Makefile").read_text()
    assert re.search(r"^frameworks:.*\$\(ENVS\)/litert-torch/\.installed", make, re.M)
    rule = make.split("$(ENVS)/litert-torch/.installed: convertctl/targets/litert/torch-env.txt", 1)[1]
    rule = rule.split("\n\n", 1)[0]
    assert rule.index("grep -m1 '^torch==' $<") < rule.index("install -q -r $<")


def test_a_torchscript_source_is_refused_with_the_way_that_converts_it(tmp_path):
    from convertctl.errors import UsageError
    from convertctl.targets.litert.torch_convert import convert

    source = {"kind": "torchscript", "path": str(tmp_path / "m.pt"), "factory": None, "factory_args": {}}
    with pytest.raises(UsageError, match="TorchScript") as err:
        convert(source, {"x": np.zeros((1, 4), np.float32)}, "fp32", tmp_path / "out", 60)
    assert "onnx2tf" in err.value.hint and "torch.export" in str(err.value)


def test_int8_without_calibration_is_refused(tmp_path):
    from convertctl.errors import UsageError
    from convertctl.targets.litert.torch_convert import convert

    with pytest.raises(UsageError, match="calibration"):
        convert(ONET, {"image": np.zeros((1, 3, 48, 48), np.float32)}, "int8", tmp_path / "out", 60)


def _unfinished(env):
    """What an interrupted `make frameworks` leaves: bin/python, and a site-packages without the packages."""
    (env / "bin").mkdir(parents=True)
    (env / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    python = env / "bin" / "python"
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return python


def test_an_unfinished_environment_is_said_clearly(tmp_path, monkeypatch):
    from convertctl.errors import UsageError
    from convertctl.targets.litert.torch_convert import interpreter

    monkeypatch.delenv("CONVERTCTL_LITERT_TORCH_PYTHON", raising=False)
    monkeypatch.setenv("CONVERTCTL_CACHE", str(tmp_path / "cache"))
    _unfinished(tmp_path / "cache" / "envs" / "litert-torch")
    with pytest.raises(UsageError, match="was not finished") as err:
        interpreter()
    assert "litert_torch" in str(err.value) and "make frameworks" in err.value.hint

    # the same for an environment named by the variable
    monkeypatch.setenv("CONVERTCTL_LITERT_TORCH_PYTHON", str(_unfinished(tmp_path / "other")))
    with pytest.raises(UsageError, match="was not finished"):
        interpreter()


def test_no_environment_names_the_make_command(tmp_path, monkeypatch):
    from convertctl.errors import UsageError
    from convertctl.targets.litert.torch_convert import interpreter

    monkeypatch.delenv("CONVERTCTL_LITERT_TORCH_PYTHON", raising=False)
    monkeypatch.setenv("CONVERTCTL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UsageError, match="no Python environment with litert-torch") as err:
        interpreter()
    assert "make frameworks" in err.value.hint and "torch-env.txt" in err.value.hint


# ----------------------------------------------------------------------------------- conversions (slow)

@pytest.mark.slow
@pytest.mark.frameworks
@needs_runtime
@needs_env
def test_two_inputs_and_two_outputs_keep_their_names_and_match_torch(models_file, tmp_path):
    """forward(x, y) -> (a, b): the .tflite's inputs are named after the sample dict, its outputs by output_names."""
    from convertctl.targets.litert.torch_convert import convert

    source = {"kind": "factory", "path": None, "factory": f"{models_file}:two_inputs", "factory_args": {}}
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 6)).astype(np.float32), "y": rng.standard_normal((1, 3)).astype(np.float32)}
    got = convert(source, feeds, "fp32", tmp_path / "out", 600, output_names=["sum", "relu"])
    sig = got["signature"]
    assert [i["name"] for i in sig["inputs"]] == ["x", "y"] and {o["name"] for o in sig["outputs"]} == {"sum", "relu"}
    assert got["litert_torch"] == "0.10.0" and got["torch"].startswith("2.13.0")
    out = _tflite_outputs(tmp_path / "out" / "model.tflite", feeds)
    for name, ref in zip(["sum", "relu"], _torch_outputs(source, feeds), strict=True):
        assert _cosine(out[name], ref) >= 0.9999, name


@pytest.mark.slow
@pytest.mark.frameworks
@needs_runtime
@needs_env
@needs_corpus
@pytest.mark.parametrize("source,size,names", [(PNET, 160, ["boxes", "probs"]),
                                               (ONET, 48, ["boxes", "landmarks", "probs"])], ids=["pnet", "onet"])
def test_mtcnn_fp32_matches_torch(source, size, names, tmp_path):
    """The real MTCNN networks (facenet-pytorch weights) at their static sample shape, NCHW kept."""
    from convertctl.targets.litert.torch_convert import convert

    feeds = {"image": _mtcnn_images(size, 1)[0]}
    got = convert(source, feeds, "fp32", tmp_path / "out", 600, output_names=names)
    assert got["signature"]["inputs"] == [{"name": "image", "shape": [1, 3, size, size], "dtype": "float32"}]
    assert "litert_torch.convert(" in got["snippet"] and "edge.export('model.tflite')" in got["snippet"]
    out = _tflite_outputs(tmp_path / "out" / "model.tflite", feeds)
    for name, ref in zip(names, _torch_outputs(source, feeds), strict=True):
        assert out[name].shape == ref.shape
        assert _cosine(out[name], ref) >= 0.9999, name


@pytest.mark.slow
@pytest.mark.frameworks
@needs_runtime
@needs_env
@needs_corpus
def test_mtcnn_onet_fp16_and_int8(tmp_path):
    """fp16: float16 weights, half the size, as close as float; int8: full-integer, calibrated on 40 real photographs
    and judged on 10 others, float32 in and out by default, int8 in and out when asked (with the scales in the
    signature). Measured int8 cosines over the held-out outputs: boxes 0.95, landmarks 0.999, probs 0.999 (the box
    offsets are small numbers the int8 activations round most; ONNX Runtime's int8 of this model is no better)."""
    from convertctl.targets.litert.torch_convert import convert

    images = _mtcnn_images(48, 50)
    calibration, held = [{"image": np.concatenate(images[:40])}], images[40:]  # 40 rows of batch 1 = 40 samples
    feeds = {"image": held[0]}
    names = ["boxes", "landmarks", "probs"]
    fp16 = convert(ONET, feeds, "fp16", tmp_path / "fp16", 600, output_names=names)
    int8 = convert(ONET, feeds, "int8", tmp_path / "int8", 600, calibration, output_names=names)
    assert fp16["tflite_bytes"] < 0.55 * fp16["float_bytes"] and int8["tflite_bytes"] < 0.3 * int8["float_bytes"]
    assert int8["calibration_samples"] == 40 and int8["signature"]["inputs"][0]["dtype"] == "float32"
    ref, out16, out8 = ({n: [] for n in names} for _ in range(3))
    for image in held:
        for n, r in zip(names, _torch_outputs(ONET, {"image": image}), strict=True):
            ref[n].append(r)
        for got, model in ((out16, "fp16"), (out8, "int8")):
            outs = _tflite_outputs(tmp_path / model / "model.tflite", {"image": image})
            for n in names:
                got[n].append(outs[n])
    for n in names:
        assert _cosine(np.concatenate(out16[n]), np.concatenate(ref[n])) >= 0.9999, n
        assert _cosine(np.concatenate(out8[n]), np.concatenate(ref[n])) >= (0.9 if n == "boxes" else 0.99), n

    io8 = convert(ONET, feeds, "int8", tmp_path / "io8", 600, calibration, output_names=names, int8_io="int8")
    (image,) = io8["signature"]["inputs"]
    assert image["dtype"] == "int8" and image["quantization"]["scale"] > 0
    q = image["quantization"]
    fed = np.clip(np.round(feeds["image"] / q["scale"] + q["zero_point"]), -128, 127).astype(np.int8)
    out = _tflite_outputs(tmp_path / "io8" / "model.tflite", {"image": fed})
    for spec in io8["signature"]["outputs"]:
        deq = (out[spec["name"]].astype(np.float32) - spec["quantization"]["zero_point"]) * \
            spec["quantization"]["scale"]
        assert _cosine(deq, ref[spec["name"]][0]) >= (0.9 if spec["name"] == "boxes" else 0.99), spec["name"]


# ----------------------------------------------------------------------------------- through a run (the target)

def _pnet_recipe(tmp_path, targets: list[dict]) -> Path:
    import yaml

    recipe = yaml.safe_load((FACTORIES / "mtcnn_pnet.yaml").read_text())
    recipe["source"].update(path=PNET["path"], factory=PNET["factory"])
    recipe["calibration"].update(data=str(IMAGES), num_samples=40)
    recipe.update(targets=targets, output=str(tmp_path / "out"), verify={"latency": {"enabled": False}})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "recipe.yaml"


@pytest.mark.slow
@pytest.mark.frameworks
@needs_runtime
@needs_env
@needs_corpus
def test_a_run_builds_the_litert_target_with_litert_torch_and_verifies_it(tmp_path):
    """`converter: litert_torch` on the real MTCNN P-Net (a factory + state dict): fp32 and int8 built from the module
    itself, verified against PyTorch on held-out photographs, NCHW input kept, the reproducing script shipped."""
    from .conftest import load_manifest, run_cli

    recipe = _pnet_recipe(tmp_path, [{"runtime": "litert", "precision": p, "converter": "litert_torch"}
                                     for p in ("fp32", "int8")])
    res = run_cli("run", recipe)
    assert res.code == 0, res.stderr[-2000:]
    by_id = {a["id"]: a for a in load_manifest(tmp_path / "out")["artifacts"]}
    for aid, floor in (("litert_fp32", 0.9999), ("litert_int8", 0.98)):
        a = by_id[aid]
        assert a["status"] == "ok", a["reason"]
        assert a["settings"]["converter"].startswith("litert-torch 0.10.0 (torch 2.13.0")
        assert a["settings"]["layout"] == "source" and a["settings"]["fixed_input_shapes"] == {"image": [1, 3, 160, 160]}
        (gate, *_) = a["verification"]
        assert gate["passed"] and min(o["cosine"] for o in gate["outputs"].values()) >= floor, gate
        folder = tmp_path / "out" / "targets" / aid
        assert {"model.tflite", "signature.json", "kit.json", "convert_litert_torch.py",
                "litert_torch.samples.npz"} <= {p.name for p in folder.iterdir()}
        assert not (folder / "litert_torch").exists()  # the converter's working folder is not the artifact
        sig = json.loads((folder / "signature.json").read_text())
        assert [i["shape"] for i in sig["inputs"]] == [[1, 3, 160, 160]]  # NCHW: what the module takes
    assert by_id["litert_int8"]["settings"]["calibration_samples"] > 0
    assert "litert_torch.calibration.npz" in json.loads(
        (tmp_path / "out" / "targets" / "litert_int8" / "kit.json").read_text())["run_in"]


def test_litert_torch_on_an_onnx_source_is_a_usage_error(tmp_path):
    """Exit 2 and one line: litert-torch needs the PyTorch module; nothing built."""
    import onnx
    import yaml
    from onnx import TensorProto, helper

    from .conftest import run_cli

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    recipe = {"version": 1, "name": "relu", "source": {"framework": "onnx", "path": str(tmp_path / "m.onnx")},
              "targets": [{"runtime": "litert", "precision": "fp32", "converter": "litert_torch"}],
              "stages": ["export", "build"], "output": str(tmp_path / "out")}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    res = run_cli("run", tmp_path / "recipe.yaml")
    assert res.code == 2, res.stderr
    assert ("litert_fp32: converter: litert_torch converts PyTorch modules built by source.factory only; this run's "
            "source is onnx: use converter: onnx2tf (or auto)") in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()  # said before writing
