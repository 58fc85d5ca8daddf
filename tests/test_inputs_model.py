"""The inputs model: dynamic dims are never silently 1, and inputs beyond one image batch.

Dims get a size from the recipe (or --dim), the data, the model's metadata, or the run stops with exit 2 naming
each one; `check` names them as --dim and a recipe take them. Inputs have a batch axis of their own (or none),
scalars, integer and boolean values, fixed values; samples, chunks and the latency feed follow them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convertctl.data.batching import Chunk, chunk_size, join, run_in_chunks, stack
from convertctl.data.dims import auto_name, dim_name, parse_dim_option
from convertctl.data.inputs import inputs_from_model, resolve_dims
from convertctl.data.samples import build_samples, one_sample
from convertctl.errors import RecipeError, UsageError
from convertctl.model import TensorInfo
from convertctl.recipe import DimRange, InputSpec, Samples, parse_recipe

from .conftest import run_cli

# ---------------------------------------------------------------------------------------------- models

def _save(model, path):
    import onnx

    model.ir_version = 10  # onnx 1.23 stamps IR 14, which ONNX Runtime 1.31 refuses
    onnx.save(model, str(path))
    return path


def detector(path, dims=("p2o.DynamicDimension.0", "p2o.DynamicDimension.1", "p2o.DynamicDimension.2"), meta=None):
    """A detector-like model: x [N, 3, H, W] -> sigmoid(conv3x3(x)) [N, 1, H, W], dims named like paddle2onnx's."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (1, 3, 3, 3)).astype(np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [dims[0], 3, dims[1], dims[2]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], 1, dims[1], dims[2]])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                               helper.make_node("Sigmoid", ["c"], ["y"])], "det", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    return _save(model, path)


