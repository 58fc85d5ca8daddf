"""INT8 and FP16 for models whose inputs are not all batched on axis 0, and fixed batches b > 1 everywhere.

A VAD-like model (audio `input` [batch, N], a recurrent `state` [2, batch, H] batched on axis 1, an int64 scalar
`sr` fed a fixed value) and image CNNs exported with a fixed batch of 2. Every stage that runs several samples
(calibration, emission checks, per-layer error, sensitivity, histograms, NNCF, the verification of every artifact)
must cut the samples along each input's own batch axis, feed a fixed batch exactly b samples per run (a short last
run padded with copies of its last sample, the padded rows dropped from the outputs), and give every input the data
its spec says (value, batch axis, scalar).

The bounds asserted follow from the method, not from one CPU: 8-bit activations and per-channel 8-bit weights (7
bits on CPUs without VNNI, `int8_form: auto` / NNCF's overflow fix) keep each quantized tensor near 40 dB SQNR;
the few layers in a chain here add their noise, so the outputs keep cosine >= 0.995 (cos ~ 1 - 1/(2 SNR): 30 dB
gives 0.9995), on any x86-64 CPU. FP16 keeps 11 significant bits: cosine >= 0.9999. Padded runs must give exactly
the rows unpadded runs give (the same kernels on copies of a sample): compared within 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convertctl.data.batching import Chunk, iter_runs, pad_to, run_in_chunks, stack, trim
from convertctl.quantize.batches import fixed_batch, model_runs, plan, run_session, run_size
from convertctl.recipe import DimRange, InputSpec

from .conftest import REPO, load_manifest, run_cli

INT8_COSINE, FP16_COSINE = 0.995, 0.9999
VAD = """
import torch
from torch import nn


class Vad(nn.Module):
    '''input [B, N] audio, state [2, B, 16] (two recurrent layers), sr [] int64 -> prob [B, 1], stateN [2, B, 16]'''

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 9, stride=4, padding=4)
        self.proj = nn.Linear(8, 16)
        self.mix = nn.Linear(16, 16)
        self.head = nn.Linear(16, 1)

    def forward(self, input, state, sr):
        x = torch.relu(self.conv(input[:, None, :])).mean(2)
        h = torch.tanh(self.proj(x) * (sr.float() / 16000.0))
        s0 = torch.tanh(self.mix(h) + state[0])
        s1 = torch.tanh(self.mix(s0) + state[1])
        return torch.sigmoid(self.head(s1)), torch.stack([s0, s1])


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 5, stride=4, padding=2)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x / 255.0)))
        x = torch.relu(self.c2(x)).mean((2, 3))
        return self.fc(x)
