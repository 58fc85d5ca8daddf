"""The front-end records (frontends/<name>/): found by the registry, in agreement with the recipe's schema, cheap
to import, and worded as before."""

import subprocess
import sys
import typing
from pathlib import Path

import pytest

from convertctl.errors import SourceModelError, UsageError
from convertctl.frontends import registry
from convertctl.frontends.formats import detect
from convertctl.recipe import Source


def test_the_registry_finds_every_framework_of_the_recipe_schema():
    assert set(registry.names()) == set(typing.get_args(Source.model_fields["framework"].annotation))
    formats = [fmt for f in registry.all_frontends() for fmt in f.formats]
    assert set(formats) | {"auto"} == set(typing.get_args(Source.model_fields["format"].annotation))
    assert len(formats) == len(set(formats))  # a format belongs to one framework
    with pytest.raises(UsageError, match="unknown framework 'caffe'"):
        registry.get("caffe")


def test_each_record_names_an_existing_worker_and_its_stacks():
    import importlib.util

    for frontend in registry.all_frontends():
        if frontend.worker:
            assert importlib.util.find_spec(frontend.worker) is not None, frontend.worker
            assert frontend.worker.startswith(f"convertctl.frontends.{frontend.name}.")
        for fmt in (*frontend.formats, None):
            if frontend.stacks:
                assert frontend.stack(fmt).name in {s.name for s in frontend.stacks}


def test_records_import_without_numpy_onnx_or_pydantic():
    # the export child imports its package inside a framework environment that has none of them
    code = ("import sys; from convertctl.frontends import registry; registry.all_frontends(); "
            "print(sorted(m for m in ('numpy', 'onnx', 'pydantic', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_composed_messages_read_as_before(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceModelError) as caught:
        detect(tmp_path)
    assert caught.value.message == (f"{tmp_path} is neither a Paddle inference model (X.pdmodel or X.json with "
                                    "X.pdiparams) nor a TensorFlow SavedModel (saved_model.pb)")
    assert caught.value.hint == ("give the model's folder or file: a Paddle inference model, a SavedModel folder, "
                                 ".keras, .h5, .onnx")
    with pytest.raises(SourceModelError) as caught:
        detect(tmp_path / "notes.txt")
    assert caught.value.hint == "Paddle: .pdmodel/.json + .pdiparams; TensorFlow: SavedModel folder, .keras, .h5"
    with pytest.raises(UsageError) as caught:
        registry.for_source(str(tmp_path / "notes.txt"))
    assert caught.value.hint == ("give a recipe (.yaml), an .onnx file, a TorchScript file (torch.jit.save), a "
                                 "factory 'file.py:callable', a Paddle inference model (folder, .pdmodel, .json) or "
                                 "a TensorFlow model (SavedModel folder, .keras, .h5)")


def test_a_command_line_source_goes_to_its_framework(tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    assert registry.for_source("m.onnx").name == "onnx"
    assert registry.for_source("models.py:build").name == "pytorch"
    assert registry.for_source("weights.pth").name == "pytorch"
    assert registry.for_source(str(tmp_path / "sm")).name == "tensorflow"
    with pytest.raises(UsageError, match="--framework paddle, but .* is a tensorflow model"):
        registry.get("paddle").cli_source(str(tmp_path / "sm"), None)
    assert registry.get("pytorch").cli_source("models.py:build", "w.pt") == {
        "framework": "pytorch", "factory": "models.py:build", "path": "w.pt"}


def test_source_validation_comes_from_the_records():
    for data, error in [({"framework": "onnx"}, "an onnx source needs 'path'"),
                        ({"framework": "pytorch"}, "a pytorch source needs 'factory'"),
                        ({"framework": "paddle", "path": "m", "factory": "a:b"}, "a paddle source takes 'path'"),
                        ({"framework": "paddle", "path": "m", "format": "keras"}, "is not a paddle format "
                                                                                  r"\(paddle_legacy, paddle_pir\)"),
                        ({"framework": "onnx", "path": "m", "format": "h5"}, "'format' is for paddle and "
                                                                              "tensorflow sources, not onnx")]:
        with pytest.raises(ValueError, match=error):
            Source(**data)
    assert Source(framework="tensorflow", path=Path("m.keras")).path == Path("m.keras")
