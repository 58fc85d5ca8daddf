"""Bounded resources: a small hostile file never hangs a command or fills the memory, a bad dim is exit 2.

Each case asserts the exit code (2, or a UsageError in process), a message needle, no traceback, a time bound,
and what is left on disk. The bombs run the CLI under a 3 GiB address-space limit and a short timeout, so a
regression fails the test instead of taking the machine down with it.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from convertctl.data import limits
from convertctl.errors import EXIT_USAGE, RecipeError, UsageError
from convertctl.recipe import DimRange, ImagePreprocess, InputSpec, load_recipe, parse_recipe

from .conftest import REPO, CliResult, run_cli, small_cnn_recipe

BOMB_TIMEOUT = 60  # seconds the child may take before the test fails (it takes 1-3)
QUICK = 20  # wall-clock bound asserted for a refused bomb: CLI start-up on a busy machine included
MEMORY = 3 << 30  # address-space limit of a bomb's child: far below what any bomb would take


def run_bounded(*args, cwd=None) -> tuple[CliResult, float]:
    """Like conftest.run_cli, under a memory limit and a short timeout; returns the result and its seconds."""
    args = [str(a) for a in args]
    if args[0] == "run":
        args.append("--no-latency")
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "convertctl", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=BOMB_TIMEOUT,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY)))
    return CliResult(proc.returncode, proc.stdout, proc.stderr), time.monotonic() - t0


def assert_refused(res: CliResult, *needles: str):
    assert res.code == EXIT_USAGE, (res.code, res.stderr)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    assert res.stderr.startswith("error:"), res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def assert_nothing_claims_success(folder: Path, out: str = "out"):
    """No output folder, no manifest anywhere; at most `<out>.partial/` with its ERROR.txt."""
    assert not (folder / out).exists()
    assert not [p for p in folder.rglob("manifest.json")]
    partial = folder / f"{out}.partial"
    assert not partial.exists() or (partial / "ERROR.txt").is_file()


def recipe_text(**overrides) -> str:
    return yaml.safe_dump(small_cnn_recipe(**overrides), sort_keys=False)


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": 9 levels of 9 aliases of the level below, 9**9 = 387 million strings, ~450 bytes."""
    lines = [f"    a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    base = recipe_text().replace("  factory: models.py:small_cnn\n", "  factory: models.py:small_cnn\n  factory_args:\n"
                                 + "\n".join(lines) + "\n")
    assert "factory_args" in base
    return base


# ---------------------------------------------------------------- YAML: through the CLI


@pytest.mark.parametrize("command", [("recipe", "validate"), ("plan",), ("run",)])
def test_yaml_alias_bomb_is_refused_quickly(tmp_path, command):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(alias_bomb())
    assert recipe.stat().st_size < 1000
    before = files_under(tmp_path)
    res, seconds = run_bounded(*command, recipe, cwd=tmp_path)
    assert_refused(res, "bomb.yaml", "more than 10,000 YAML nodes once its aliases (*name) are expanded")
    assert seconds < QUICK, seconds
    assert files_under(tmp_path) == before  # refused before any folder is opened


@pytest.mark.parametrize("text, needle", [
    ("name: x\nsource: {framework: pytorch, factory: 'm.py:f', factory_args: {x: " + "[" * 5000 + "]" * 5000 + "}}\n",
     "refused: collections nested more than 64 deep (line 2)"),
    ("name: x\nsource: {framework: pytorch, factory: 'm.py:f', factory_args: {x: &a [1, *a]}}\n",
     "refused: alias *a refers to a collection that contains it"),
    ("name: x\n" + "# padding\n" * 30000, "larger than 262,144 bytes, the most a recipe may be"),
    ("name: x\nname: y\nsource: {framework: onnx, path: m.onnx}\n",
     "refused: the key 'name' appears twice in one mapping (line 2)"),
], ids=["deep", "recursive-alias", "oversized", "duplicate-key"])
def test_yaml_structure_limits(tmp_path, text, needle):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    res, seconds = run_bounded("recipe", "validate", recipe, cwd=tmp_path)
    assert_refused(res, needle)
    assert seconds < QUICK, seconds


# ---------------------------------------------------------------- dims and ranges: through the CLI


