"""The build kit: everything needed to build and check the engine on a machine with TensorRT.

Written for every TensorRT target, with or without TensorRT here: the ONNX to build from, the optimization
profile, the trtexec command for TensorRT 10.x and for 11.x (their flags differ), a script per version and
kit.json, the machine-readable form of all of it. Where TensorRT is absent this is the whole artifact, and
the run says "skipped: tensorrt not installed" — a kit is never an engine.
"""

from __future__ import annotations

import json
from pathlib import Path

from convertctl.errors import UsageError, require
from convertctl.targets.tensorrt.profiles import Profiles
from convertctl.targets.tensorrt.trtexec import bench_argv, shell_line, trtexec_argv, weak_typing_problem

KIT_FORMAT = "convertctl.tensorrt-kit/1"
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def graph_precision(onnx_path: Path) -> tuple[str, int]:
    """What a strongly typed engine of this ONNX computes in: ("int8 (Q/DQ)", n) / ("fp16-typed", 0) / ("fp32", 0)."""
    onnx = require("onnx", "onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    qdq = sum(n.op_type in _QDQ for n in model.graph.node)
    if qdq:
        return "int8 (Q/DQ)", qdq
    fp16 = onnx.TensorProto.FLOAT16
    typed = [*model.graph.initializer]
    if any(i.data_type == fp16 for i in typed) or any(
            n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute) for n in model.graph.node):
        return "fp16-typed", 0
    return "fp32", 0


def check_qdq_for_tensorrt(onnx_path: Path) -> dict:
    """TensorRT's Q/DQ rules (symmetric INT8, zero-point 0, per-channel weights on the output axis), checked on
    any ONNX with Q/DQ before it goes to TensorRT or into a kit."""
    from convertctl.targets.tensorrt.qdq_validator import format_findings, validate_qdq

    report = validate_qdq(onnx_path)
    if not report.ok:
        lines = format_findings(report)
        raise UsageError(f"{onnx_path.name} breaks TensorRT's Q/DQ rules: {lines[0] if lines else 'see the validator'}"
                         + (f" (+{len(report.errors) - 1} more)" if len(report.errors) > 1 else ""),
                         hint="build int8 for tensorrt from the FP32 model with precision int8 (convertctl emits "
                              "symmetric S8 Q/DQ for it); the U8S8 Q/DQ made for ONNX Runtime does not fit TensorRT")
    return report.to_dict()


def name_open_dims(onnx_path: Path, profiles: Profiles) -> dict[str, list]:
    """Give the kit's ONNX the dim names its profile, trtexec lines and recipe.yaml use (an unnamed `-1`, a `?` or
    a converter's `p2o.DynamicDimension.1` becomes `batch` / `x_2`), the way a run of the kit's recipe names them
    (frontends/dims.py), so that run builds this very file. An open dim the recipe fixes gets its own name
    too (`x_2`, data/dims.py): TensorRT's parser takes equal dim names for equal dims, and the PP-OCR classifier's
    `x [-1, 3, ?, ?]` fixed at 48x192 is otherwise refused ("Input dimensions with this name have different
    constant values"). Names only: the graph and its weights are untouched. Returns {input: [its dims before]}
    for the inputs whose dims were renamed."""
    from types import SimpleNamespace

    from convertctl.data.dims import chosen_name, dim_name
    from convertctl.frontends.dims import name_dynamic_dims
    from convertctl.model import describe

    before = {t.name: list(t.shape) for t in describe(onnx_path).inputs}
    wanted = []
    for p in profiles.inputs:
        raw = before.get(p.name, [])
        shape = list(p.dims)
        if len(raw) == len(shape):
            for axis, (d, r) in enumerate(zip(shape, raw, strict=True)):
                open_dim = not (isinstance(r, int) and r > 0)
                if isinstance(d, int) and open_dim and not (isinstance(r, str) and chosen_name(r)):
                    shape[axis] = dim_name(p.name, axis, r)  # fixed by the recipe, still open in the ONNX
        wanted.append(SimpleNamespace(name=p.name, shape=shape))
    name_dynamic_dims(onnx_path, wanted)
    after = {t.name: list(t.shape) for t in describe(onnx_path).inputs}
    return {name: before[name] for name in after if after[name] != before.get(name)}


def _script(line: str, major: int) -> str:
    return ("#!/bin/sh\n"
            f"# Build the engine with TensorRT {major}.x's trtexec (written by convertctl; see README.md)\n"
            "set -e\ncd \"$(dirname \"$0\")\"\n"
            f"{line}\n")


