"""The published JSON Schemas of manifest.json and report.json, generated from their pydantic models.

    python -m convertctl.report.schemas            # rewrite docs/schema/ after a model change (and bump the version)

docs/schema/versions.json records the sha256 of every published schema version. tests/test_schemas.py fails
when a model changes without a schema bump (the generated schema no longer hashes to its version's entry), or
when docs/schema/ is stale: a consumer can rely on "same schema_version, same schema".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schema"
BASE_URL = "https://convertctl.invalid/schema"  # stable ids; the files themselves live in docs/schema/


def _canonical(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def schemas() -> dict[str, tuple[str, dict]]:
    """file name -> (schema version, JSON Schema)."""
    from convertctl.report.manifest import SCHEMA_VERSION, Manifest
    from convertctl.report.report_json import REPORT_SCHEMA_VERSION, Report

    out = {}
    for name, model, version in (("manifest", Manifest, SCHEMA_VERSION), ("report", Report, REPORT_SCHEMA_VERSION)):
        schema = _without_recipe_docs(model.model_json_schema(mode="serialization"))
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{BASE_URL}/{name}-{version}.json",
                  "x-schema-version": version, **schema}
        out[f"{name}.schema.json"] = (version, schema)
    return out


# Recipe models a manifest records as they are (an artifact's tolerance). Their options' descriptions document the
# recipe (convertctl/recipe_docs.py, docs/schema/recipe.schema.json); they are left out here so that documenting a
# recipe option never changes the published manifest schema and its version.
RECIPE_MODELS = ("Tolerance",)


def _without_recipe_docs(schema: dict) -> dict:
    for name in RECIPE_MODELS:
        for prop in schema.get("$defs", {}).get(name, {}).get("properties", {}).values():
            prop.pop("description", None)
    return schema


def digest(schema: dict) -> str:
    """The hash a version is registered with: of the schema without its own id and version fields."""
    body = {k: v for k, v in schema.items() if k not in ("$id", "x-schema-version")}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def write(folder: Path = DOCS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    registry_path = folder / "versions.json"
    registry = json.loads(registry_path.read_text()) if registry_path.exists() else {}
    written = []
    for file, (version, schema) in schemas().items():
        kind = file.split(".")[0]
        known = registry.setdefault(kind, {})
        if version in known and known[version] != digest(schema):
            raise SystemExit(f"{kind} schema {version} is already published with another content: bump its version "
                             f"({'SCHEMA_VERSION in report/manifest.py' if kind == 'manifest' else 'REPORT_SCHEMA_VERSION'})")
        known[version] = digest(schema)
        (folder / file).write_text(_canonical(schema))
        written.append(folder / file)
    registry_path.write_text(_canonical(registry))
    return [*written, registry_path]


if __name__ == "__main__":
    for path in write():
        print(path)
