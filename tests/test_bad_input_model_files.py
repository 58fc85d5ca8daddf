"""Bad model files: external data outside the model's folder, unreadable or short data files, and load errors
whose reason must reach the user.

Rule under test (convertctl/model.py, external_data_files): every external-data location is relative, has no
`..`, resolves (symlinks followed) to a regular file inside the model's folder, and the tensor's offset + length
lie within it; anything else is exit 2 before a byte of it is read or copied. Every case also checks the
filesystem afterwards: the secret's bytes are in no file under the output folder or `<out>.partial`, and no
manifest.json claims a finished run.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convertctl.errors import EXIT_USAGE

from .conftest import run_cli

MARKER = f"TOP-SECRET-{uuid.uuid4().hex}".encode()
SECRET = MARKER * 64  # comfortably more than the 64 bytes the 4x4 float tensor reads


def _graph(initializer, opset: int = 17, ir: int = 8):
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [initializer])
    return helper.make_model(graph, ir_version=ir, opset_imports=[helper.make_opsetid("", opset)])


def _external_model(path: Path, location: str, offset: int | None = None, length: int | None = 64) -> Path:
    """m.onnx whose weight `w` says its 64 bytes are at `location` (written as is, whatever it points at)."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = w.external_data.add()
            entry.key, entry.value = key, str(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_graph(w).SerializeToString())  # bytes as is: onnx.save would touch the external data
    return path


def _inline_model(path: Path, ir: int = 8, opset: int = 17) -> Path:
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_graph(w, opset=opset, ir=ir).SerializeToString())
    return path