@pytest.mark.parametrize("inputs, dims, needle", [
    ([{"name": "image", "shape": [1, 3, 100000, 100000]}], {},
     "inputs[0].shape: 4 samples of input 'image' ([4, 3, 100000, 100000] float32) take 447.0 GiB, more than the "
     "tensor budget of 2.0 GiB: lower samples.count or the fixed dims of inputs[0].shape"),
    ([{"name": "image", "shape": ["batch", 3, 32, 32], "range": [1.0, -1.0]}], {},
     "inputs[0].range: range [1.0, -1.0] is inverted: set [low, high] with low <= high"),
    ([{"name": "image", "shape": ["batch", 3, 32, 32]}], {"batch": {"min": 2, "opt": 9, "max": 4}},
     "dims.batch: need min <= opt <= max, got 2, 9, 4"),
], ids=["absurd-shape", "inverted-range", "opt-outside"])
def test_recipe_dims_are_usage_errors(tmp_path, inputs, dims, needle):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_text(inputs=inputs, dims=dims))
    before = files_under(tmp_path)
    res, seconds = run_bounded("recipe", "validate", recipe, cwd=tmp_path)
    assert_refused(res, needle)
    assert seconds < QUICK and files_under(tmp_path) == before


@pytest.mark.parametrize("spec, needles", [
    ("image:1,3,0,0", ["--input 'image:1,3,0,0': dim 2 is 0; a dim must be 1..2147483647"]),
    ("image:1,3,-5,8", ["dim 2 is -5"]),
    ("image:1,3,100000,100000", ["command line: inputs[0].shape: 8 samples of input 'image'", "CONVERTCTL_MAX_TENSOR_BYTES"]),
], ids=["zero", "negative", "absurd"])
def test_command_line_dims(tmp_path, models_file, spec, needles):
    res = run_cli("export", f"{models_file}:small_cnn", "--input", spec, "-o", tmp_path / "o", cwd=tmp_path)
    assert_refused(res, *needles)
    assert_nothing_claims_success(tmp_path, "o")
    assert not (tmp_path / "o.partial").exists()  # refused before the output folder is opened


def _onnx_identity(path: Path, shape: list[int]) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_absurd_dims_read_from_an_onnx_model(tmp_path):
    model = _onnx_identity(tmp_path / "m.onnx", [1, 3, 100000, 100000])
    res, seconds = run_bounded("export", model, "-o", tmp_path / "o", cwd=tmp_path)
    assert_refused(res, "inputs[0].shape: 8 samples of input 'x' ([8, 3, 100000, 100000] float32) take 894.1 GiB, "
                        "more than the tensor budget of 2.0 GiB", "CONVERTCTL_MAX_TENSOR_BYTES")
    assert seconds < 40, seconds
    assert_nothing_claims_success(tmp_path, "o")


# ---------------------------------------------------------------- data files: through the CLI


def forged_npy(path: Path, shape, data_bytes: int = 1500) -> Path:
    """A valid .npy header declaring `shape`, followed by `data_bytes` bytes: 1.6 KB on disk."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
        fh.write(b"\0" * data_bytes)
    return path


def test_forged_npy_header_is_refused_before_allocation(tmp_path, models_file, write_recipe):
    forged_npy(tmp_path / "calib.npy", (10**11, 3, 32, 32))
    recipe = write_recipe(small_cnn_recipe(calibration={"data": "calib.npy"}))
    res, seconds = run_bounded("run", recipe, cwd=tmp_path)
    assert_refused(res, f"cannot read tensor file {tmp_path / 'calib.npy'}: its header declares shape "
                        "[100000000000, 3, 32, 32] float32 (1117.6 TiB), but the file holds only 1,500 bytes of data")
    assert seconds < QUICK, seconds
    assert_nothing_claims_success(tmp_path)


def png_claiming(path: Path, width: int, height: int) -> Path:
    """An 8x8 PNG whose IHDR claims width x height (with a valid CRC): a decompression bomb's header, 100 bytes."""
    Image.new("RGB", (8, 8)).save(path)
    raw = bytearray(path.read_bytes())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    raw[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr:ihdr + 17])))
    path.write_bytes(bytes(raw))
    return path


def test_decompression_bomb_image_in_samples(tmp_path, models_file, write_recipe):
    (tmp_path / "imgs").mkdir()
    bomb = png_claiming(tmp_path / "imgs" / "bomb.png", 30000, 30000)
    recipe = write_recipe(small_cnn_recipe(samples={"images": "imgs", "count": 1,
                                                    "preprocess": {"resize": 32, "crop": 32}}))
    res, seconds = run_bounded("run", recipe, cwd=tmp_path)
    assert_refused(res, f"image {bomb} is too large to decode", "at most 89,478,485 pixels")
    assert seconds < QUICK, seconds
    assert_nothing_claims_success(tmp_path)