def write_kit(onnx_path: Path, spec, profiles: Profiles, out_dir: Path, precision: tuple[str, int],
              qdq_rules: dict | None) -> tuple[list[Path], dict]:
    """Write the kit into out_dir; return (files relative to out_dir, kit.json's content)."""
    from convertctl.model import copy_model
    from convertctl.report.manifest import sha256_file

    out_dir.mkdir(parents=True, exist_ok=True)
    files = copy_model(onnx_path, out_dir)
    named = name_open_dims(out_dir / "model.onnx", profiles)
    commands, unavailable = {}, {}
    for major in (10, 11):
        problem = weak_typing_problem(major, spec)
        if problem:
            unavailable[f"{major}.x"] = problem
            continue
        argv = trtexec_argv(major, spec, profiles, graph_int8=precision[0].startswith("int8"))
        commands[f"{major}.x"] = {"argv": argv, "line": shell_line(argv), "script": f"build_trt{major}.sh"}
        script = out_dir / f"build_trt{major}.sh"
        script.write_text(_script(shell_line(argv), major))
        script.chmod(0o755)
        files.append(Path(script.name))
    kit = {
        "format": KIT_FORMAT,
        "onnx": "model.onnx",
        "onnx_sha256": sha256_file(out_dir / "model.onnx"),
        "precision": {"requested": spec.precision, "graph": precision[0], "qdq_nodes": precision[1],
                      "network": "strongly typed" if spec.strongly_typed else "weakly typed (precision flags)"},
        "profiles": profiles.to_dict(),
        "dims_named": named,
        "trtexec": commands,
        "not_possible": unavailable,
        "bench": {"argv": bench_argv(profiles), "line": shell_line(bench_argv(profiles))},
        "options": spec.model_dump(mode="json", exclude={"runtime", "name", "tolerance"}),
        "qdq_rules": qdq_rules,
        "engine": None,  # filled in (engine.json) only where TensorRT built one
    }
    (out_dir / "kit.json").write_text(json.dumps(kit, indent=2, sort_keys=True) + "\n")
    (out_dir / "README.md").write_text(_readme(kit))
    files += [Path("kit.json"), Path("README.md")]
    return files, kit


def _readme(kit: dict) -> str:
    lines = ["# TensorRT build kit", "",
             "convertctl wrote this folder; no engine was built here unless `model.engine` is beside this file.", "",
             f"- ONNX: `model.onnx` (sha256 `{kit['onnx_sha256'][:16]}…`), computes in {kit['precision']['graph']}, "
             f"{kit['precision']['network']} network",
             ]
    shaped = kit["profiles"].get("shaped", kit["profiles"]["dynamic"])
    if shaped:
        for p in kit["profiles"]["inputs"]:
            if p["name"] in shaped:
                lines.append(f"- profile `{p['name']}` {p['dims']}: min {p['min']}, opt {p['opt']}, max {p['max']}")
    else:
        lines.append("- static shapes: no optimization profile needed")
    for name, dims in kit.get("dims_named", {}).items():
        lines.append(f"- input `{name}`: its open dims {dims} are named as in the profile (names only; the graph is "
                     "the verified one)")
    lines += [f"- note: {n}" for n in kit["profiles"]["notes"]]
    lines += ["", "## Build"]
    for version, command in kit["trtexec"].items():
        lines += ["", f"TensorRT {version} (`./{command['script']}`):", "", "```sh", command["line"], "```"]
    for version, why in kit["not_possible"].items():
        lines += ["", f"TensorRT {version}: not possible. {why}."]
    lines += ["", "Or, where `pip install 'convertctl[tensorrt]'` works, build, verify against ONNX Runtime and time "
              "it in one step, with the same profile and options:", "", "```sh", "convertctl run recipe.yaml", "```",
              "", "## Time it", "", "```sh", kit["bench"]["line"], "```", ""]
    return "\n".join(lines)


def kit_recipe(name: str, spec, profiles: Profiles, tolerance: dict | None, inputs=()) -> dict:
    """A recipe that builds this kit's ONNX on a TensorRT machine with the same profile, options and gate.

    The ONNX already carries its precision (Q/DQ or FP16 types), so the target is an fp32 one by name of the
    original, gated with the original precision's tolerance; a weakly typed fp16 build keeps fp16, which is its
    builder flag on the FP32 ONNX. `inputs` are the run's input specs: every input is written as the run fed it
    (shape in the profile's dim names, dtype, batch_axis, value or range), so the engine is verified on data of
    the same kind."""
    from convertctl.data.inputs import infer_batch_axes
    from convertctl.recipe import DTYPES

    dims = {}
    for p in profiles.inputs:
        for d, low, opt, high in zip(p.dims, p.min, p.opt, p.max, strict=True):
            if isinstance(d, str):
                dims[d] = low if low == opt == high else {"min": low, "opt": opt, "max": high}
    by_name = {s.name: s for s in inputs}
    declared = []
    for p in profiles.inputs:
        given = by_name.get(p.name)
        entry = {"name": p.name, "shape": list(p.dims)}
        if given is not None:
            entry["dtype"] = given.dtype
            entry["batch_axis"] = given.batch_axis
            if given.value is not None:
                entry["value"] = given.value
            else:
                entry["range"] = [float(v) for v in given.range]
        else:  # no spec of the run: what the ONNX says, batched as a run reading the model would batch it
            entry["dtype"] = p.dtype if p.dtype in DTYPES else "float32"
        declared.append(entry)
    missing = [e for e in declared if "batch_axis" not in e]
    if missing:
        infer_batch_axes(missing)
        for e in missing:
            e.setdefault("batch_axis", 0 if e["shape"] else None)
    options = spec.model_dump(mode="json", exclude={"runtime", "name", "precision", "tolerance", "timing_cache"},
                              exclude_defaults=True)
    precision = "fp16" if spec.precision == "fp16" and not spec.strongly_typed else "fp32"
    target = {"runtime": "tensorrt", "name": spec.id, "precision": precision, **options}
    if tolerance:
        target["tolerance"] = tolerance
    recipe = {"version": 1, "name": name, "source": {"framework": "onnx", "path": "model.onnx"},
              "inputs": declared, "targets": [target], "output": "out",
              "stages": ["export", "check", "build"]}  # no optimize: the engine is built from exactly this ONNX
    if dims:
        recipe["dims"] = dims
    return recipe
