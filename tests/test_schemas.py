"""The published JSON Schemas (docs/schema/): current, versioned, and true of real manifests and reports."""

from __future__ import annotations

import json

import jsonschema
import pytest

from convertctl.report.schemas import DOCS, digest, schemas

from .conftest import load_manifest, run_cli, small_cnn_recipe


@pytest.mark.parametrize("file", ["manifest.schema.json", "report.schema.json"])
def test_published_schema_is_the_generated_one(file):
    version, schema = schemas()[file]
    published = json.loads((DOCS / file).read_text())
    assert published == schema, (f"docs/schema/{file} is stale: run `python -m convertctl.report.schemas` "
                                 "(and bump the schema version if the model changed)")


@pytest.mark.parametrize("file", ["manifest.schema.json", "report.schema.json"])
def test_a_model_change_needs_a_schema_version_bump(file):
    """versions.json pins each published version's content: the same version can never mean two schemas."""
    version, schema = schemas()[file]
    registry = json.loads((DOCS / "versions.json").read_text())[file.split(".")[0]]
    assert registry.get(version) == digest(schema), (
        f"the {file.split('.')[0]} models changed but their schema version is still {version}: bump it, then run "
        "`python -m convertctl.report.schemas`")
    major, minor, patch = (int(p) for p in version.split("."))  # semantic versioning
    assert all(tuple(int(p) for p in v.split(".")) <= (major, minor, patch) for v in registry)


@pytest.mark.slow
def test_real_manifest_and_report_validate(models_file, write_recipe, tmp_path):
    recipe = write_recipe(small_cnn_recipe(targets=[{"runtime": "onnxruntime"}]))
    res = run_cli("run", recipe)
    assert res.code == 0, res.stderr
    out = tmp_path / "out"
    manifest_schema = json.loads((DOCS / "manifest.schema.json").read_text())
    report_schema = json.loads((DOCS / "report.schema.json").read_text())
    jsonschema.validate(load_manifest(out), manifest_schema)
    jsonschema.validate(json.loads((out / "report.json").read_text()), report_schema)
    broken = load_manifest(out)
    broken["artifacts"][0]["status"] = "great"  # not a status: the schema must say so
    with pytest.raises(jsonschema.ValidationError, match="'great' is not one of"):
        jsonschema.validate(broken, manifest_schema)
