"""INT8 through MNN's offline quantizer (tools/quantization/calibration.cpp, `quantized.out` / `_tools.mnnquant`),
fed with convertctl's calibration samples.

The quantizer reads images (one input, MNN's own resize and mean/normal) or, with `"input_type": "sequence"`, one
folder per sample holding `<input name>.txt` (the values as text) and `input.json` (each input's shape). The second
is model-agnostic: any number of inputs, any rank and dtype, the exact tensors convertctl's preprocessing made, so
the quantizer calibrates on what the other targets calibrate on. With `"debug": true` it also reports, per tensor,
the cosine between the float model and a *simulation* of the quantized one on the calibration samples (the float
model's tensors quantized and dequantized in float, calibration.cpp `_computeQuantError`): it never runs MNN's INT8
kernels, so a kernel defect (the x86 INT8 MaxPool, maxpool.py) does not show in it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from convertctl.errors import ConvertctlError, UsageError

# "name output_tensor_0:  cos distance: 0.999950, overflow ratio: 0.000046"
_DEBUG_ROW = re.compile(r"^(.*?) output_tensor_(\d+):\s+cos distance: (\S+), overflow ratio: (\S+)$")
# MNN names its tensors after the ONNX tensor they compute, plus suffixes for what it inserted around them
_SUFFIXES = re.compile(r"(__matmul_converted|_raster_\d+|__\w+_converted|_int8|_float)+$")
MAXPOOL_WHY = ("MNN 3.6.1's x86 INT8 MaxPool kernel compares its uint8-stored (offset 128) values as signed int8 and "
               "is wrong where a window holds both signs; these MaxPools run in float (docs/mnn.md)")
DIVERGING_COSINE = 0.99  # a layer below this cosine vs the float model is reported as diverging


def write_samples(calibration, folder: Path, input_names: list[str]) -> tuple[int, dict[str, list[int]]]:
    """One folder per calibration sample (`sequence` input type). Returns (count, the first sample's shapes)."""
    count, first = 0, {}
    for feeds in calibration():
        sample = folder / f"{count:05d}"
        sample.mkdir(parents=True)
        shapes = {}
        for name in input_names:
            if name not in feeds:
                raise UsageError(f"the calibration samples have no input {name!r}")
            value = np.asarray(feeds[name])
            shapes[name] = [int(d) for d in value.shape]
            # %.9g: every float32 exactly (the quantizer reads doubles with operator>>)
            np.savetxt(sample / f"{name}.txt", value.reshape(1, -1).astype(np.float64), fmt="%.9g")
        (sample / "input.json").write_text(json.dumps({"inputs": [{"name": n, "shape": s} for n, s in shapes.items()]}))
        first = first or shapes
        count += 1
    if not count:
        raise UsageError("an mnn int8 target needs calibration samples: the calibration data gave none")
    return count, first


def skip_names(onnx_path: Path, exclude_nodes: list[str], exclude_ops: list[str]) -> tuple[list[str], list[str]]:
    """MNN op names (the ONNX output tensor names of the nodes) for `skip_quant_op_names`, and the node names the
    model does not have."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    by_name = {n.name: n for n in graph.node}
    missing = [n for n in exclude_nodes if n not in by_name]
    names = [by_name[n].output[0] for n in exclude_nodes if n in by_name and by_name[n].output]
    names += [n.output[0] for n in graph.node if n.op_type in set(exclude_ops) and n.output]
    return list(dict.fromkeys(names)), missing


def config(method: str, spec, folder: Path, count: int, shapes: dict[str, list[int]], skip: list[str]) -> dict:
    return {
        "input_type": "sequence",
        "path": str(folder),
        "used_sample_num": count,
        "feature_quantize_method": method,
        "weight_quantize_method": spec.int8_weight_method,
        "inputs": [{"name": n, "shape": s} for n, s in shapes.items()],
        "debug": True,  # the per-tensor cosine float vs quantized: MNN's per-layer comparison
        **({"skip_quant_op_names": skip} if skip else {}),
    }


def quantize(float_mnn: Path, out_mnn: Path, onnx_path: Path, spec, ctx, out_dir: Path, input_names: list[str]) -> dict:
    """Quantize `float_mnn` into `out_mnn` on the calibration samples; returns the settings to record."""
    from convertctl.targets.mnn.tool import how_it_ended

    if ctx is None or ctx.calibration is None:
        raise UsageError("an mnn int8 target needs calibration data (a `calibration` section, or --calib)")
    skip, missing = skip_names(onnx_path, ctx.exclude_nodes, ctx.exclude_ops)
    if missing:
        raise UsageError(f"quantize.exclude_nodes names nodes the model does not have: {missing}")
    samples = out_dir / "calibration"  # text files: removed once quantized (convertctl made them)
    shutil.rmtree(samples, ignore_errors=True)
    try:
        count, shapes = write_samples(ctx.calibration, samples, input_names)
        method = "KL" if spec.int8_feature_method == "auto" else spec.int8_feature_method
        cfg, run = _quantize_once(method, spec, samples, count, shapes, skip, float_mnn, out_mnn, out_dir)
        fallback, failed = None, []  # failed: (method, how it ended, the log kept) of an attempt that crashed
        if run.returncode < 0 and spec.int8_feature_method == "auto":  # a native crash with KL: ADMM instead
            fallback = (f"KL: the quantizer {how_it_ended(run.returncode)} (MNN 3.6.1 does with KL on models with a "
                        "ReduceMean); ADMM used instead")
            (out_dir / "quant.log").rename(out_dir / "quant.KL.log")
            failed.append((_method_used(run.text, method), how_it_ended(run.returncode), out_dir / "quant.KL.log"))
            cfg, run = _quantize_once("ADMM", spec, samples, count, shapes, skip, float_mnn, out_mnn, out_dir)
    finally:
        shutil.rmtree(samples, ignore_errors=True)
    if run.returncode != 0 or not out_mnn.exists() or "Quantize model done" not in run.text:
        how = how_it_ended(run.returncode) if run.returncode != 0 else "ended without writing the model"
        message, hint = failure(failed + [(_method_used(run.text, cfg["feature_quantize_method"]), how, run.log)],
                                run.summary())
        raise ConvertctlError(message, hint=hint)
    # MNN 3.6.1's x86 INT8 MaxPool compares offset-uint8 bytes as signed int8 (wrong on windows holding both signs):
    # each INT8 MaxPool is made to run in float (maxpool.py)
    from convertctl.targets.mnn.maxpool import float_maxpools

    pools, left = float_maxpools(out_mnn)
    if left:
        raise ConvertctlError(
            f"MNN's INT8 MaxPool is wrong on x86 for values of both signs, and the quantizer "
            f"({_method_used(run.text, cfg['feature_quantize_method'])}) left {', '.join(left[:3])}"
            f"{', …' if len(left) > 3 else ''} in INT8 with no scale of its own, so it cannot run in float",
            hint="int8_feature_method: KL (the default) or ADMM writes the scales that let it run in float (MNN "
                 "uses EMA by itself when the converted model keeps a BatchNorm); see docs/mnn.md")
    # the folder of text samples is gone: quant.json says where they were, relative to the artifact
    cfg["path"] = "calibration/"
    (out_dir / "quant.json").write_text(json.dumps(cfg, indent=2) + "\n")
    layers = layer_rows(run.text, onnx_path)
    (out_dir / "layers.json").write_text(json.dumps(layers, indent=2) + "\n")
    return {"quantizer": "MNN offline quantizer (quantized.out)", "calibration_samples": count,
            "feature_quantize_method": _method_used(run.text, cfg["feature_quantize_method"]),
            **({"feature_quantize_fallback": fallback} if fallback else {}),
            "weight_quantize_method": spec.int8_weight_method,
            **({"skip_quant_op_names": skip} if skip else {}),
            **({"maxpool_in_float": {"layers": pools, "why": MAXPOOL_WHY}} if pools else {}),
            "quantizer_seconds": run.seconds, "quantizer_imports": run.modules,
            "layers": layer_summary(layers)}


FEATURE_METHODS = ("KL", "ADMM", "EMA")


def failure(attempts: list[tuple[str, str, Path]], said: str) -> tuple[str, str]:
    """The error and its hint when no attempt wrote a model. `attempts`: (method, how the quantizer ended, its log),
    in order: the one method asked for, or KL then ADMM (auto's fallback after KL crashed); `said`: what the last
    attempt printed last. The message names every attempt; the hint only the methods not tried yet, and every log."""
    tried = list(dict.fromkeys(m for m, _, _ in attempts))
    (last, last_how, _) = attempts[-1]
    if len(attempts) == 1:
        message = f"MNN's offline quantizer ({last}) {last_how}"
    else:
        first, first_how, _ = attempts[0]
        message = (f"MNN's offline quantizer {first_how} with {first}, and again with {last} (the fallback)"
                   if last_how == first_how else
                   f"MNN's offline quantizer {first_how} with {first}; with {last} (the fallback) it {last_how}")
    message += (f": {said}" if len(attempts) == 1 else f"; {last} printed: {said}") if said else ""
    left = [m for m in FEATURE_METHODS if m not in tried]
    logs = ", ".join(str(log) for _, _, log in attempts)
    log = f"log{'s' if len(attempts) > 1 else ''}: {logs}"
    verb = "crashed" if all("signal" in how for _, how, _ in attempts) else "failed"
    failed = f"{' and '.join(tried)} both {verb}; " if len(tried) == 2 else ""
    if not left:
        hint = f"{', '.join(tried)} all {verb}; build fp32 or fp16 instead; {log}"
    else:
        hint = f"{failed}try int8_feature_method: {' or '.join(left)} in the mnn target; {log}"
    return message, hint


def _quantize_once(method, spec, samples, count, shapes, skip, float_mnn: Path, out_mnn: Path, out_dir: Path):
    from convertctl.targets.mnn.tool import run_tool

    out_mnn.unlink(missing_ok=True)
    cfg = config(method, spec, samples, count, shapes, skip)
    (out_dir / "quant.json").write_text(json.dumps(cfg, indent=2) + "\n")
    run = run_tool("quant", ["quantized.out", str(float_mnn), str(out_mnn), str(out_dir / "quant.json")], out_dir,
                   "quant", spec.converter_timeout_s)
    return cfg, run


def _method_used(text: str, asked: str) -> str:
    """MNN switches KL/ADMM to EMA by itself when the converted model still has a BatchNorm."""
    return "EMA" if "use EMA quantize method instead" in text else asked


def layer_rows(text: str, onnx_path: Path) -> list[dict]:
    """MNN's per-tensor cosine (float vs INT8 model, on the calibration samples), in the ONNX graph's order, each with
    the ONNX node and source layer it comes from where MNN kept the ONNX tensor's name."""
    import onnx

    from convertctl.checks.model_facts import source_of

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    producer = {out: (i, node) for i, node in enumerate(graph.node) for out in node.output}
    rows = []
    for line in text.splitlines():
        m = _DEBUG_ROW.match(line.strip())
        if not m:
            continue
        name, cosine, overflow = m.group(1), float(m.group(3)), float(m.group(4))
        base = _SUFFIXES.sub("", name)
        index, node = producer.get(name) or producer.get(base) or (None, None)
        rows.append({"mnn_tensor": name, "onnx_node": node.name if node is not None else None,
                     "op_type": node.op_type if node is not None else None,
                     "source": source_of(node, initializers) if node is not None else None,
                     "cosine": cosine, "overflow_ratio": overflow, "_order": index if index is not None else 1 << 30})
    rows.sort(key=lambda r: (r["_order"], r["mnn_tensor"]))
    for r in rows:
        del r["_order"]
    return rows


def layer_summary(rows: list[dict]) -> dict:
    """The first layer (in graph order) whose cosine vs the float model falls below DIVERGING_COSINE, and the worst."""
    if not rows:
        return {"compared": 0}
    first = next((r for r in rows if r["cosine"] < DIVERGING_COSINE), None)
    worst = min(rows, key=lambda r: r["cosine"])
    by = ("MNN's quantizer (debug): cosine of simulated INT8 (fake quantization in float, not MNN's INT8 kernels) vs "
          "float per tensor, calibration samples")
    return {"compared": len(rows), "by": by,
            "threshold": DIVERGING_COSINE, "first_diverging": first, "worst": worst, "file": "layers.json"}
