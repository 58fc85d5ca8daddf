"""Recipe option docs, written once (pydantic `Field(description=...)`) and rendered three ways.

* docs/recipe.md: each block between `<!-- options:begin KEY -->` and `<!-- options:end KEY -->` is the table of
  the options at KEY (`recipe` for the top level, `source`, `samples.preprocess`, `targets` for the keys every
  target has, `targets.openvino` for the keys one target adds, ...).
* convertctl/templates/recipe.yaml, the template `convertctl recipe init` writes, from recipe.yaml.in: a line
  ending in `#: KEY` gets the first sentence of KEY's description as its comment (its choices first when KEY
  takes one of a few words).
* docs/schema/recipe.schema.json, the recipe's JSON Schema (pydantic copies the descriptions into it): point an
  editor at it (`# yaml-language-server: $schema=...`) to get completion and the descriptions while editing.

The target options come from the target registry, so a target's options appear wherever its model is.

    python -m convertctl.recipe_docs --write     # after changing an option or its description
    python -m convertctl.recipe_docs --check     # exit 1 when a rendered file is stale (what the tests assert)
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_SOURCE = Path(__file__).resolve().parent / "templates" / "recipe.yaml.in"
TEMPLATE = TEMPLATE_SOURCE.with_suffix("")  # templates/recipe.yaml, shipped with the package
DOCS = ROOT / "docs" / "recipe.md"
SCHEMA = ROOT / "docs" / "schema" / "recipe.schema.json"

COMMENT_COLUMN = 34  # where a template comment starts, when the line leaves room
OPTIONS_BLOCK = re.compile(r"(<!-- options:begin (?P<key>[\w.]+) -->\n)(?P<body>.*?)(<!-- options:end (?P=key) -->)", re.S)
PLACEHOLDER = re.compile(r"^(?P<code>.*?)\s*#: (?P<key>[\w.]+)\s*$")


# ---------------------------------------------------------------- which options live at a key


def _target_options() -> dict[str, type[BaseModel]]:
    from convertctl.targets import registry

    return {t.name: t.options_model for t in registry.all_targets()}


def _models_in(annotation) -> list[type[BaseModel]]:
    """The option models a field's type holds (through Optional, list, dict values and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = get_args(annotation)
    if get_origin(annotation) is dict:
        args = args[1:]
    return [m for a in args for m in _models_in(a)]


def model_at(key: str) -> type[BaseModel]:
    """The options model at a dotted key: `recipe`, `samples.preprocess`, `targets` (what every target has),
    `targets.tensorrt` (one target's options)."""
    from convertctl.recipe import Recipe
    from convertctl.schema import TargetOptions

    model: type[BaseModel] = Recipe
    parts = [] if key == "recipe" else key.split(".")
    for i, part in enumerate(parts):
        if issubclass(model, TargetOptions) and i == len(parts) - 1 and part in _target_options():
            return _target_options()[part]
        if part not in model.model_fields:
            raise KeyError(f"{key}: {model.__name__} has no option {part!r}")
        found = _models_in(model.model_fields[part].annotation)
        if not found:
            raise KeyError(f"{key}: {'.'.join(parts[:i + 1])} is an option, not a section of options")
        model = TargetOptions if len(found) > 1 else found[0]  # the targets' union: the keys they share
    return model


def field_at(key: str) -> tuple[type[BaseModel], str, FieldInfo]:
    """The model, name and field of one option (`source.framework`, `targets.openvino.inference_precision`)."""
    section, _, name = key.rpartition(".")
    model = model_at(section or "recipe")
    if name not in model.model_fields:
        raise KeyError(f"{key}: {model.__name__} has no option {name!r}")
    return model, name, model.model_fields[name]