@pytest.fixture
def layout(tmp_path):
    """tmp/secret.txt and tmp/outside/w.data hold the secret; tmp/model/ is the model's folder."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "w.data").write_bytes(SECRET)
    (tmp_path / "model").mkdir()
    return tmp_path


def _dotdot(t: Path) -> Path:
    return _external_model(t / "model" / "m.onnx", "../secret.txt")


def _absolute(t: Path) -> Path:
    return _external_model(t / "model" / "m.onnx", str(t / "secret.txt"))


def _symlink_file(t: Path) -> Path:
    (t / "model" / "w.data").symlink_to(t / "secret.txt")
    return _external_model(t / "model" / "m.onnx", "w.data")


def _symlink_dir(t: Path) -> Path:
    (t / "model" / "sub").symlink_to(t / "outside", target_is_directory=True)
    return _external_model(t / "model" / "m.onnx", "sub/w.data")


def _directory(t: Path) -> Path:
    (t / "model" / "w.data").mkdir()
    return _external_model(t / "model" / "m.onnx", "w.data")


def _fifo(t: Path) -> Path:
    os.mkfifo(t / "model" / "w.data")  # nobody writes to it: whoever opens it for reading waits forever
    return _external_model(t / "model" / "m.onnx", "w.data")


def _offset_beyond(t: Path) -> Path:
    (t / "model" / "w.data").write_bytes(bytes(64))
    return _external_model(t / "model" / "m.onnx", "w.data", offset=4096)


def _length_beyond(t: Path) -> Path:
    (t / "model" / "w.data").write_bytes(bytes(64))
    return _external_model(t / "model" / "m.onnx", "w.data", length=1 << 20)


def _offset_with_a_space(t: Path) -> Path:
    # Python's int() reads " 0"; the runtimes do not: refused as bad input, not judged "unsupported" (exit 3)
    (t / "model" / "w.data").write_bytes(bytes(64))
    return _external_model(t / "model" / "m.onnx", "w.data", offset=" 0")


def _ort_memory_address(t: Path) -> Path:
    # ONNX Runtime's tag for "the data is at this address in memory": never from a file
    return _external_model(t / "model" / "m.onnx", "*/_ORT_MEM_ADDR_/*", offset=4096)


def _command(kind: str, model: Path, out: Path) -> list:
    return {"build": ["build", model, "-t", "onnxruntime", "-o", out],
            "build-tensorrt": ["build", model, "-t", "tensorrt", "-o", out],  # the TensorRT kit copies the model
            "check": ["check", model, "-t", "onnxruntime", "-t", "openvino", "-o", out],
            "export": ["export", model, "-o", out],
            "optimize": ["optimize", model, "-o", out],
            "quantize": ["quantize", model, "--fp16", "-t", "onnxruntime", "-o", out]}[kind]


def assert_safe(res, out: Path, code: int, *needles: str) -> None:
    assert res.code == code, (res.code, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    flat = " ".join(res.stderr.split())
    for needle in needles:
        assert needle in flat, (needle, res.stderr)
    for folder in (out, out.parent / f"{out.name}.partial"):
        if not folder.exists():
            continue
        assert not (folder / "manifest.json").exists(), f"{folder} looks like a finished run"
        for f in folder.rglob("*"):
            if f.is_file() and not f.is_symlink():
                assert MARKER not in f.read_bytes(), f"the secret was copied into {f}"


OUTSIDE = "m.onnx: the external data of tensor 'w' is at"
CONFINEMENT = [  # (id, model, command, what stderr must say)
    ("dotdot", _dotdot, "build", (OUTSIDE, "'../secret.txt', a path with '..'")),
    ("dotdot", _dotdot, "check", (OUTSIDE, "'../secret.txt', a path with '..'")),
    ("dotdot", _dotdot, "quantize", (OUTSIDE, "'../secret.txt', a path with '..'")),
    ("absolute", _absolute, "build-tensorrt", (OUTSIDE, "an absolute path")),
    ("symlink-file", _symlink_file, "build", (OUTSIDE, "'w.data', which is a symlink to", "outside the model's folder")),
    ("symlink-dir", _symlink_dir, "export", (OUTSIDE, "'sub/w.data', which is a symlink to")),
    ("directory", _directory, "optimize", (OUTSIDE, "'w.data', which is a folder")),
    ("fifo", _fifo, "build", (OUTSIDE, "'w.data', which is not a regular file")),
    ("fifo", _fifo, "check", (OUTSIDE, "'w.data', which is not a regular file")),
    ("offset", _offset_beyond, "check", ("m.onnx: tensor 'w' needs bytes 4096..4160", "which has 64 bytes")),
    ("length", _length_beyond, "build", ("m.onnx: tensor 'w' needs bytes 0..1048576", "which has 64 bytes")),
    ("ort-memory-tag", _ort_memory_address, "build", (OUTSIDE, "'*/_ORT_MEM_ADDR_/*', which is missing")),
    ("offset-not-digits", _offset_with_a_space, "check", ("m.onnx: tensor 'w' has a non-numeric offset/length",)),
]


@pytest.mark.parametrize("make, command, needles",
                         [pytest.param(m, c, n, id=f"{name}-{c}") for name, m, c, n in CONFINEMENT])
def test_external_data_must_stay_inside_the_model_folder(layout, make, command, needles):
    model = make(layout)
    out = layout / "o"
    res = run_cli(*_command(command, model, out), timeout=120,  # a read of the FIFO would hang: fail instead
                  subprocess=make is _fifo)  # (a timeout needs a process of its own)
    assert_safe(res, out, EXIT_USAGE, *needles)


def test_run_recipe_refuses_a_location_outside(layout, write_recipe):
    model = _dotdot(layout)
    recipe = write_recipe({"name": "m", "source": {"framework": "onnx", "path": str(model)},
                           "targets": [{"runtime": "onnxruntime"}], "output": str(layout / "o")})
    assert_safe(run_cli("run", recipe), layout / "o", EXIT_USAGE, "a path with '..'")


def test_external_data_in_a_sub_folder_builds(tmp_path):
    """The rule refuses what leaves the folder, not external data as such: a sub-folder location builds, and each
    copy (ONNX Runtime artifact, TensorRT kit) keeps the location the model names."""
    model = _inline_model(tmp_path / "model" / "m.onnx")
    (tmp_path / "model" / "weights").mkdir()
    onnx.save_model(onnx.load(str(model)), str(model), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights/m.data", size_threshold=0)
    out = tmp_path / "o"
    res = run_cli("build", model, "-t", "onnxruntime", "-t", "tensorrt", "--no-optimize", "-o", out, "-q")
    assert res.code == 0, res.stderr
    for target in ("onnxruntime_fp32", "tensorrt_fp32"):
        copy = out / "targets" / target / "model.onnx"
        assert copy.is_file() and (copy.parent / "weights" / "m.data").is_file(), target
        loaded = onnx.load(str(copy))  # with its weights, from where the model says they are
        assert np.array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), np.eye(4, dtype=np.float32))


@pytest.mark.parametrize("ir, opset, needle", [
    (99, 17, "Unsupported model IR version: 99, max supported IR version"),
    (8, 99, "Opset 99 is under development"),
], ids=["ir-99", "opset-99"])
def test_onnx_runtime_keeps_its_reason(tmp_path, ir, opset, needle):
    model = _inline_model(tmp_path / f"ir{ir}_op{opset}.onnx", ir=ir, opset=opset)
    out = tmp_path / "o"
    res = run_cli("build", model, "-t", "onnxruntime", "-o", out)
    assert_safe(res, out, EXIT_USAGE, "ONNX Runtime cannot load", needle)
    assert "/onnxruntime_src/" not in res.stderr  # the C++ location is dropped, the reason kept


def test_truncated_external_data_file(tmp_path):
    model = _inline_model(tmp_path / "model" / "m.onnx")
    onnx.save_model(onnx.load(str(model)), str(model), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    data = tmp_path / "model" / "m.data"
    data.write_bytes(data.read_bytes()[:20])
    out = tmp_path / "o"
    assert_safe(run_cli("build", model, "-t", "onnxruntime", "-o", out), out, EXIT_USAGE,
                "tensor 'w' needs bytes 0..64 of its external data file 'm.data', which has 20 bytes")


@pytest.mark.parametrize("command, needle", [("build", "is an empty file (0 bytes)"), ("check", "an empty file"),
                                             ("quantize", "is an empty file (0 bytes)")])
def test_empty_onnx_file(tmp_path, command, needle):
    model = tmp_path / "empty.onnx"
    model.write_bytes(b"")
    out = tmp_path / "o"
    res = run_cli(*_command(command, model, out))
    assert_safe(res, out, EXIT_USAGE, "empty.onnx", needle)
    assert "no inputs" not in res.stderr


def test_check_on_a_cycle_is_an_invalid_model(tmp_path):
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
                               helper.make_node("Relu", ["a"], ["b"], name="n2"),
                               helper.make_node("Identity", ["b"], ["y"], name="n3")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = tmp_path / "cycle.onnx"
    model.write_bytes(helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
                      .SerializeToString())
    out = tmp_path / "o"
    res = run_cli(*_command("check", model, out))
    assert_safe(res, out, EXIT_USAGE, "cycle.onnx is not a valid ONNX model: its graph has a cycle, nodes n1, n2",
                "the ONNX checker: Nodes in a graph must be topologically sorted")


@pytest.mark.slow
def test_check_recipe_never_points_into_its_deleted_temporary_folder(tmp_path, write_recipe):
    (tmp_path / "models.py").write_text("def raises():\n    raise RuntimeError('weights server unreachable')\n")
    recipe = write_recipe({"name": "r", "source": {"framework": "pytorch", "factory": "models.py:raises"},
                           "inputs": [{"name": "x", "shape": [1, 4]}], "targets": [{"runtime": "onnxruntime"}]})
    res = run_cli("check", recipe, cwd=tmp_path)
    assert_safe(res, tmp_path / "out", EXIT_USAGE, "weights server unreachable", "convertctl export")
    assert "convertctl-check-" not in res.stderr and "partial output kept" not in res.stderr, res.stderr