"""
N, H = 256, 16


def _modules():
    import torch

    scope: dict = {}
    exec(VAD, scope)  # noqa: S102 - the models above, defined once for every export
    torch.manual_seed(0)
    vad, cnn = scope["Vad"]().eval(), scope["Cnn"]()
    with torch.no_grad():
        cnn.bn.running_mean.uniform_(-0.5, 0.5)
        cnn.bn.running_var.uniform_(0.5, 2.0)
    return vad, cnn.eval()


def _export_vad(vad, path: Path, batch: int | None) -> Path:
    """batch None: a dynamic batch (input axis 0, state axis 1); else that fixed batch everywhere."""
    import torch

    b = batch or 1
    args = (torch.zeros(b, N), torch.zeros(2, b, H), torch.tensor(16000, dtype=torch.int64))
    dynamic = {"input": {0: "batch"}, "state": {1: "batch"}, "prob": {0: "batch"}, "stateN": {1: "batch"}}
    torch.onnx.export(vad, args, str(path), opset_version=17, dynamo=False, input_names=["input", "state", "sr"],
                      output_names=["prob", "stateN"], dynamic_axes=None if batch else dynamic)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> dict:
    import torch

    root = tmp_path_factory.mktemp("batch_axes")
    vad, cnn = _modules()
    found = {"root": root, "vad": _export_vad(vad, root / "vad.onnx", None),
             "vad_b2": _export_vad(vad, root / "vad_b2.onnx", 2)}
    torch.onnx.export(cnn, (torch.zeros(2, 3, 224, 224),), str(root / "cnn_b2.onnx"), opset_version=17,
                      dynamo=False, input_names=["x"], output_names=["logits"])
    found["cnn_b2"] = root / "cnn_b2.onnx"
    # audio-like frames: harmonic tones with a pitch glide, noise bursts and pauses, seeded
    rng = np.random.default_rng(0)
    t = np.arange(N) / 16000.0
    frames = []
    for i in range(96):
        kind = i % 4
        if kind == 3:
            frames.append(rng.normal(0, 0.003, N))
            continue
        f0 = rng.uniform(90, 250)
        x = sum(np.sin(2 * np.pi * f0 * k * t * (1 + 0.05 * t)) / k for k in range(1, 6)) * rng.uniform(0.1, 0.6)
        frames.append(x + rng.normal(0, 0.01 if kind else 0.1, N))
    np.savez(root / "frames.npz", input=np.asarray(frames, np.float32))
    found["frames"] = root / "frames.npz"
    return found


def _ort(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------ chunks, padding, trimming (data/batching.py)

AXES = {"input": 0, "state": 1, "sr": None}


def _feeds(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"input": rng.normal(size=(n, 6)).astype(np.float32),
            "state": rng.normal(size=(2, n, 4)).astype(np.float32), "sr": np.array(16000, np.int64)}


def _model(feeds, exact: int | None = None):
    """What a VAD model computes per sample; with `exact`, refuses a run of any other size (as ONNX Runtime does)."""
    n = feeds["input"].shape[0]
    if exact is not None:
        assert n == exact and feeds["state"].shape[1] == exact, f"Got: {n} Expected: {exact}"
    assert feeds["sr"].shape == ()
    out = feeds["input"].sum(1, keepdims=True) * feeds["sr"] / 16000
    return [out, np.tanh(feeds["state"] + out[None]), np.float32(feeds["sr"])]


def test_an_exact_batch_pads_the_short_last_run_along_each_axis():
    """61 held-out samples through a model that takes exactly 2: 31 runs, the last padded; the rows are the
    unchunked rows, the state output joined along its batch axis (1)."""
    feeds = _feeds(61)
    want = _model(feeds)
    runs = []

    def run(part):
        runs.append(part["input"].shape[0])
        return _model(part, exact=2)

    got = run_in_chunks(run, feeds, Chunk(2, AXES, exact=True))
    assert runs == [2] * 31
    assert got[0].shape == (61, 1) and got[1].shape == (2, 61, 4) and got[2].shape == (31,)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    # the samples yielded are the real ones only; a chunk that is not exact never pads
    parts = list(iter_runs(lambda p: _model(p), feeds, Chunk(8, AXES)))
    assert [m for _, m, _ in parts] == [8] * 7 + [5] and parts[-1][0]["state"].shape == (2, 5, 4)
    with pytest.raises(AssertionError, match="Got: 1 Expected: 2"):  # what the old code did: the last run short
        run_in_chunks(lambda p: _model(p, exact=2), feeds, Chunk(2, AXES))


def test_padding_copies_the_last_sample_and_trim_finds_the_batch_axis():
    feeds = _feeds(3)
    padded = pad_to(feeds, 5, AXES)
    assert padded["input"].shape == (5, 6) and padded["state"].shape == (2, 5, 4) and padded["sr"].shape == ()
    assert np.array_equal(padded["state"][:, 4], feeds["state"][:, 2])
    assert np.array_equal(padded["input"][3:], np.repeat(feeds["input"][2:], 2, axis=0))
    assert pad_to(feeds, 3, AXES) is feeds
    # a state [2, 2, 4] after a run of 2 padded from 1: two axes of length 2, the batch axis is the one whose
    # padded rows repeat the last real one (axis 1), not axis 0 (the two layers)
    state = np.stack([np.stack([np.full(4, 1.0), np.full(4, 1.0)]), np.stack([np.full(4, 7.0), np.full(4, 7.0)])])
    assert trim(state, 2, 1).shape == (2, 1, 4) and trim(state, 2, 1)[1, 0, 0] == 7.0
    logits = np.array([[0.1, 0.9], [0.1, 0.9]])  # [2, 2]: axis 0 repeats -> axis 0
    assert trim(logits, 2, 1).tolist() == [[0.1, 0.9]]
    assert trim(np.float32(3), 2, 1).shape == () and trim(np.zeros((3, 5)), 2, 1).shape == (3, 5)


def test_model_runs_stack_single_samples_along_their_axes():
    rng = np.random.default_rng(1)
    samples = [{"input": rng.normal(size=(1, 6)), "state": np.full((2, 1, 4), i, np.float32),
                "sr": np.array(16000, np.int64)} for i in range(5)]
    runs = list(model_runs(iter(samples), 2, AXES))
    assert [n for _, n in runs] == [2, 2, 1]
    assert all(f["state"].shape == (2, 2, 4) and f["input"].shape == (2, 6) and f["sr"].shape == () for f, _ in runs)
    assert runs[-1][0]["state"][0, :, 0].tolist() == [4.0, 4.0]  # the last sample, copied along axis 1
    assert [n for _, n in model_runs(iter(samples), None, AXES)] == [1] * 5
    assert stack(samples, AXES)["state"].shape == (2, 5, 4)


def test_the_fixed_batch_is_read_at_each_inputs_batch_axis():
    silero = {"input": ["batch", "sequence"], "state": [2, "batch", 128], "sr": []}
    assert fixed_batch(list(silero.values())) == 2  # read at axis 0, a state's first dim looks like a batch
    assert fixed_batch(silero, AXES) is None  # at its batch axis it is dynamic
    assert fixed_batch({"input": [2, 576], "state": [2, 2, 128], "sr": []}, AXES) == 2
    assert fixed_batch({"x": [3, "n"], "y": [5]}, {"x": None}) == 5
    assert run_size(silero, Chunk(8, AXES)) is None  # dynamic: one sample per calibration run
    assert run_size(silero, Chunk(2, AXES, exact=True)) == 2  # a batch the recipe pins

    class Sess:
        def get_inputs(self):
            class Arg:
                def __init__(self, name, shape):
                    self.name, self.shape = name, shape
            return [Arg("input", [2, 576]), Arg("state", [2, 2, 128]), Arg("sr", [])]

    chunk = plan(Sess(), Chunk(8, AXES))
    assert int(chunk) == 2 and chunk.exact and chunk.axes == AXES
    assert plan(Sess(), None) == 2  # without axes: axis 0, as before


# ------------------------------------------------------------------ calibration data (quantize/calib_data.py)

def _calib(path, inputs, **kw):
    from convertctl.quantize.calib_data import CalibrationData
    from convertctl.quantize.spec import CalibrationSpec

    return CalibrationData(CalibrationSpec(data=path, **kw), inputs, {"batch": DimRange(max=4)}, None)


VAD_INPUTS = [InputSpec(name="input", shape=["batch", N], range=(-1, 1)),
              InputSpec(name="state", shape=[2, "batch", H], batch_axis=1, value=0.0),
              InputSpec(name="sr", shape=[], dtype="int64", value=16000)]


def test_inputs_beside_the_calibrated_one_follow_their_spec(folder):
    data = _calib(folder["frames"], VAD_INPUTS, input="input", num_samples=40, holdout=0.25)
    sample = next(data.calibration())
    assert sample.feeds["input"].shape == (1, N)
    assert sample.feeds["state"].shape == (2, 1, H) and not sample.feeds["state"].any()  # value 0.0, axis 1
    assert sample.feeds["sr"].shape == () and sample.feeds["sr"] == 16000 and sample.feeds["sr"].dtype == np.int64
    assert "state: [2, 1, 16] per sample filled with 0.0 (batched along axis 1)" in data.description
    assert "sr: [] per sample filled with 16000 (not batched" in data.description
    batch = next(data.batches("evaluation", 4))
    assert batch["state"].shape == (2, 4, H) and batch["sr"].shape == () and batch["input"].shape == (4, N)
    # the value is part of the data's hash: a cached calibration table of another state is not reused
    other = [VAD_INPUTS[0], InputSpec(name="state", shape=[2, "batch", H], batch_axis=1, value=0.5), VAD_INPUTS[2]]
    assert _calib(folder["frames"], other, input="input", num_samples=40, holdout=0.25).sha256 != data.sha256


def test_a_calibrated_input_batched_on_another_axis(tmp_path):
    """x [4, batch]: a file holds samples [4] (or a batch [N, 4]); each feeds x as [4, 1]."""
    np.save(tmp_path / "x.npy", np.arange(40, dtype=np.float32).reshape(10, 4))
    data = _calib(tmp_path / "x.npy", [InputSpec(name="x", shape=[4, "batch"], batch_axis=1)], holdout=0.0)
    feeds = [s.feeds["x"] for s in data.calibration()]
    assert len(feeds) == 10 and feeds[0].shape == (4, 1) and feeds[3][:, 0].tolist() == [12, 13, 14, 15]
    from convertctl.errors import UsageError

    with pytest.raises(UsageError, match=r"calibration.input 'sr' is not batched \(a scalar\)"):
        _calib(tmp_path / "x.npy", VAD_INPUTS, input="sr")


# ------------------------------------------------------------------ FP16 and Q/DQ of models with If bodies

def _if_model(path: Path) -> Path:
    """y = If(flag, then: Pow(x @ W, 2) + x @ W, else: (x @ W) * k): the FP16 converter keeps Pow in FP32 and puts
    its Casts in the main graph, where `a` (defined in the branch) does not exist; both branches hold an
    initializer named `k` (as spox writes silero-vad), on which the converter asserts."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    then = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["a"], name="mm_then"),
                              helper.make_node("Pow", ["a", "two"], ["p"], name="pow"),
                              helper.make_node("Add", ["p", "a"], ["q"], name="add"),
                              helper.make_node("Mul", ["q", "k"], ["y_then"], name="scale_then")],
                             "then", [], [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, ["batch", 3])],
                             [numpy_helper.from_array(np.array(0.5, np.float32), "k")])
    other = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["b"], name="mm_else"),
                               helper.make_node("Mul", ["b", "k"], ["y_else"], name="scale_else")],
                              "else", [], [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, ["batch", 3])],
                              [numpy_helper.from_array(np.array(2.0, np.float32), "k")])
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other, name="branch")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w, two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def test_fp16_of_a_model_with_if_bodies_is_valid_and_close(tmp_path):
    from convertctl.quantize.emit import emit_fp16, weighted_layers

    src = _if_model(tmp_path / "if.onnx")
    info = emit_fp16(src, tmp_path / "if.fp16.onnx", None, 32752.0)  # the full checker ran on the file written
    assert info["casts_moved_into_subgraphs"] >= 1 and info["initializers_renamed_in_subgraphs"] == 1
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    for flag in (True, False):
        feeds = {"x": x, "flag": np.array(flag)}
        want, got = _ort(src).run(None, feeds)[0], _ort(tmp_path / "if.fp16.onnx").run(None, feeds)[0]
        cos = float(np.sum(want * got) / np.linalg.norm(want) / np.linalg.norm(got))
        assert cos >= FP16_COSINE
    assert weighted_layers(src) == (0, 2)  # both MatMuls sit in If bodies: ONNX Runtime's Q/DQ leaves them float


