"""Every command takes every source the docs list, recognised by content, not by name; a file of another
framework given to `check` is pointed at `export` or a recipe."""

from __future__ import annotations

import pytest
import torch

from convertctl.errors import EXIT_USAGE

from .conftest import load_manifest, run_cli
from .test_bad_inputs import assert_clean_error


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch_files")
    torch.manual_seed(0)
    model = Tiny().eval()
    torch.jit.save(torch.jit.script(model), str(root / "model.jit"))
    torch.jit.save(torch.jit.script(model), str(root / "weights.bin"))  # TorchScript under any name
    torch.save(model.state_dict(), str(root / "state.pt"))
    return root


@pytest.mark.parametrize("name, extra", [("model.jit", []), ("weights.bin", ["--framework", "pytorch"])])
@pytest.mark.slow
def test_torchscript_is_recognised_by_content_whatever_its_name(torch_files, tmp_path, name, extra):
    res = run_cli("export", torch_files / name, "--input", "x:1,3,16,16", "-o", tmp_path / "o", *extra)
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "o")
    (gate,) = manifest["stages"][0]["verification"]
    assert gate["against"] == "pytorch" and gate["passed"] is True
    assert max(o["max_abs"] for o in gate["outputs"].values()) < 1e-5


def test_a_torch_save_checkpoint_is_named_as_such_with_the_factory_way(torch_files, tmp_path):
    res = run_cli("export", torch_files / "state.pt", "--input", "x:1,3,16,16", "-o", tmp_path / "o")
    assert_clean_error(res, EXIT_USAGE, "is a PyTorch checkpoint (torch.save), not a TorchScript file")
    assert "--weights" in res.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("name, what", [("model.jit", "a TorchScript file"),
                                        ("state.pt", "a PyTorch checkpoint (torch.save)")])
def test_check_on_a_pytorch_file_points_at_export(torch_files, name, what):
    res = run_cli("check", torch_files / name, "-t", "onnxruntime")
    assert_clean_error(res, EXIT_USAGE, f"is {what}, not an ONNX model")
    assert "convertctl export" in res.stderr


@pytest.mark.slow
def test_quantize_with_a_recipe_takes_a_torchscript_model(torch_files, tmp_path, write_recipe):
    recipe = write_recipe({"name": "tiny", "source": {"framework": "onnx", "path": "unused.onnx"},
                           "inputs": [{"name": "x", "shape": ["batch", 3, 16, 16]}], "output": "out"})
    res = run_cli("quantize", torch_files / "model.jit", "--recipe", recipe, "--fp16", "-t", "onnxruntime",
                  "-o", tmp_path / "q")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "q")
    assert manifest["recipe"]["content"]["source"]["framework"] == "pytorch"
    assert {a["id"]: a["status"] for a in manifest["artifacts"]} == {"onnxruntime_fp32": "ok",
                                                                      "onnxruntime_fp16": "ok"}


@pytest.mark.parametrize("files, what", [(["saved_model.pb"], "a TensorFlow model folder"),
                                         (["inference.pdmodel", "inference.pdiparams"], "a Paddle model folder"),
                                         (["notes.txt"], None)])
def test_check_on_a_model_folder_points_at_export(tmp_path, files, what):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes(b"\0")
    res = run_cli("check", folder, "-t", "onnxruntime")
    if what:
        assert_clean_error(res, EXIT_USAGE, f"is {what}, not an ONNX model")
        assert f"convertctl export {folder}" in res.stderr
    else:
        assert_clean_error(res, EXIT_USAGE, "is a folder, not an ONNX model")
        assert "give the .onnx file in it" in res.stderr


def test_a_torchscript_error_is_reported_by_its_reason_not_its_banner():
    """torch.jit.Error's first line is "The following operation failed in the TorchScript interpreter."; the
    reason is its last line (silero-vad given sr=0: "slice step must be positive")."""
    from convertctl.frontends.worker import first_line

    @torch.jit.script
    def halve(x: torch.Tensor, step: int) -> torch.Tensor:
        return x[::step]

    with pytest.raises(Exception) as caught:
        halve(torch.zeros(4), 0)
    assert "TorchScript interpreter" in str(caught.value).splitlines()[0]
    assert first_line(caught.value) == "RuntimeError: slice step must be positive"
