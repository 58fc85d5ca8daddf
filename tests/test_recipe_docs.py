"""Recipe option docs are written once, as Field descriptions, and every rendering of them is current."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from convertctl import recipe_docs
from convertctl.schema import TargetOptions

ROOT = Path(__file__).resolve().parents[1]


def _is_target_model(model) -> bool:
    return model is not TargetOptions and issubclass(model, TargetOptions)


@pytest.mark.parametrize("path", [recipe_docs.TEMPLATE, recipe_docs.DOCS, recipe_docs.SCHEMA],
                         ids=lambda p: p.name)
def test_rendered_file_is_current(path):
    assert path.read_text() == recipe_docs.rendered()[path], (
        f"{path.relative_to(ROOT)} is stale: run `python -m convertctl.recipe_docs --write`")


def test_every_recipe_option_has_a_description():
    missing = [m for m in recipe_docs.undescribed()
               if not any(_is_target_model(t) and t.__name__ == m.split(".")[0] for t in recipe_docs.recipe_models())]
    assert missing == [], f"options without Field(description=...): {missing}"


def test_every_target_option_has_a_description():
    missing = [m for m in recipe_docs.undescribed()
               if any(_is_target_model(t) and t.__name__ == m.split(".")[0] for t in recipe_docs.recipe_models())]
    assert missing == [], f"target options without Field(description=...): {missing}"


def test_docs_show_every_target_s_options():
    keys = {k[1] for k in recipe_docs.OPTIONS_BLOCK.findall(recipe_docs.DOCS.read_text())}
    assert [t for t in recipe_docs._target_options() if f"targets.{t}" not in keys] == []


def test_published_schemas_carry_no_recipe_option_docs():
    """A recipe model a manifest or report records (an artifact's tolerance, ...) is in schemas.RECIPE_MODELS, so
    that describing a recipe option never changes a published schema and its version."""
    from convertctl.report import schemas

    recipe_names = {m.__name__ for m in recipe_docs.recipe_models()}
    for name, (_, schema) in schemas.schemas().items():
        shared = sorted(recipe_names & set(schema.get("$defs", {})))
        assert [m for m in shared if m not in schemas.RECIPE_MODELS] == [], name
        for model in shared:
            described = [p for p, v in schema["$defs"][model].get("properties", {}).items() if "description" in v]
            assert described == [], f"{name}: {model}"


def test_docs_show_every_section_of_options():
    keys = recipe_docs.OPTIONS_BLOCK.findall(recipe_docs.DOCS.read_text())
    shown = {recipe_docs.model_at(k[1]) for k in keys}
    sections = [m for m in recipe_docs.recipe_models() if not _is_target_model(m)]
    assert [m.__name__ for m in sections if m not in shown] == []


def test_the_template_names_real_options():
    source = recipe_docs.TEMPLATE_SOURCE.read_text()
    keys = [m.group("key") for line in source.splitlines() if (m := recipe_docs.PLACEHOLDER.match(line))]
    assert len(keys) > 20
    for key in keys:
        recipe_docs.field_at(key)  # raises KeyError for a key that is not an option


def test_rendering_takes_the_description():
    assert recipe_docs.template_comment("optimize.simplifier").startswith("Graph simplifier")
    assert recipe_docs.template_comment("calibration.method").startswith("minmax | entropy | percentile: ")
    table = recipe_docs.markdown_table("verify.latency")
    assert "| `runs` | int, ≥ 5 | `50` | Timed calls per measurement. |" in table


def test_json_schema_has_the_descriptions_and_takes_the_shipped_recipes():
    schema = json.loads(recipe_docs.SCHEMA.read_text())
    assert schema["properties"]["samples"]["description"].startswith("Data every stage")
    assert schema["$defs"]["Tolerance"]["properties"]["atol"]["description"]
    recipes = sorted((ROOT / "recipes").glob("*.yaml")) + [recipe_docs.TEMPLATE]
    for path in recipes:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "source": {"framework": "onnx", "path": "m.onnx"}, "sampels": {}}, schema)


def test_check_mode_exits_0_when_current(capsys):
    assert recipe_docs.main(["--check"]) == 0
    assert recipe_docs.main([]) == 2