def test_fp16_keeps_one_cast_per_tensor_read_by_several_fp32_nodes(tmp_path):
    """m feeds Sqrt and Tanh, both kept FP32: the converter adds two identical `m_cast_to_fp32` Casts (not SSA)."""
    from convertctl.quantize.emit import emit_fp16

    a = numpy_helper.from_array(np.array(1.5, np.float32), "a")
    nodes = [helper.make_node("Mul", ["x", "a"], ["m"], name="mul"), helper.make_node("Sqrt", ["m"], ["s"], name="sqrt"),
             helper.make_node("Tanh", ["m"], ["t"], name="tanh"), helper.make_node("Add", ["s", "t"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])], [a])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "m.onnx"))
    info = emit_fp16(tmp_path / "m.onnx", tmp_path / "m.fp16.onnx", None, 32752.0, exclude_ops=["Sqrt", "Tanh"])
    assert info["duplicate_casts_dropped"] == 1
    x = {"x": np.array([0.5, 1, 2, 3], np.float32)}
    np.testing.assert_allclose(_ort(tmp_path / "m.fp16.onnx").run(None, x)[0], _ort(tmp_path / "m.onnx").run(None, x)[0],
                               rtol=2e-3)


# ------------------------------------------------------------------ end to end

def _artifact(manifest: dict, ident: str) -> dict:
    return next(a for a in manifest["artifacts"] if a["id"] == ident)