# ---------------------------------------------------------------- recipe schema, in process


def base_recipe(**overrides) -> dict:
    data = {"name": "m", "source": {"framework": "pytorch", "factory": "models.py:build"},
            "inputs": [{"name": "x", "shape": ["batch", 3, 8, 8]}]}
    data.update(overrides)
    return data


def recipe_error(data) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, Path("."))
    assert info.value.exit_code == EXIT_USAGE and "\n" not in info.value.message
    return info.value.message


@pytest.mark.parametrize("inputs, dims, needle", [
    ([{"name": "x", "shape": [1, 3, 0, 8]}], {}, "inputs[0].shape[2]: dimension 0 must be a positive integer"),
    ([{"name": "x", "shape": [1, -3, 8]}], {}, "inputs[0].shape[1]: dimension -3 must be a positive integer"),
    ([{"name": "x", "shape": [1, 2.5]}], {}, "inputs[0].shape[1]: dimension 2.5 must be a positive integer"),
    ([{"name": "x", "shape": [1, float("nan")]}], {}, "inputs[0].shape[1]: dimension nan must be"),
    ([{"name": "x", "shape": [1, True]}], {}, "inputs[0].shape[1]: dimension True must be"),
    ([{"name": "x", "shape": [1, 2**31]}], {}, "inputs[0].shape[1]: dimension 2147483648 is larger than 2147483647"),
    ([{"name": "x", "shape": [1, "3d"]}], {}, "inputs[0].shape[1]: symbolic dimension '3d' must be an identifier"),
    ([{"name": "x", "shape": [1, 4], "range": [float("nan"), 1]}], {}, "inputs[0].range: range [nan, 1.0] must be two finite"),
    ([{"name": "x", "shape": [1, 4], "range": [-1e308, 1e308]}], {}, "inputs[0].range: range [-1e+308, 1e+308] must be two finite"),
    ([{"name": "x", "shape": [1, 4], "dtype": "int64", "range": [0, 9.5]}], {}, "range [0.0, 9.5] of a int64 input must be whole"),
    ([{"name": "x", "shape": [1, 4], "dtype": "uint8", "range": [-1, 10]}], {}, "range [-1, 10] does not fit uint8 (0..255)"),
    ([{"name": "x", "shape": [1, 4], "dtype": "float16", "range": [0, 1e6]}], {}, "does not fit float16"),
    ([{"name": "x", "shape": ["batch", "seq"]}], {"seq": {"min": 8, "max": 4}}, "dims.seq: need min <= opt <= max"),
    ([{"name": "x", "shape": ["batch", "seq"]}], {"seq": {"min": float("nan")}}, "dims.seq.min: Input should be a finite number"),
    ([{"name": "x", "shape": ["batch", "seq"]}], {"seq": {"min": 1, "max": 2.5}}, "dims.seq.max: Input should be a valid integer"),
    ([{"name": "x", "shape": ["batch", "seq"]}], {"seq": {"max": 2**40}}, "dims.seq.max: Input should be less than or equal to 2147483647"),
    ([{"name": "x", "shape": ["batch", "seq"]}], {"seq": {"opt": 0}}, "dims.seq.opt: Input should be greater than or equal to 1"),
    ([{"name": "ids", "shape": ["batch", "seq"], "dtype": "int64"}], {"seq": {"opt": 10**9, "max": 10**9}},
     "inputs[0].shape: 8 samples of input 'ids' ([8, 1000000000] int64) take 59.6 GiB, more than the tensor budget "
     "of 2.0 GiB: lower samples.count, dims.seq.opt or the fixed dims of inputs[0].shape"),
])
def test_bad_dims_and_ranges_name_their_key(inputs, dims, needle):
    assert needle in recipe_error(base_recipe(inputs=inputs, dims=dims))


