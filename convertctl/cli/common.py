"""Options shared by every subcommand, and turning command-line arguments into a recipe."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from convertctl.cli import state
from convertctl.errors import UsageError


def common_options(fn):
    """-v/-q/--json accepted after the subcommand too (`convertctl run x.yaml --json -v`)."""

    @click.option("--json", "json_output", is_flag=True, help="Machine-readable result on stdout; logs on stderr.")
    @click.option("-v", "--verbose", is_flag=True, help="More output; tracebacks on errors.")
    @click.option("-q", "--quiet", is_flag=True, help="Only errors and the final result.")
    @functools.wraps(fn)
    def wrapper(*args, json_output, verbose, quiet, **kwargs):
        state.json_output = state.json_output or json_output
        state.verbose = state.verbose or verbose
        state.quiet = state.quiet or quiet
        return fn(*args, **kwargs)

    return wrapper


def no_latency_option(fn):
    """`--no-latency` for the commands that build artifacts (run, build, quantize)."""
    return click.option("--no-latency", is_flag=True,
                        help="Do not time the artifacts (verify.latency.enabled: false).")(fn)


def cache_options(fn):
    """`--cache-dir` / `--no-cache` for the commands that run stages (convertctl/stage_cache.py).

    They set CONVERTCTL_STAGE_CACHE, so the child runs of a folder run use the same cache."""

    @click.option("--no-cache", is_flag=True, help="Compute every stage; neither read nor write the stage cache.")
    @click.option("--cache-dir", type=click.Path(file_okay=False),
                  help="Stage cache folder (default: $CONVERTCTL_STAGE_CACHE, else ~/.cache/convertctl/stages).")
    @functools.wraps(fn)
    def wrapper(*args, no_cache, cache_dir, **kwargs):
        import os

        if no_cache and cache_dir:
            raise UsageError("--no-cache and --cache-dir contradict each other")
        if no_cache:
            os.environ["CONVERTCTL_STAGE_CACHE"] = "off"
        elif cache_dir:
            os.environ["CONVERTCTL_STAGE_CACHE"] = str(Path(cache_dir).absolute())
        return fn(*args, **kwargs)

    return wrapper


def dim_option(fn):
    """`--dim NAME=VALUE` (or MIN:MAX, MIN:OPT:MAX) for the commands that run a model: the size (or range) of a
    dynamic dim, under the name `convertctl check` gives it; wins over a recipe's `dims`."""
    return click.option("--dim", "dims", multiple=True, metavar="NAME=VALUE",
                        help="Size of a dynamic dim, e.g. x_2=640 (or a range MIN:OPT:MAX, e.g. batch=1:4:16); the "
                             "names are those `convertctl check` lists. Wins over the recipe's `dims`.")(fn)


def dim_overrides(dims) -> dict:
    """--dim options -> a `dims` patch for the recipe ({name: {min, opt, max}}); a repeated name: the last wins."""
    from convertctl.data.dims import parse_dim_option

    out = {}
    for text in dims or ():
        name, (lo, opt, hi) = parse_dim_option(text)
        out[name] = {"min": lo, "opt": opt, "max": hi}
    return {"dims": out} if out else {}


def latency_overrides(no_latency: bool) -> dict:
    return {"verify": {"latency": {"enabled": False}}} if no_latency else {}


def merge_overrides(data: dict, overrides: dict | None) -> dict:
    """Patch a recipe dict: a flag changes one key, not the whole section (mappings merge, at any depth)."""
    out = dict(data)
    for key, value in (overrides or {}).items():
        out[key] = (merge_overrides(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict)
                    else value)
    return out


def is_recipe(path: str) -> bool:
    return path.lower().endswith((".yaml", ".yml"))