def _stage(manifest: dict, name: str) -> dict:
    return next(s for s in manifest["stages"] if s["name"] == name)


def _cosines(artifact: dict) -> dict[str, float]:
    return {k: v["cosine"] for k, v in artifact["verification"][0]["outputs"].items()}


def _vad_recipe(folder, model: str, batch, out: str) -> Path:
    import yaml

    shape = [batch or "batch", N]
    recipe = {
        "name": out, "source": {"framework": "onnx", "path": str(folder[model])},
        "inputs": [{"name": "input", "shape": shape, "range": [-1.0, 1.0]},
                   {"name": "state", "shape": [2, batch or "batch", H], "batch_axis": 1, "value": 0.0},
                   {"name": "sr", "shape": [], "dtype": "int64", "value": 16000}],
        "calibration": {"data": str(folder["frames"]), "input": "input", "num_samples": 70, "holdout": 0.26},
        "output": str(folder["root"] / out),
    }
    if not batch:
        recipe["dims"] = {"batch": {"min": 1, "opt": 1, "max": 4}}
    path = folder["root"] / f"{out}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def vad_runs(folder, tmp_path_factory) -> dict:
    """`quantize --int8 --fp16` of the VAD model with a dynamic batch (state batched on axis 1, run 4 at a time)
    and exported with a fixed batch of 2 (state [2, 2, 16]: two axes of the run's size), 25 held-out samples."""
    done = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONVERTCTL_CACHE", str(tmp_path_factory.mktemp("calib_cache")))
        for model, batch in (("vad", None), ("vad_b2", 2)):
            recipe = _vad_recipe(folder, model, batch, f"q_{model}")
            res = run_cli("quantize", recipe, "--int8", "--fp16", "-t", "onnxruntime", "-t", "openvino",
                          "-t", "tensorrt", cwd=folder["root"])
            assert res.code == 0, res.stderr
            done[model] = load_manifest(folder["root"] / f"q_{model}")
    return done