def test_latency_batch_and_budget_variable(monkeypatch):
    data = base_recipe(inputs=[{"name": "x", "shape": ["batch", 3, 1024, 1024]}], dims={"batch": {"max": 512}},
                       samples={"count": 2}, verify={"latency": {"batch": 512}})
    assert ("inputs[0].shape: 512 samples of input 'x' ([512, 3, 1024, 1024] float32) take 6.0 GiB, more than the "
            "tensor budget of 2.0 GiB: lower verify.latency.batch") in recipe_error(data)
    data["verify"]["latency"]["enabled"] = False  # --no-latency: no latency batch to hold
    parse_recipe(data, Path("."))
    monkeypatch.setenv(limits.TENSOR_BUDGET_ENV, str(1 << 20))
    assert "more than the tensor budget of 1.0 MiB" in recipe_error(data)
    monkeypatch.setenv(limits.TENSOR_BUDGET_ENV, "lots")
    with pytest.raises(UsageError, match="CONVERTCTL_MAX_TENSOR_BYTES='lots': expected a number of bytes"):
        parse_recipe(data, Path("."))


def test_real_recipes_and_ordinary_aliases_still_load(tmp_path):
    """No false alarm: the shipped recipes, and a recipe that uses anchors, aliases and merge keys sensibly."""
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        load_recipe(path)
    path = tmp_path / "a.yaml"
    path.write_text(recipe_text() + "verify:\n  tolerances:\n    fp32: &tol {min_cosine: 0.99, max_abs: 0.5}\n"
                                    "    fp16: {<<: *tol, max_abs: 1.0}\n    int8: *tol\n")
    tolerances = load_recipe(path)[0].verify.tolerances
    assert (tolerances["int8"].max_abs, tolerances["fp16"].max_abs, tolerances["fp16"].min_cosine) == (0.5, 1.0, 0.99)


def test_yaml_values_python_cannot_hold(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nsource: {framework: pytorch, factory: 'm.py:f', factory_args: {n: " + "9" * 5000 + "}}\n")
    with pytest.raises(RecipeError, match="not a usable YAML value: Exceeds the limit") as err:
        load_recipe(path)
    assert "set_int_max_str_digits" not in str(err.value)  # Python's advice is not the user's
    with pytest.raises(RecipeError):
        load_recipe(path)


def test_a_recipe_path_that_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo.yaml")  # reading it would hang
    for path in (tmp_path, tmp_path / "fifo.yaml"):
        with pytest.raises(RecipeError, match="is not a regular file"):
            load_recipe(path)


def test_merge_keys_and_home_folder_paths(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nsource: {framework: onnx, path: m.onnx}\ninputs: [{name: x, shape: [b, 3]}]\n"
                    "dims:\n  b: {<<: {min: 1, max: 8}, opt: 2}\noutput: ~/convertctl-out\n")
    recipe, _ = load_recipe(path)
    assert (recipe.dims["b"].min, recipe.dims["b"].opt, recipe.dims["b"].max) == (1, 2, 8)
    assert recipe.output == Path.home().resolve() / "convertctl-out"  # not a folder named "~"


def test_inputs_read_from_a_model_are_bounded_before_allocation():
    from convertctl.data.samples import build_samples
    from convertctl.recipe import Samples

    inputs = [InputSpec(name="x", shape=[1, 3, 60000, 60000])]  # what an ONNX model may declare
    t0 = time.monotonic()
    with pytest.raises(UsageError, match=r"8 samples of input 'x' \(\[8, 3, 60000, 60000\] float32\) take 321.9 GiB"):
        build_samples(inputs, {}, Samples())
    assert time.monotonic() - t0 < 1


# ---------------------------------------------------------------- tensor files, in process


TENSOR_INPUT = [InputSpec(name="x", shape=["batch", 3, 4, 4])]


def calibration(data, inputs=TENSOR_INPUT, **kw):
    from convertctl.quantize.calib_data import CalibrationData
    from convertctl.quantize.spec import CalibrationSpec

    return CalibrationData(CalibrationSpec(data=data, **kw), inputs, {"batch": DimRange()},
                           ImagePreprocess(resize=16, crop=16))


def usage_error(fn, *args, **kw) -> str:
    with pytest.raises(UsageError) as info:
        fn(*args, **kw)
    assert info.value.exit_code == EXIT_USAGE and "\n" not in info.value.message
    return info.value.message


def test_tensor_file_headers_are_checked_against_the_bytes(tmp_path):
    one = forged_npy(tmp_path / "one.npy", (10**11, 3, 4, 4))
    assert "its header declares shape [100000000000, 3, 4, 4] float32" in usage_error(calibration, one)
    negative = forged_npy(tmp_path / "negative.npy", (-5, 3, 4, 4))
    assert "its header declares shape [-5, 3, 4, 4], with a negative dim" in usage_error(calibration, negative)
    # .npz: the member's header claims more than its zip entry holds
    stored = tmp_path / "member.npz"
    forged_npy(tmp_path / "x.npy", (10**9, 3, 4, 4), data_bytes=192)
    with zipfile.ZipFile(stored, "w") as zf:
        zf.write(tmp_path / "x.npy", "x.npy")
    assert f"cannot read tensor file {stored} (array 'x'): its header declares shape [1000000000, 3, 4, 4]" in \
        usage_error(calibration, stored)
    # the labels array is checked too, before it is read
    labels = tmp_path / "labels.npz"
    forged_npy(tmp_path / "labels.npy", (10**10,), data_bytes=64)
    with zipfile.ZipFile(labels, "w") as zf:
        zf.writestr("x.npy", _npy_bytes(np.zeros((2, 3, 4, 4), np.float32)))
        zf.write(tmp_path / "labels.npy", "labels.npy")
    assert "(array 'labels'): its header declares shape [10000000000]" in usage_error(calibration, labels)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def test_pickled_object_arrays_are_never_loaded(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert "holds Python objects (object), which only a pickle can load" in usage_error(calibration, path)


def test_npz_bomb_and_held_out_split_within_the_budget(tmp_path, monkeypatch):
    # a 512 KiB budget, so that small files stand for large ones
    monkeypatch.setenv(limits.TENSOR_BUDGET_ENV, str(512 << 10))
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((4096, 3, 4, 4), np.float32))  # 768 KiB of zeros in ~1 KB
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo("x.npy").compress_size < 10_000
    assert f"cannot read tensor file {bomb} (array 'x'): it decompresses to 786,560 bytes" in \
        usage_error(calibration, bomb)
    monkeypatch.setenv(limits.TENSOR_BUDGET_ENV, str(200 << 10))
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((2000, 3, 4, 4), np.float32))  # 192 bytes a sample
    calibration(big)  # 400 held out (75 KiB), 100 for calibration
    message = usage_error(calibration, big, holdout=0.9)
    assert message.startswith(f"calibration.holdout 0.9: the 1800 samples it selects from {big} take 345,600 bytes "
                              "in memory, more than the tensor budget of 204,800 bytes: lower calibration.holdout")