def own_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The options a model documents itself: for a target's options, those it adds to (or describes anew from)
    the keys every target has."""
    from convertctl.schema import TargetOptions

    fields = dict(model.model_fields)
    if model is not TargetOptions and issubclass(model, TargetOptions):
        base = TargetOptions.model_fields
        fields = {n: f for n, f in fields.items()
                  if n not in base or (f.description and f.description != base[n].description)}
    return fields


def recipe_models() -> list[type[BaseModel]]:
    """Every options model a recipe is made of (the targets' from the registry), each once."""
    from convertctl.recipe import Recipe

    seen: list[type[BaseModel]] = []

    def walk(model):
        if model in seen:
            return
        seen.append(model)
        for f in model.model_fields.values():
            for m in _models_in(f.annotation):
                walk(m)

    walk(Recipe)
    return seen


def undescribed() -> list[str]:
    """`Model.field` of every recipe option without a description (the tests keep this empty)."""
    return [f"{m.__name__}.{n}" for m in recipe_models() for n, f in m.model_fields.items()
            if not (f.description or "").strip()]


# ---------------------------------------------------------------- a field as text


def _num(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() and abs(v) < 1e15 else str(v)


def _constraints(metadata) -> str:
    c = {}
    for m in metadata:
        for attr in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            if getattr(m, attr, None) is not None:
                c[attr] = getattr(m, attr)
    out = []
    if "ge" in c and "le" in c:
        out.append(f"{_num(c['ge'])}..{_num(c['le'])}")
    elif ("ge" in c or "gt" in c) and ("le" in c or "lt" in c):
        lo, hi = ("[", c["ge"]) if "ge" in c else ("(", c["gt"]), ("]", c["le"]) if "le" in c else (")", c["lt"])
        out.append(f"in {lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}")
    else:
        out += [f"{sign} {_num(c[k])}" for k, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")) if k in c]
    if "min_length" in c or "max_length" in c:
        lo, hi = c.get("min_length"), c.get("max_length")
        out.append(f"{lo}..{hi} items" if lo and hi else f"at most {hi} items" if hi else f"at least {lo} items")
    if "pattern" in c:
        out.append(f"`{c['pattern']}`")
    return ", ".join(out)


def literal_choices(annotation) -> list:
    """The values of a Literal type (through Optional), else []."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return literal_choices(args[0])
    return []


def type_text(annotation) -> str:
    """A field's type in words: `int`, `` `a` | `b` ``, `list of string`, `mapping string → mapping`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        inner, constraints = type_text(args[0]), _constraints(args[1:])
        return f"{inner} {constraints}" if constraints else inner
    if origin is Literal:
        return " \\| ".join(f"`{json.dumps(a) if not isinstance(a, str) else a}`" for a in args)
    if origin in (Union, types.UnionType):
        parts = list(dict.fromkeys(type_text(a) for a in args if a is not type(None)))
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if origin is list:
        return f"list of {type_text(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_text(a) for a in args) + "]"
    if origin is dict:
        return f"mapping {type_text(args[0])} → {type_text(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    names = {int: "int", float: "float", str: "string", bool: "bool", Path: "path", Any: "any"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def field_type(name: str, field: FieldInfo, model: type[BaseModel]) -> str:
    from convertctl.schema import TargetOptions

    if model is TargetOptions and name == "runtime":
        return " \\| ".join(f"`{n}`" for n in _target_options())
    text, constraints = type_text(field.annotation), _constraints(field.metadata)
    return f"{text}, {constraints}" if constraints else text


def _value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel) or (isinstance(value, dict) and any(isinstance(x, BaseModel)
                                                                         for x in value.values())):
        return "its keys' defaults"
    return f"`{_value(value)}`"


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z0-9`])", text.strip(), maxsplit=1)[0].removesuffix(".")


# ---------------------------------------------------------------- the three renderings


def markdown_table(key: str) -> str:
    model = model_at(key)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, f in own_fields(model).items():
        meaning = (f.description or "").strip().replace("|", "\\|")
        rows.append(f"| `{name}` | {field_type(name, f, model)} | {default_text(f)} | {meaning} |")
    return "\n".join(rows) + "\n"


def render_docs(text: str) -> str:
    """docs/recipe.md with every options block rendered anew."""
    return OPTIONS_BLOCK.sub(lambda m: m.group(1) + markdown_table(m.group("key")) + m.group(4), text)


def template_comment(key: str) -> str:
    _, _, field = field_at(key)
    text = first_sentence(field.description or "")
    choices = literal_choices(field.annotation)
    named = any(re.search(rf"\b{re.escape(str(c))}\b", text) for c in choices)
    if 1 < len(choices) <= 6 and text and not named:  # the choices first, unless the text names them already
        word = text.split()[0]
        lead = text[:1].lower() + text[1:] if word[1:] == word[1:].lower() else text  # not "ONNX", "PyTorch"
        return f"{' | '.join(map(str, choices))}: {lead}"
    return text


def render_template(source: str) -> str:
    """recipe.yaml from recipe.yaml.in: each `#: KEY` becomes the comment of that option."""
    out = []
    for line in source.splitlines():
        m = PLACEHOLDER.match(line)
        if m:
            code = m.group("code").rstrip()
            line = f"{code.ljust(COMMENT_COLUMN - 1)} # {template_comment(m.group('key'))}"
        out.append(line)
    return "\n".join(out) + "\n"


def json_schema() -> dict:
    from convertctl.recipe import RECIPE_VERSION, Recipe
    from convertctl.report.schemas import BASE_URL

    schema = Recipe.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{BASE_URL}/recipe-{RECIPE_VERSION}.json", **schema}


def rendered() -> dict[Path, str]:
    """Every file rendered from the descriptions -> its content."""
    return {
        TEMPLATE: render_template(TEMPLATE_SOURCE.read_text()),
        DOCS: render_docs(DOCS.read_text()),
        SCHEMA: json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
    }


def stale() -> list[Path]:
    return [p for p, text in rendered().items() if not p.exists() or p.read_text() != text]


def main(argv: list[str]) -> int:
    if argv not in (["--write"], ["--check"]):
        print("usage: python -m convertctl.recipe_docs --write | --check", file=sys.stderr)
        return 2
    if argv == ["--check"]:
        for p in stale():
            print(f"stale: {p.relative_to(ROOT)} (run `python -m convertctl.recipe_docs --write`)")
        return 1 if stale() else 0
    for p, text in rendered().items():
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
            print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
