"""The quantize stage: calibrate once, emit what the targets need, verify each emission.

Called by the pipeline after optimize when a target needs anything but the FP32 ONNX. (A recipe whose only INT8
targets quantize inside their own build, from the FP32 ONNX (`Target.int8_quantizer`), skips this stage: they
collect their own statistics from the same calibration samples.) Every emitted model is run in ONNX Runtime and
compared with the FP32 model, and checked against the rules of every target that has some for it
(`Target.review_emission`), whether or not that target is installed.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convertctl.errors import ConvertctlError
from convertctl.report.manifest import Comparison

# Samples the sensitivity ranking runs (one FP32 session and run per quantized layer). EfficientNet-Lite0: the
# same top 6, and the same suggestions, on 8, 16, 32 and all 91 held-out views; its 50 layers take 4.6 s on 8
# samples on 2 cores (11 s while another run shares them), 16 samples twice that.
SENSITIVITY_SAMPLES = 8
QDQ_EMISSIONS = ("qdq_u8s8", "qdq_u8u8", "qdq_s8")


@dataclass
class QuantizeResult:
    emissions: dict[str, Path]  # emission name -> ONNX path (fp32 included)
    findings: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    verification: list[Comparison] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # emission -> why it could not be made (its targets error)


def run_quantize(fp32: Path, needed: set[str], calib, recipe, folder: Path, cache_dir: Path, feeds, output_names,
                 fp32_outputs, chunk) -> QuantizeResult:
    from convertctl.data.batching import axes_of, take
    from convertctl.evaluate.compare import compare
    from convertctl.model import companion_files
    from convertctl.onnx_session import session
    from convertctl.quantize.batches import run_session
    from convertctl.quantize.histograms import layer_histograms
    from convertctl.quantize.histograms import summary as histogram_summary
    from convertctl.quantize.layers import layer_errors, suggested_exclusions
    from convertctl.quantize.opset import upgrade_for_qdq
    from convertctl.quantize.sensitivity import weight_sensitivity
    from convertctl.quantize.table import calibrate
    from convertctl.targets.registry import all_targets

    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    # a recipe whose onnxruntime int8 targets disagree is wrong as a whole (exit 2), not one emission's failure
    form = u8s8_form(recipe.targets) if "qdq_u8s8" in needed else None
    result = QuantizeResult(emissions={"fp32": fp32})
    # Q/DQ needs opset 13 (per-channel axis): an older model is upgraded and verified first, and every emission,
    # and the calibration table they share, is made from the upgraded model. FP32 targets keep the original.
    base, upgrade = fp32, None
    if needed & set(QDQ_EMISSIONS):
        upgrade = upgrade_for_qdq(fp32, folder, feeds, chunk, recipe.verify.tolerances["fp32"])
    if upgrade is not None:
        base = upgrade.path
        result.outputs += companion_files(upgrade.path)
        result.findings.append(upgrade.finding)
        result.details["opset_upgrade"] = upgrade.details
    table = None
    if calib is not None:
        spec = recipe.calibration
        table = calibrate(base, lambda: (s.feeds for s in calib.calibration()), calib.sha256, spec.method,
                          spec.percentile, cache_dir, recipe.name, batch=chunk)
        for f in (table.path, table.path.with_name(table.path.name.replace(".json", ".meta.json"))):
            shutil.copyfile(f, folder / f.name.replace(f"{recipe.name}.", ""))
        result.outputs += [folder / "calibration.json", folder / "calibration.meta.json"]
        state = "reused from cache" if table.reused else (
            f"recalibrated: {table.invalidated}" if table.invalidated else "calibrated")
        result.findings.append(f"calibration table ({spec.method}, {table.meta['num_samples']} samples, "
                               f"{table.meta['tensors']} tensors): {state}")
        result.details["calibration"] = {**table.meta, "reused": table.reused, "invalidated": table.invalidated,
                                         "cache": str(table.path)}
    order = ["qdq_u8s8", "qdq_u8u8", "qdq_s8", "fp16"]  # INT8 first: its comparison is the one the terminal shows
    for name in sorted(needed - {"fp32"}, key=order.index):
        out = folder / f"model.{name}.onnx"
        try:
            info = _emit(name, base, out, table, recipe, form)
        except ConvertctlError as exc:  # this precision cannot be made; the other targets (FP32 at least) still build
            out.unlink(missing_ok=True)  # nothing half-written looks finished
            why = exc.message + (f" ({exc.hint})" if exc.hint else "")
            result.failed[name] = why
            result.findings.append(f"{name}: not made: {why}")
            result.details[name] = {"error": why}
            continue
        if name == "qdq_u8s8":
            result.findings.append(f"qdq_u8s8: {info['int8_form']} ({info['int8_form_reason']})")
        if upgrade is not None:
            info["opset"] = upgrade.details["to_opset"]
        if info.get("layers_in_subgraphs_left_float"):  # say so: such an "INT8" model is mostly float
            result.findings.append(
                f"{name}: {info['layers_in_subgraphs_left_float']} Conv/Gemm/MatMul layer(s) inside If/Loop/Scan "
                f"bodies stay float (ONNX Runtime's Q/DQ quantizer and calibrator work on the main graph only); "
                f"{info['layers_in_main_graph']} in the main graph can be quantized")
        result.emissions[name] = out
        result.outputs.append(out)
        # the emission's own numbers, without ONNX Runtime's layout transformations (level "all"), which crash
        # natively on some FP16 graphs; each target verifies again at its own level
        actual = run_session(session(out, level="extended"), feeds, chunk)
        result.verification.append(compare(f"fp32 onnx ({name})", output_names, fp32_outputs, actual))
        for target in all_targets():  # a target's rules for this emission, checked whether or not it is installed
            review = target.review_emission(name, out) if target.review_emission else None
            if review is not None:
                info[review.key] = review.details
                result.findings.append(review.finding)
        result.details[name] = info
    if upgrade is not None:  # after the emissions: the terminal shows the first comparison, the INT8 one
        result.verification.append(upgrade.comparison)
    qdq = next((result.emissions[n] for n in ("qdq_u8s8", "qdq_s8") if n in result.emissions), None)
    if qdq is not None:
        # a bounded slice along each input's batch axis (views, no copies; unbatched inputs and scalars whole)
        evaluation = take(feeds, 0, 32, axes_of(chunk))
        rows = layer_errors(base, qdq, evaluation, chunk)
        (folder / "layer_errors.json").write_text(json.dumps(rows, indent=2) + "\n")
        result.outputs.append(folder / "layer_errors.json")
        # Which layers to keep in float: the sensitivity ranking (one layer's INT8 weights at a time, model
        # outputs vs FP32), not the introduced-dB one above, which misses error amplified downstream.
        t_sens = time.perf_counter()
        reduced = qdq == result.emissions.get("qdq_u8s8") and result.details["qdq_u8s8"].get("reduce_range", False)
        sens = weight_sensitivity(base, evaluation, max_samples=SENSITIVITY_SAMPLES, chunk=chunk, qdq=qdq,
                                  reduce_range=reduced)
        sens_seconds = round(time.perf_counter() - t_sens, 3)
        (folder / "sensitivity.json").write_text(json.dumps(sens, indent=2) + "\n")
        result.outputs.append(folder / "sensitivity.json")
        suggested = suggested_exclusions(sens)
        result.details["layers"] = {"model": qdq.name, "worst": rows[:10], "sensitivity": sens[:10],
                                    "sensitivity_seconds": sens_seconds, "suggested_exclude_nodes": suggested}
        if suggested:
            result.findings.append("most sensitive layers (paste into quantize.exclude_nodes to keep them in "
                                   "float): " + json.dumps(suggested))
        if table is not None:  # the worst layers' input distributions against their clipping ranges
            doc = layer_histograms(base, qdq, table.ranges(), rows, evaluation, chunk=chunk)
            (folder / "histograms.json").write_text(json.dumps(doc) + "\n")
            result.outputs.append(folder / "histograms.json")
            result.details["histograms"] = histogram_summary(doc)
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _emit(name: str, base: Path, out: Path, table, recipe, form: tuple[str, str] | None) -> dict:
    """Write one emission of `base` to `out`; its details for the manifest. `form`: the qdq_u8s8 form and why."""
    from convertctl.quantize.emit import emit_fp16, emit_qdq

    q = recipe.quantize
    if name == "fp16":
        return emit_fp16(base, out, table, q.fp16_range_limit, q.exclude_ops, q.exclude_nodes)
    if name == "qdq_u8s8":
        (kind, why) = form
        info = emit_qdq(base, table, out, name, q.exclude_ops, q.exclude_nodes, reduce_range=kind == "u8s8_reduce_range")
        return {**info, "int8_form": kind, "int8_form_reason": why}
    return emit_qdq(base, table, out, name, q.exclude_ops, q.exclude_nodes)


def u8s8_form(targets, flags: set[str] | None = None) -> tuple[str, str]:
    """(form, why) of the `qdq_u8s8` emission: `u8s8` or `u8s8_reduce_range`, as the onnxruntime int8 targets
    resolve their `int8_form` on this CPU (or on `flags`). They share the emission, so they must agree."""
    from convertctl.errors import UsageError
    from convertctl.targets.onnxruntime.options import resolve_int8_form

    forms = {resolve_int8_form(t.int8_form, flags) for t in targets
             if t.runtime == "onnxruntime" and t.precision == "int8" and t.int8_form != "u8u8"}
    if len({form for form, _ in forms}) > 1:
        raise UsageError("onnxruntime int8 targets ask for both u8s8 and u8s8_reduce_range; they share one "
                         "qdq_u8s8 model", hint="give them the same int8_form")
    return next(iter(forms), resolve_int8_form("auto", flags))


def quantize_cpu_key() -> dict:
    """The part of the quantize and build stage-cache keys that depends on the CPU: its non-saturating INT8
    features, from which every `auto` INT8 choice (onnxruntime int8_form, a target's own overflow fix) is made and
    on which the verified INT8 accuracy depends."""
    from convertctl.cpu import vnni_flags

    return {"cpu_int8": vnni_flags()}


def stack_samples(samples, axes: dict[str, int | None] | None = None
                  ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Stack single-sample feeds along each input's batch axis (`axes`, default 0; None: not batched, taken from
    the first sample; data/batching.stack); labels alongside when every sample has one."""
    from convertctl.data.batching import stack

    items = list(samples)
    feeds = stack([s.feeds for s in items], axes or {})
    labels = [s.label for s in items]
    return feeds, (np.asarray(labels) if all(label is not None for label in labels) else None)
