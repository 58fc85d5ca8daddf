"""The recipe schema: defaults, strictness, key-path errors, path resolution, the template."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from convertctl.errors import EXIT_USAGE, RecipeError
from convertctl.recipe import load_recipe, parse_recipe

from .conftest import REPO, run_cli


def base(**extra):
    data = {"name": "m", "source": {"framework": "pytorch", "factory": "models.py:build"},
            "inputs": [{"name": "x", "shape": ["batch", 3, 8, 8]}]}
    data.update(extra)
    return data


def error_of(data) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, Path("/base"))
    return info.value.message


def test_defaults_and_resolved_paths():
    r = parse_recipe(base(samples={"images": "imgs"}), Path("/base"))
    assert r.stages == ["export", "check", "optimize"]  # no targets: no build stage by default
    assert r.export.opset is None and r.optimize.simplifier == "onnxslim"  # None: the front end's default
    assert r.dims["batch"].min == 1 and r.dims["batch"].max == 8  # symbolic dims get a default range
    assert r.source.factory == "/base/models.py:build"  # file factories resolve against the recipe folder
    assert r.samples.images == Path("/base/imgs")
    assert r.verify.tolerances["fp32"].min_cosine == 0.9999
    assert r.source.kind == "factory"


def test_source_kinds():
    assert parse_recipe(base(source={"framework": "pytorch", "factory": "pkg.mod:f", "path": "w.pt"}),
                        Path("/b")).source.kind == "state_dict"
    assert parse_recipe(base(source={"framework": "pytorch", "path": "m.pt"}), Path("/b")).source.kind == "torchscript"
    assert parse_recipe({"name": "o", "source": {"framework": "onnx", "path": "m.onnx"}}, Path("/b")).source.kind == "onnx"


def test_unknown_key_names_its_path():
    msg = error_of(base(export={"opset": 18, "opsett": 17}))
    assert "export.opsett: Extra inputs are not permitted (did you mean 'opset'?)" in msg
    msg = error_of(base(targets=[{"runtime": "mnn", "precison": "fp16"}], calibration={"num_sampels": 3}))
    assert "targets[0].precison: Extra inputs are not permitted (did you mean 'precision'?)" in msg
    assert "calibration.num_sampels: Extra inputs are not permitted (did you mean 'num_samples'?)" in msg
    msg = error_of(base(export={"zzqq": 1}))  # nothing close: no guess
    assert msg.endswith("export.zzqq: Extra inputs are not permitted") or "zzqq: Extra inputs are not permitted;" in msg


def test_bad_target_precision_names_its_index():
    msg = error_of(base(targets=[{"runtime": "openvino"}, {"runtime": "onnxruntime", "precision": "int4"}]))
    assert "targets[1].precision: Input should be 'fp32', 'fp16' or 'int8'" in msg


def test_unknown_runtime_lists_known_ones():
    msg = error_of(base(targets=[{"runtime": "tensorflowlite"}]))
    assert "targets[0]" in msg and "'onnxruntime', 'openvino'" in msg


def test_per_target_options_are_typed():
    msg = error_of(base(targets=[{"runtime": "openvino", "inference_precision": "int4"}]))
    assert "targets[0].inference_precision" in msg
    msg = error_of(base(targets=[{"runtime": "onnxruntime", "inference_precision": "f32"}]))
    assert "targets[0].inference_precision: Extra inputs are not permitted" in msg


@pytest.mark.parametrize(
    "data, expected",
    [
        (base(inputs=[]), "a pytorch source needs 'inputs'"),
        ({"name": "m", "source": {"framework": "onnx"}}, "an onnx source needs 'path'"),
        (base(source={"framework": "pytorch", "factory": "nocolon"}), "source.factory: factory must look like"),
        (base(inputs=[{"name": "x", "shape": [0, 3]}]), "inputs[0].shape[0]: dimension 0 must be a positive integer"),
        (base(dims={"batch": {"min": 4, "max": 2}}), "dims.batch: need min <= opt <= max"),
        (base(samples={"preprocess": {"resize": 100, "crop": 224}}), "samples.preprocess: crop (224) cannot be larger"),
        (base(stages=["build"]), "stage 'build' needs at least one entry in 'targets'"),
        (base(targets=[{"runtime": "openvino"}, {"runtime": "openvino"}]), "two targets share the id 'openvino_fp32'"),
        (base(name="bad name"), "name: String should match pattern"),
        (base(verify={"tolerances": {"fp32": {"min_cosine": 2}}}), "verify.tolerances.fp32.min_cosine"),
    ],
)
def test_invalid_recipes(data, expected):
    assert expected in error_of(data)


def test_distinct_target_names_allow_same_runtime():
    r = parse_recipe(base(targets=[{"runtime": "openvino"}, {"runtime": "openvino", "name": "ov_bf16",
                                                               "inference_precision": "bf16"}]), Path("/b"))
    assert [t.id for t in r.targets] == ["openvino_fp32", "ov_bf16"]


def test_tolerance_override_keeps_other_defaults():
    r = parse_recipe(base(verify={"tolerances": {"fp16": {"min_cosine": 0.99}}}), Path("/b"))
    assert r.verify.tolerances["fp16"].min_cosine == 0.99
    assert r.verify.tolerances["fp32"].min_cosine == 0.9999


def test_yaml_syntax_error_has_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nsource: [unclosed\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "not valid YAML at line" in info.value.message


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_cli_validate_reports_key_path_and_exit_2(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(base(targets=[{"runtime": "openvino", "precision": "int3"}])))
    res = run_cli("recipe", "validate", path)
    assert res.code == EXIT_USAGE
    assert "targets[0].precision" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_validate_json(tmp_path):
    res = run_cli("recipe", "validate", REPO / "recipes" / "efficientnet_lite0.yaml", "--json")
    assert res.code == 0, res.stderr
    data = res.json()
    assert data["valid"] is True and len(data["sha256"]) == 64
    assert [t["precision"] for t in data["recipe"]["targets"]] == ["fp32", "fp16", "int8", "fp32", "int8"]
    assert data["recipe"]["calibration"]["data"].endswith("calib_data/images")


def test_int8_needs_calibration():
    msg = error_of(base(targets=[{"runtime": "onnxruntime", "precision": "int8"}]))
    assert "int8 targets (onnxruntime_int8) need a 'calibration' section" in msg


def test_template_from_init_is_valid(tmp_path):
    path = tmp_path / "new.yaml"
    assert run_cli("recipe", "init", path).code == 0
    text = path.read_text()
    assert "# convertctl recipe" in text  # commented
    recipe, _ = load_recipe(path)
    assert recipe.name == "my_model" and len(recipe.targets) == 3
    again = run_cli("recipe", "init", path)
    assert again.code == EXIT_USAGE and "exists" in again.stderr


def test_build_int8_without_calibration_points_at_quantize_calib(tmp_path):
    """On the command line there is no recipe to add a section to: the hint names the option that gives the data."""
    import onnx
    from onnx import TensorProto, helper


    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    res = run_cli("build", tmp_path / "m.onnx", "-t", "onnxruntime", "-p", "int8", "-o", tmp_path / "out")
    assert res.code == 2
    assert "int8 targets (onnxruntime_int8) need a 'calibration' section" in res.stderr
    assert "hint: give calibration data: `convertctl quantize MODEL --int8 --calib FOLDER_OR_NPZ" in res.stderr