def stateful(path, named=True):
    """A VAD-like model: input [B, N] audio, sr [] int64, state [2, B, 4] -> output [B, 1], stateN [2, B, 4].
    output = mean(input) * sr / 16000; stateN = 0.5 * state + output (broadcast over the state's last axis)."""
    from onnx import TensorProto, helper, numpy_helper

    b, n = ("batch", "sequence") if named else ("", "")
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, n]),
              helper.make_tensor_value_info("sr", TensorProto.INT64, []),
              helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, b, 4])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [b, 1]),
               helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, b, 4])]
    inits = [numpy_helper.from_array(np.float32(16000.0), "k"), numpy_helper.from_array(np.float32(0.5), "half")]
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["srf", "k"], ["scale"]),
             helper.make_node("Mul", ["m", "scale"], ["output"]),
             helper.make_node("Mul", ["state", "half"], ["s2"]),
             helper.make_node("Add", ["s2", "output"], ["stateN"])]
    graph = helper.make_graph(nodes, "vad", inputs, outputs, inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def recipe(data: dict, base):
    return parse_recipe({"name": "t", **data}, base)


# ---------------------------------------------------------------------------------------------- names

def test_dim_names_one_convention():
    assert dim_name("x", 0, "p2o.DynamicDimension.0") == "batch"  # converter names and unnamed dims
    assert dim_name("x", 2, "p2o.DynamicDimension.1") == "x_2"
    assert dim_name("x", 3, "?") == "x_3" and dim_name("x", 1, "") == "x_1" and dim_name("x", 1, -1) == "x_1"
    assert dim_name("x", 1, "unk__12") == "x_1"  # tf2onnx's placeholders are not names someone chose
    assert dim_name("x", 1, "seq_len") == "seq_len" and dim_name("x", 1, 7) == 7
    assert auto_name("save_infer_model/scale_0.tmp_1", 2) == "save_infer_model_scale_0_tmp_1_2"
    assert auto_name("1x", 1) == "_1x_1"
    assert parse_dim_option("x_2=640") == ("x_2", (640, 640, 640))
    assert parse_dim_option("batch=1:16") == ("batch", (1, 1, 16))
    assert parse_dim_option("batch=1:4:16") == ("batch", (1, 4, 16))
    for bad in ("p2o.DynamicDimension.1=640", "x_2=0", "x_2=8:4", "x_2", "x_2=a"):
        with pytest.raises(UsageError, match="--dim"):
            parse_dim_option(bad)


def test_inputs_read_from_a_model_get_usable_names_batch_axes_and_scalars():
    declared, notes = inputs_from_model([TensorInfo("input", ["?", "?"], "float32"),
                                         TensorInfo("state", [2, "?", 128], "float32"),
                                         TensorInfo("sr", [], "int64")])
    assert [d["shape"] for d in declared] == [["batch", "input_1"], [2, "state_1", 128], []]
    assert declared[2]["batch_axis"] is None and "batch_axis" not in declared[1]  # unnamed: nothing ties them
    declared, notes = inputs_from_model([TensorInfo("input", ["batch", "sequence"], "float32"),
                                         TensorInfo("state", [2, "batch", 128], "float32")])
    assert declared[1]["batch_axis"] == 1 and "batched along axis 1" in notes[0]


# ---------------------------------------------------------------------------------------------- recipe

def test_recipe_declares_batch_axis_scalars_and_values(tmp_path):
    r = recipe({"source": {"framework": "onnx", "path": "m.onnx"},
                "inputs": [{"name": "input", "shape": ["batch", 512]},
                           {"name": "state", "shape": [2, "batch", 128], "batch_axis": 1, "value": 0},
                           {"name": "sr", "shape": [], "dtype": "int64", "value": 16000},
                           {"name": "mask", "shape": ["batch", 512], "dtype": "bool", "value": True},
                           {"name": "step", "shape": [1], "dtype": "int8", "range": [-3, 3], "batch_axis": None}],
                "dims": {"batch": {"max": 4}}}, tmp_path)
    state, sr, mask, step = r.inputs[1:]
    assert state.batch_axis == 1 and sr.batch_axis is None and sr.value == 16000 and isinstance(sr.value, int)
    assert mask.value is True and step.batch_axis is None
    bad = {"source": {"framework": "onnx", "path": "m.onnx"}}
    cases = [
        ([{"name": "sr", "shape": [], "batch_axis": 0}], "inputs[0]: Value error, batch_axis 0: a scalar"),
        ([{"name": "x", "shape": [2, 3], "batch_axis": 2}], "batch_axis 2 is not an axis of shape [2, 3]"),
        ([{"name": "sr", "shape": [], "dtype": "int64", "value": 0.5}], "inputs[0].value: value 0.5 does not fit int64"),
        ([{"name": "m", "shape": [1], "dtype": "bool", "value": 2}], "value 2 of a bool input must be true or false"),
        ([{"name": "u", "shape": [1], "dtype": "uint8", "value": 300}], "value 300 does not fit uint8"),
    ]
    for inputs, message in cases:
        with pytest.raises(RecipeError) as err:
            recipe({**bad, "inputs": inputs}, tmp_path)
        assert message.replace("Value error, ", "") in err.value.message


def test_dims_take_a_size_and_refuse_names_no_input_has(tmp_path):
    src = {"source": {"framework": "onnx", "path": "m.onnx"},
           "inputs": [{"name": "x", "shape": ["batch", 3, "x_2", "x_3"]}]}
    r = recipe({**src, "dims": {"x_2": 640, "x_3": {"opt": 480}}}, tmp_path)
    assert (r.dims["x_2"].min, r.dims["x_2"].opt, r.dims["x_2"].max) == (640, 640, 640)
    assert (r.dims["x_3"].min, r.dims["x_3"].value, r.dims["x_3"].max) == (1, 480, 480)  # max follows opt
    assert not r.dims["batch"].model_fields_set  # filled in: a default, not the recipe's
    with pytest.raises(RecipeError, match=r"dims.p2o.DynamicDimension.1: no input has a dim of that name; the "
                                          r"inputs' dynamic dims are: batch, x_2, x_3"):
        recipe({**src, "dims": {"p2o.DynamicDimension.1": 640}}, tmp_path)


# ---------------------------------------------------------------------------------------------- samples

def test_samples_follow_each_inputs_batch_axis_and_value():
    inputs = [InputSpec(name="input", shape=["batch", 16], range=(-1, 1)),
              InputSpec(name="state", shape=[2, "batch", 4], batch_axis=1),
              InputSpec(name="sr", shape=[], dtype="int64", value=16000),
              InputSpec(name="flags", shape=["batch", 3], dtype="bool")]
    dims = {"batch": DimRange(max=3)}
    s = build_samples(inputs, dims, Samples(count=8))
    assert s.feeds["input"].shape == (8, 16) and s.feeds["state"].shape == (2, 8, 4)  # not [8, 1, 4]
    assert s.feeds["sr"].shape == () and s.feeds["sr"] == 16000 and s.feeds["sr"].dtype == np.int64
    assert s.feeds["flags"].dtype == bool and s.notes == []
    assert "batched along axis 1" in s.description and "not batched" in s.description
    chunk = chunk_size(inputs, dims)
    assert chunk == 3 and chunk.axes == {"input": 0, "state": 1, "sr": None, "flags": 0}
    seen = []

    def run(feeds):
        seen.append({k: v.shape for k, v in feeds.items()})
        return [feeds["input"].sum(axis=1), feeds["state"].sum(axis=(0, 2)), np.float32(feeds["sr"])]

    out = run_in_chunks(run, s.feeds, chunk)
    assert [x["state"] for x in seen] == [(2, 3, 4), (2, 3, 4), (2, 2, 4)] and all(x["sr"] == () for x in seen)
    assert np.allclose(out[0], s.feeds["input"].sum(axis=1)) and np.allclose(out[1], s.feeds["state"].sum(axis=(0, 2)))
    assert out[2].shape == (3,)  # a 0-d output of each run, stacked


def test_a_state_fed_as_given_pins_the_batch():
    """state [2, batch, 4] not batched: every run gets that one tensor, so every run holds dims.batch samples."""
    inputs = [InputSpec(name="input", shape=["batch", 16]),
              InputSpec(name="state", shape=[2, "batch", 4], batch_axis=None, value=0.0)]
    dims = {"batch": DimRange(min=2, max=4)}  # value: min (2)
    s = build_samples(inputs, dims, Samples(count=7))
    assert s.feeds["input"].shape == (6, 16) and s.feeds["state"].shape == (2, 2, 4)
    assert s.notes == ["samples.count 7 changed to 6: input 'input' has its batch dim 'batch' fixed to 2 (another "
                       "input has it as a plain dim)"]
    assert chunk_size(inputs, dims) == 2
    only = build_samples([InputSpec(name="sr", shape=[], dtype="int64", value=8000)], {}, Samples(count=8))
    assert only.feeds["sr"].shape == () and "changed to 1: no input is batched" in only.notes[0]


def test_stack_and_one_sample_follow_batch_axes():
    rng = np.random.default_rng(0)
    specs = [InputSpec(name="state", shape=[2, "batch", 4], batch_axis=1),
             InputSpec(name="sr", shape=[], dtype="int64", value=16000)]
    dims = {"batch": DimRange()}
    one = [{s.name: one_sample(s, dims, rng) for s in specs} for _ in range(3)]
    assert one[0]["state"].shape == (2, 1, 4) and one[0]["sr"].shape == ()
    stacked = stack(one, {"state": 1, "sr": None})
    assert stacked["state"].shape == (2, 3, 4) and stacked["sr"].shape == ()
    assert join([[np.float32(1)], [np.float32(2)]])[0].tolist() == [1.0, 2.0]
    # a state output after a shorter last run joins along its batch axis; runs of one size along axis 0 as before
    parts = [[np.zeros((2, 3, 4)), np.zeros((3, 1))], [np.ones((2, 1, 4)), np.ones((1, 1))]]
    assert [o.shape for o in join(parts, [3, 1])] == [(2, 4, 4), (4, 1)]
    assert join([[np.zeros((2, 3, 4))], [np.ones((2, 3, 4))]], [3, 3])[0].shape == (4, 3, 4)


def test_latency_feed_cuts_each_input_on_its_axis(tmp_path):
    from convertctl.evaluate.latency_worker import fixed_batch

    np.savez(tmp_path / "s.npz", input=np.arange(12, dtype=np.float32).reshape(6, 2),
             state=np.arange(24, dtype=np.float32).reshape(2, 3, 4), sr=np.array(16000))
    feeds = fixed_batch(tmp_path / "s.npz", 4, {"input": 0, "state": 1, "sr": None})
    assert feeds["input"].shape == (4, 2) and feeds["state"].shape == (2, 4, 4) and feeds["sr"].shape == ()
    assert feeds["state"][:, 3].tolist() == feeds["state"][:, 0].tolist()  # cycled along axis 1
    assert fixed_batch(tmp_path / "s.npz", 2)["state"].shape == (2, 3, 4)  # default: axis 0


# ---------------------------------------------------------------------------------------------- resolution

def test_dims_come_from_the_recipe_the_data_the_metadata_or_stop(tmp_path):
    spec = [InputSpec(name="x", shape=["batch", 3, "x_2", "x_3"])]
    base = {"source": {"framework": "onnx", "path": "m.onnx"}}
    with pytest.raises(UsageError) as err:
        resolve_dims(recipe(base, tmp_path), spec)
    assert err.value.message == ("dynamic dims without a size to verify at: x_2 (input 'x' axis 2), x_3 (input 'x' "
                                 "axis 3); set each with --dim x_2=N --dim x_3=N or in the recipe: dims: {x_2: N, "
                                 "x_3: N}")
    assert "batch dim" in err.value.hint
    # the model's metadata: an image size
    r = recipe(base, tmp_path)
    dims, notes = resolve_dims(r, spec, {"imgsz": "[480, 640]"})
    assert (dims["x_2"].value, dims["x_3"].value) == (480, 640) and "the model's metadata (imgsz" in notes[0]
    assert dims["batch"].max == 8 and not dims["batch"].model_fields_set  # a batch dim keeps its default
    assert "x_2" not in r.dims  # the recipe itself is never changed: the resolved dims are a new dict
    # the data wins over the metadata; the most common size of the images, the others fitted to it
    folder = images(tmp_path / "img", [(32, 48), (32, 48), (40, 40)])
    r = recipe({**base, "samples": {"images": str(folder)}}, tmp_path)
    dims, notes = resolve_dims(r, spec, {"imgsz": "640"})
    assert (dims["x_2"].value, dims["x_3"].value) == (32, 48) and "2 of 3" in notes[0]
    # a crop the recipe sets is the data's size; the recipe's dims win over everything
    r = recipe({**base, "samples": {"images": str(folder), "preprocess": {"resize": 40, "crop": 36}}}, tmp_path)
    dims, _ = resolve_dims(r, spec)
    assert (dims["x_2"].value, dims["x_3"].value) == (36, 36)
    r = recipe({**base, "samples": {"images": str(folder)}, "dims": {"x_2": 64, "x_3": 96}}, tmp_path)
    dims, notes = resolve_dims(r, spec)
    assert notes == [] and dims["x_3"].value == 96
    with pytest.raises(UsageError, match="dims.y: no input has a dim of that name"):
        resolve_dims(recipe({**base, "dims": {"y": 3}}, tmp_path), spec)


def test_calibration_tensors_give_their_size(tmp_path):
    np.save(tmp_path / "audio.npy", np.zeros((10, 320), np.float32))
    spec = [InputSpec(name="input", shape=["batch", "input_1"])]
    r = recipe({"source": {"framework": "onnx", "path": "m.onnx"},
                "calibration": {"data": str(tmp_path / "audio.npy")}}, tmp_path)
    dims, notes = resolve_dims(r, spec)
    assert dims["input_1"].value == 320 and "calibration tensors (audio.npy: [10, 320])" in notes[0]


def test_images_are_fitted_to_dynamic_dims(tmp_path):
    folder = images(tmp_path / "img", [(20, 60), (50, 30)])
    spec = [InputSpec(name="x", shape=["batch", 3, "h", "w"])]
    s = build_samples(spec, {"batch": DimRange(), "h": DimRange(min=24, max=24), "w": DimRange(min=32, max=32)},
                      Samples(images=folder, count=2))
    assert s.feeds["x"].shape == (2, 3, 24, 32) and "at 24x32" in s.description
    gray = build_samples([InputSpec(name="x", shape=["batch", 1, 8, 8])], {"batch": DimRange()},
                         Samples(images=folder, count=2, preprocess={"resize": 8, "crop": 8}))
    assert gray.feeds["x"].shape == (2, 1, 8, 8)  # one channel: grayscale


# ---------------------------------------------------------------------------------------------- CLI

def test_detector_dims_stop_the_run_then_check_dim_and_recipe_set_them(tmp_path, write_recipe):
    det = detector(tmp_path / "det.onnx")
    res = run_cli("build", det, "-t", "onnxruntime", "--no-optimize", "-o", tmp_path / "o", cwd=tmp_path)
    assert res.code == 2, res.stderr
    assert ("error: dynamic dims without a size to verify at: x_2 (input 'x' axis 2), x_3 (input 'x' axis 3); set "
            "each with --dim x_2=N --dim x_3=N or in the recipe: dims: {x_2: N, x_3: N}") in res.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()  # stopped before any work
    # check names the dims as --dim takes them, and takes them
    res = run_cli("check", det, "-t", "onnxruntime", "--json", cwd=tmp_path)
    findings = [f for f in res.json()["findings"] if f.get("kind") == "dynamic_dim"]
    assert len(findings) == 3 and all("--dim " in f["suggestion"] for f in findings)
    assert any("--dim x_2=SIZE" in f["suggestion"] and "dims: {x_2: SIZE}" in f["suggestion"] for f in findings)
    res = run_cli("check", det, "-t", "onnxruntime", "--dim", "x_2=16", "--dim", "x_3=24", "--json", cwd=tmp_path)
    left = [f["reason"] for f in res.json()["findings"] if f.get("kind") == "dynamic_dim"]
    assert res.code == 0 and len(left) == 1 and "'batch'" in left[0]
    res = run_cli("check", det, "-t", "onnxruntime", "--dim", "p2o.DynamicDimension.1=16", cwd=tmp_path)
    assert res.code == 2 and "--dim" in res.stderr
    res = run_cli("check", det, "-t", "onnxruntime", "--dim", "x_9=16", cwd=tmp_path)
    assert res.code == 2 and "--dim x_9: no dynamic dim of that name in det.onnx's inputs; its dynamic dims are: " \
                             "batch, x_2, x_3" in res.stderr
    # --dim sets them, and they take effect
    res = run_cli("build", det, "-t", "onnxruntime", "--no-optimize", "--dim", "x_2=16", "--dim", "x_3=24",
                  "-o", tmp_path / "o", cwd=tmp_path)
    assert res.code == 0, res.stderr
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["samples"]["shapes"] == {"x": [8, 3, 16, 24]}
    res = run_cli("build", det, "-t", "onnxruntime", "--dim", "x_9=16", "-o", tmp_path / "o2", cwd=tmp_path)
    assert res.code == 2 and "dims.x_9: no input has a dim of that name; the inputs' dynamic dims are: batch, x_2, " \
                             "x_3" in res.stderr
    # a recipe: the dims it gives; or the real size of the images it gives
    folder = images(tmp_path / "img", [(32, 64)] * 3)
    r = write_recipe({"name": "det", "source": {"framework": "onnx", "path": str(det)}, "samples": {
        "images": str(folder), "count": 3}, "targets": [{"runtime": "onnxruntime"}], "stages": ["export", "build"],
        "output": str(tmp_path / "o3")})
    res = run_cli("run", r, cwd=tmp_path)
    assert res.code == 0, res.stderr
    m = json.loads((tmp_path / "o3" / "manifest.json").read_text())
    assert m["samples"]["shapes"] == {"x": [3, 3, 32, 64]} and "real images" in m["samples"]["description"]
    assert any("x_2 = 32, x_3 = 64 from the size of the images" in msg for msg in m["messages"])


def test_stateful_model_is_verified_with_its_state_scalar_and_latency(tmp_path, write_recipe):
    vad = stateful(tmp_path / "vad.onnx", named=False)
    res = run_cli("build", vad, "-t", "onnxruntime", "--no-optimize", "-o", tmp_path / "o", cwd=tmp_path)
    assert res.code == 2 and "input_1 (input 'input' axis 1), state_1 (input 'state' axis 1)" in res.stderr
    r = write_recipe({
        "name": "vad", "source": {"framework": "onnx", "path": str(vad)},
        "inputs": [{"name": "input", "shape": ["batch", 64], "range": [-1.0, 1.0]},
                   {"name": "sr", "shape": [], "dtype": "int64", "value": 8000},
                   {"name": "state", "shape": [2, "batch", 4], "batch_axis": 1, "range": [-1.0, 1.0]}],
        "dims": {"batch": {"max": 3}}, "samples": {"count": 7},
        "targets": [{"runtime": "onnxruntime"}], "stages": ["export", "check", "build"],
        "verify": {"latency": {"runs": 5, "warmup": 1, "batch": 2}}, "output": str(tmp_path / "o")})
    res = run_cli("run", r, cwd=tmp_path, latency=True)
    assert res.code == 0, res.stderr
    out = tmp_path / "o"
    m = json.loads((out / "manifest.json").read_text())
    assert m["samples"]["shapes"] == {"input": [7, 64], "sr": [], "state": [2, 7, 4]}
    art = m["artifacts"][0]
    assert art["status"] == "ok" and art["latency"]["status"] == "measured" and art["latency"]["batch"] == 2
    request = json.loads((out / "latency" / "onnxruntime_fp32.request.json").read_text())
    assert request["batch_axes"] == {"input": 0, "sr": None, "state": 1}
    # the model in flight carries the recipe's dim names
    import onnx

    dims = [d.dim_param or d.dim_value for d in onnx.load(str(out / "model.onnx")).graph.input[2].type.tensor_type.shape.dim]
    assert dims == [2, "batch", 4]
    # the numbers: ONNX Runtime on the samples as a deployment would feed them, 3 samples at a time along axis 1
    feeds = dict(np.load(out / "samples.npz"))
    assert feeds["sr"] == 8000
    expected_output = feeds["input"].mean(axis=1, keepdims=True) * 0.5
    import onnxruntime as ort

    sess = ort.InferenceSession(str(vad))
    got = sess.run(None, {"input": feeds["input"][:3], "sr": feeds["sr"], "state": feeds["state"][:, :3]})
    assert np.allclose(got[0], expected_output[:3], atol=1e-6)
    assert isinstance(Chunk(3, {"a": 1}), int)