def test_sample_count_is_bounded(tmp_path, monkeypatch):
    np.save(tmp_path / "many.npy", np.zeros((50, 3, 4, 4), np.float32))
    monkeypatch.setattr(limits, "MAX_DATA_SAMPLES", 40)
    assert "holds 50 samples, more than the 40 convertctl indexes" in usage_error(calibration, tmp_path / "many.npy")


# ---------------------------------------------------------------- images, in process


@pytest.mark.parametrize("size", [(10000, 10000), (30000, 30000)], ids=["pillow-warning", "pillow-error"])
def test_decompression_bombs(tmp_path, size):
    from convertctl.data.images import preprocess

    bomb = png_claiming(tmp_path / "bomb.png", *size)
    message = usage_error(preprocess, bomb, ImagePreprocess(resize=16, crop=16))
    assert message.startswith(f"image {bomb} is too large to decode") and "at most 89,478,485 pixels" in message


def test_broken_images_in_a_calibration_folder_are_named(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "a.png")
    raw = (folder / "a.png").read_bytes()
    (folder / "a.png").write_bytes(raw[: len(raw) // 2])
    inputs = [InputSpec(name="image", shape=["batch", 3, 16, 16])]
    assert usage_error(calibration, folder, inputs=inputs, holdout=0.0).startswith(f"cannot read image {folder / 'a.png'}")
    (folder / "a.png").write_text("not an image at all")
    assert usage_error(calibration, folder, inputs=inputs, holdout=0.0).startswith(f"cannot read image {folder / 'a.png'}")
    # a thin strip whose short side is resized up: refused before the resize allocates
    Image.new("RGB", (8000, 2)).save(folder / "a.png")
    big = ImagePreprocess(resize=2000, crop=16)
    from convertctl.data.images import preprocess

    assert "resized to a short side of 2000 would be 8000000x2000 pixels" in usage_error(preprocess, folder / "a.png", big)