@pytest.mark.parametrize("model", ["vad", "vad_b2"])
def test_vad_int8_and_fp16_follow_the_batch_axes(vad_runs, folder, model):
    m = vad_runs[model]
    assert m["samples"]["shapes"] == {"input": [25, N], "state": [2, 25, H], "sr": []}
    for ident in ("onnxruntime_int8", "openvino_int8"):
        art = _artifact(m, ident)
        assert art["status"] == "ok"
        assert min(_cosines(art).values()) >= INT8_COSINE, (ident, _cosines(art))
    for ident in ("onnxruntime_fp16", "openvino_fp16"):
        assert min(_cosines(_artifact(m, ident)).values()) >= FP16_COSINE
    assert _artifact(m, "tensorrt_int8")["status"] in ("skipped", "ok")  # a kit here; its ONNX judged in ORT
    stage = _stage(m, "quantize")
    assert stage["details"]["calibration"]["num_samples"] == 70
    out = folder["root"] / f"q_{model}" / "quantize"
    layers = json.loads((out / "layer_errors.json").read_text())
    assert {r["op"] for r in layers} >= {"Conv", "Gemm"} and all(r["sqnr_db"] > 20 for r in layers)
    sensitivity = json.loads((out / "sensitivity.json").read_text())
    assert sensitivity and {r["samples"] for r in sensitivity} == {8}
    assert json.loads((out / "histograms.json").read_text())["samples"] == 25
    ov = _artifact(m, "openvino_int8")["settings"]
    if model == "vad_b2":  # NNCF got runs of 2 samples (70 samples: 35 runs), stacked along each axis
        assert ov["calibration_runs"] == 35 and ov["subset_size"] == 70
    else:
        assert "calibration_runs" not in ov


def test_the_fixed_batch_vad_matches_the_dynamic_one(vad_runs, folder):
    """The same samples, run 2 at a time (the last padded) or 4 at a time: the same outputs."""
    feeds = dict(np.load(folder["root"] / "q_vad_b2" / "samples.npz"))
    axes = {"input": 0, "state": 1, "sr": None}
    fixed = run_session(_ort(folder["vad_b2"]), feeds, Chunk(2, axes, exact=True))
    dynamic = run_session(_ort(folder["vad"]), feeds, Chunk(4, axes))
    assert fixed[1].shape == dynamic[1].shape == (2, 25, H)
    for a, b in zip(fixed, dynamic, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_fixed_batch_2_image_model_quantizes_for_every_target(folder, tmp_path):
    """The CLI alone, real images: 304 views, 61 held out (odd: the last run is padded), 100 calibration samples
    fed 2 at a time to ONNX Runtime's calibrator and to NNCF."""
    out = tmp_path / "q"
    res = run_cli("quantize", folder["cnn_b2"], "--int8", "--calib", REPO / "calib_data" / "images",
                  "-t", "onnxruntime", "-t", "openvino", "-t", "tensorrt", "-o", out, cwd=tmp_path)
    assert res.code in (0, 4), res.stderr
    assert "Traceback" not in res.stderr and "Expected: 2" not in res.stderr
    m = load_manifest(out)
    assert m["samples"]["shapes"] == {"x": [61, 3, 224, 224]}
    for ident in ("onnxruntime_int8", "openvino_int8"):
        art = _artifact(m, ident)
        assert art["status"] in ("ok", "failed"), art.get("reason")
        assert min(_cosines(art).values()) >= INT8_COSINE, (ident, _cosines(art))
    assert _artifact(m, "openvino_int8")["settings"]["calibration_runs"] == 50
    assert _artifact(m, "tensorrt_int8")["status"] in ("skipped", "ok", "failed")
    assert json.loads((out / "quantize" / "histograms.json").read_text())["samples"] == 32