def parse_input(text: str) -> dict:
    """`name:dim,dim,...[:dtype]`, e.g. `input:batch,3,224,224` or `ids:1,128:int64`; `sr::int64` is a scalar."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or (not parts[1] and len(parts) == 2):
        raise UsageError(f"--input {text!r}: expected NAME:DIM,DIM,...[:DTYPE], e.g. input:batch,3,224,224 "
                         "(a scalar: NAME::DTYPE, e.g. sr::int64)")
    dims = [_parse_dim(text, i, d.strip()) for i, d in enumerate(parts[1].split(","))] if parts[1] else []
    spec = {"name": parts[0], "shape": dims}
    if len(parts) == 3:
        spec["dtype"] = parts[2]
    return spec


def _parse_dim(text: str, index: int, dim: str) -> int | str:
    """One DIM of `--input`: a positive int (at most limits.MAX_DIM) or a symbolic name such as `batch`."""
    from convertctl.data.limits import MAX_DIM

    try:
        value = int(dim)  # `-1` and `0` too, so they are refused as numbers rather than as odd names
    except ValueError:
        if dim.isidentifier():
            return dim
        raise UsageError(f"--input {text!r}: dim {index} is {dim!r}, neither a positive integer nor a symbolic "
                         f"name such as 'batch'") from None
    if not 1 <= value <= MAX_DIM:
        raise UsageError(f"--input {text!r}: dim {index} is {value}; a dim must be 1..{MAX_DIM}",
                         hint="a dynamic dim takes a name (e.g. batch) and its range from `dims` in a recipe")
    return value


def torch_kind(source: str) -> str | None:
    """"torchscript" / "checkpoint" for a PyTorch zip file, whatever its name; None otherwise."""
    from convertctl.frontends.pytorch.source import torch_file_kind

    return torch_file_kind(Path(source)) if Path(source).is_file() else None


def source_recipe(source: str, inputs: tuple[str, ...], framework: str | None, weights: str | None):
    """A recipe dict for a model given on the command line (no recipe file)."""
    from convertctl.frontends import registry

    cwd = Path.cwd()
    name = Path(source.split(":")[0]).stem or "model"
    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name).lstrip("_.-") or "model"
    frontend = registry.get(framework) if framework else registry.for_source(source)
    data = {"name": name, "source": frontend.cli_source(source, weights)}
    if inputs:
        data["inputs"] = [parse_input(i) for i in inputs]
    return data, cwd


def override_inputs(declared: list[dict], given: list[dict]) -> list[dict]:
    """--input NAME:DIMS replaces the shape (and dtype) of the recipe's input of that name."""
    by_name = {i["name"]: dict(i) for i in declared}
    for spec in given:
        if by_name and spec["name"] not in by_name:
            raise UsageError(f"--input {spec['name']}: the recipe has no input of that name ({', '.join(by_name)})")
        by_name[spec["name"]] = {**by_name.get(spec["name"], {}), **spec}
    return list(by_name.values())


def recipe_data(recipe) -> dict:
    """A validated recipe as a dict to patch and validate again, keeping what it left unset where that matters: a
    dim the recipe gives no range for stays one (it needs a size from the data, and the check reports it), and
    `samples.preprocess` keeps only the keys it gave (a crop it did not set does not size dynamic dims)."""
    data = recipe.model_dump(mode="json")
    data["dims"] = {k: v.model_dump(mode="json", exclude_unset=True) for k, v in recipe.dims.items()}
    data["samples"]["preprocess"] = recipe.samples.preprocess.model_dump(mode="json", exclude_unset=True)
    for spec, dumped in zip(recipe.inputs, data["inputs"], strict=True):
        if "batch_axis" not in spec.model_fields_set:
            dumped.pop("batch_axis", None)  # a scalar's default (null) is derived from its shape
    return data


def load_job(source: str, *, stages: list[str] | None, inputs=(), framework=None, weights=None, overrides=None,
             dims=()):
    """Recipe file or model path -> (recipe, sha256, recipe_path). `overrides` patch the recipe dict; `dims` are
    `--dim` options (they win over the recipe's `dims`).

    `stages=None` keeps a recipe's own stages (`run`)."""
    import hashlib
    import json

    from convertctl.recipe import load_recipe, parse_recipe

    dim_patch = dim_overrides(dims)
    if is_recipe(source):
        if framework or weights:
            raise UsageError("--framework and --weights apply to a model file; a recipe sets them under 'source'")
        recipe, sha = load_recipe(Path(source))
        data = recipe_data(recipe)
        if stages is not None:
            data["stages"] = stages
        data = merge_overrides(data, overrides)
        if inputs:
            data["inputs"] = override_inputs(data["inputs"], [parse_input(i) for i in inputs])
            drop_unused_dims(data)  # --input x:3,3,32,32 leaves the recipe's dims.batch without a use
        check_dim_names(data, dim_patch)
        data = merge_overrides(data, dim_patch)
        recipe = parse_recipe(data, Path(source).resolve().parent, origin=source)
        return recipe, sha, Path(source)
    data, base = source_recipe(source, inputs, framework, weights)
    if stages is not None:
        data["stages"] = stages
    data = merge_overrides(data, overrides)
    check_dim_names(data, dim_patch)
    data = merge_overrides(data, dim_patch)
    recipe = parse_recipe(data, base, origin="command line")
    sha = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return recipe, sha, None


def _declared_dims(data: dict) -> list[str]:
    return list(dict.fromkeys(d for spec in data.get("inputs") or [] for d in spec.get("shape", [])
                              if isinstance(d, str)))


def drop_unused_dims(data: dict) -> None:
    """Drop the recipe dict's `dims` entries that no input's shape names any more (after --input)."""
    used = set(_declared_dims(data))
    data["dims"] = {k: v for k, v in (data.get("dims") or {}).items() if k in used}


def check_dim_names(data: dict, dim_patch: dict) -> None:
    """--dim NAME must name a dim of the inputs when they are declared (a recipe's, or --input); for inputs read
    from the model the run checks it once it has read them."""
    if not data.get("inputs") or not dim_patch:
        return
    used = _declared_dims(data)
    for name in dim_patch["dims"]:
        if name not in used:
            raise UsageError(f"--dim {name}: no input has a dim of that name; the inputs' dynamic dims are: "
                             f"{', '.join(used) or 'none (every dim is fixed)'}")
