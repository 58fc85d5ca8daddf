"""Tencent ncnn (CPU): pnnx converts the ONNX to ncnn's `model.ncnn.param` + `model.ncnn.bin`; the artifact is those
two files and `kit.json` (the exact pnnx command that reproduces them, the ONNX-name -> ncnn-blob mapping, the
net options it was verified with). Verified through the `ncnn` Python runtime, one sample at a time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from convertctl.errors import ConvertctlError, require
from convertctl.targets.base import BuiltArtifact, Runner, Target
from convertctl.targets.ncnn.options import NO_INT8, NcnnOptions

_SCRATCH = ".pnnx-work"  # inside the artifact's folder, removed after the conversion


def onnx_io(onnx_path: Path):
    """(graph inputs as (name, elem type, dims), graph outputs as (name, dims or None), (node name, op type) pairs)
    of the ONNX, read without its weights."""
    onnx = require("onnx", "onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    g = model.graph
    inits = {t.name for t in g.initializer}

    def dims(vi):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]

    ins = [(vi.name, vi.type.tensor_type.elem_type, dims(vi) or []) for vi in g.input if vi.name not in inits]
    outs = [(vi.name, (None if dims(vi) is None else [d if isinstance(d, int) and d > 0 else None
                                                      for d in dims(vi)])) for vi in g.output]
    nodes = [(n.name or f"{n.op_type}_{i}", n.op_type) for i, n in enumerate(g.node)]
    return ins, outs, nodes


def convert(onnx_path: Path, out_dir: Path, specs: list[dict], dims: dict, fp16: bool, optlevel: int,
            timeout: float):
    """Run pnnx on the ONNX into `out_dir` (model.ncnn.param/.bin only); returns (Conversion, inputs, outputs,
    notes, {layer kept FP32: its FP16 relative error} or None when not fp16). A converter failure raises
    ConvertctlError naming the operator.

    pnnx always writes FP32 weights (`fp16=0`): its own FP16 writer flushes every weight below 2^-14 to zero
    (fp16.py), so FP16 weights are written from them here."""
    from convertctl.targets.ncnn import convert as cv

    ins, outs, nodes = onnx_io(onnx_path)
    shapes, shapes2, notes = cv.input_shapes(ins, specs, dims)
    args = cv.command(shapes, shapes2, False, optlevel)
    scratch = out_dir / _SCRATCH
    try:
        conv = cv.run_pnnx(onnx_path, scratch, args, timeout, shapes)
        why = cv.failure(conv, nodes)
        if why:
            raise ConvertctlError(why, hint="replace the operator before export, or register a custom ncnn layer")
        for name in (cv.PARAM, cv.BIN):
            shutil.move(str(scratch / name), str(out_dir / name))
    finally:
        cv.discard(scratch)
    conv.folder = out_dir
    kept = None
    if fp16:
        from convertctl.targets.ncnn.fp16 import to_fp16

        kept = to_fp16(out_dir, cv.PARAM, cv.BIN)
    return conv, ins, outs, notes, kept


def _blobs(param: str, ins, outs, specs: list[dict]) -> dict:
    """The ONNX name -> ncnn blob mapping: pnnx names the inputs in0.. and the outputs out0.. in graph order."""
    from convertctl.targets.ncnn.convert import blob_graph

    layers = blob_graph(param)
    in_blobs = [tops[0] for kind, _, _, tops in layers if kind == "Input"]
    produced = {b for *_, tops in layers for b in tops}
    out_blobs = [f"out{i}" for i in range(len(outs))]
    if len(in_blobs) != len(ins) or any(b not in produced for b in out_blobs):
        raise ConvertctlError(
            f"pnnx's ncnn model has inputs {in_blobs} and outputs {sorted(b for b in produced if b.startswith('out'))} "
            f"for the ONNX's {len(ins)} inputs and {len(outs)} outputs: convertctl cannot map them by position",
            hint="an input pnnx folded away (a constant or unused input) or a duplicated output")
    axes = {s["name"]: s.get("batch_axis", 0) for s in specs}
    return {"inputs": [{"onnx": name, "blob": in_blobs[k], "batch_axis": axes.get(name, 0)}
                       for k, (name, _, _) in enumerate(ins)],
            "outputs": [{"onnx": name, "blob": out_blobs[k], "shape": shape} for k, (name, shape) in enumerate(outs)]}


def _build(onnx_path: Path, spec: NcnnOptions, out_dir: Path, ctx=None) -> BuiltArtifact:
    from convertctl.targets.ncnn.convert import BIN, PARAM

    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [{"name": s.name, "shape": list(s.shape), "batch_axis": s.batch_axis} for s in (ctx.inputs if ctx else [])]
    dims = dict(ctx.dims) if ctx else {}
    fp16 = spec.precision == "fp16"
    conv, ins, outs, notes, kept = convert(onnx_path, out_dir, specs, dims, fp16, spec.optlevel,
                                           spec.convert_timeout_s)
    kit = {
        "precision": spec.precision,
        "files": {"param": PARAM, "bin": BIN},
        "converter": {"pnnx": _pnnx_version(), "command": " ".join(conv.command),
                      "seconds": conv.seconds,
                      "note": "run where model.onnx is; pnnx also writes its own intermediates (.pnnx.*, _pnnx.py, "
                              "_ncnn.py) there, which the artifact does not ship"
                              + ("; the FP16 .bin is then written from its FP32 one by convertctl "
                                 "(convertctl/targets/ncnn/fp16.py)" if fp16 else "")},
        "weights": _weights(fp16, kept),
        **({"fp32_layers": kept} if kept else {}),
        # what the runner sets on net.opt before load_param (runner.net_options), as a deployment must set it
        "fp16_arithmetic": fp16 and spec.fp16_arithmetic,
        "num_threads": spec.num_threads,
        "net_options": {"use_fp16_storage": fp16, "use_fp16_packed": fp16,
                        "use_fp16_arithmetic": fp16 and spec.fp16_arithmetic, "use_bf16_storage": False,
                        "num_threads": spec.num_threads or "ncnn's default (the big cores)"},
        "blobs": _blobs((out_dir / PARAM).read_text(), ins, outs, specs),
        "layers": len(conv.layer_types),
        **({"notes": notes} if notes else {}),
    }
    (out_dir / "kit.json").write_text(json.dumps(kit, indent=2) + "\n")
    settings = {"pnnx_command": kit["converter"]["command"], "convert_seconds": conv.seconds,
                "weights": kit["weights"], **({"fp32_layers": kept} if kept else {}), "layers": kit["layers"],
                "blobs": {b["onnx"]: b["blob"] for b in kit["blobs"]["inputs"] + kit["blobs"]["outputs"]},
                **({"num_threads": spec.num_threads} if spec.num_threads else {}), **({"notes": notes} if notes else {})}
    if spec.per_layer:
        settings["per_layer"] = _per_layer(onnx_path, out_dir, ctx)
    return BuiltArtifact(files=[Path(PARAM), Path(BIN), Path("kit.json")], settings=settings)


def _weights(fp16: bool, kept: dict | None) -> str:
    if not fp16:
        return "fp32 (pnnx fp16=0)"
    return ("fp16, written by convertctl from pnnx's fp16=0 FP32 weights (rounded to nearest, subnormals kept; "
            "pnnx's own fp16=1 flushes weights below 6.1e-5 to zero)"
            + (f"; {len(kept)} layer(s) FP16 cannot hold kept FP32, with featmask 31=3" if kept else ""))


def _per_layer(onnx_path: Path, out_dir: Path, ctx) -> dict | str:
    """layers.compare on the first calibration sample, summarised for the manifest."""
    if ctx is None or ctx.calibration is None:
        return "not run: no calibration samples (the recipe has no calibration section)"
    from convertctl.targets.ncnn.layers import compare

    feeds = next(iter(ctx.calibration()))
    try:
        report = compare(out_dir, onnx_path, feeds)
    except Exception as exc:  # a diagnosis that cannot be made must not fail the artifact: say why instead
        return f"not run: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"

    def line(row):
        return (f"{row['layer']} ({row['type']}, blob {row['blob']}) ~ ONNX {row['onnx_node']}: cosine "
                f"{row['cosine']:.6f}") if row and "cosine" in row else (
                f"{row['layer']} ({row['type']}, blob {row['blob']})" if row else None)

    return {"sample": "the first calibration sample", "blobs": report["blobs"], "matched": report["matched"],
            "threshold": report["threshold"], "first_divergence": line(report["first_divergence"]),
            "first_unmatched": line(report["first_unmatched"]), "worst": [line(r) for r in report["worst"][:3]]}


def _open(out_dir: Path, spec: NcnnOptions, settings: dict) -> Runner:
    from convertctl.targets.ncnn.runner import open_net

    run, names, effective = open_net(out_dir)
    return Runner(run=run, output_names=names, effective=effective)


def _check(facts):
    """The judge of `convertctl check`: a trial conversion with pnnx, loaded into ncnn (check.py)."""
    from convertctl.targets.ncnn.check import check_ncnn

    return check_ncnn(facts)


def _pnnx_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("pnnx")

TARGET = Target(
    name="ncnn",
    summary="Tencent ncnn .param/.bin (mobile CPU runtime), converted by pnnx",
    module="ncnn",
    distribution="ncnn",
    extra="ncnn",
    precisions=("fp32", "fp16"),
    unavailable=(("int8", NO_INT8),),
    options_model=NcnnOptions,
    build=_build,
    open=_open,
    title="ncnn",
    check=_check,
    environment=("ncnn", "pnnx"),
    model_suffixes=(".param",),
)
