"""MNN (Alibaba's mobile inference engine): `model.mnn` from MNN's own converter, verified here in MNN's x86 runtime.

The converter and the INT8 quantizer are the wheel's native ones (`_tools.mnnconvert` / `_tools.mnnquant`), run in
a child process (tool.py, worker.py): never the wheel's Python wrappers `MNN.tools.mnnconvert` / `mnnquant`, whose
import runs `pip install aliyun-log-python-sdk` and then uploads the machine id and the arguments to Alibaba's log
service (MNN/tools/utils/log.py in the wheel).
"""

from __future__ import annotations

import json
from pathlib import Path

from convertctl.errors import ConvertctlError
from convertctl.targets.base import BuiltArtifact, Runner, Target
from convertctl.targets.mnn.options import MNNOptions


def _io_names(onnx_path: Path) -> tuple[list[str], list[str]]:
    """The ONNX graph's inputs (initializers left out) and outputs, in order: the runner feeds and returns these."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in inits], [o.name for o in graph.output]


def refusal(onnx_path: Path, ops: list[str]) -> str:
    """"MNNConvert does not support Hardmax (node hm1, from layer x)" for the operators it named."""
    import onnx

    from convertctl.checks.model_facts import source_of

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    parts = []
    for op in ops:
        nodes = [n for n in graph.node if n.op_type == op]
        names = [n.name or f"{op}_{i}" for i, n in enumerate(nodes)]
        sources = list(dict.fromkeys(s for n in nodes if (s := source_of(n, inits))))
        where = (f" (node{'s' if len(names) > 1 else ''} {', '.join(names[:5])}{', …' if len(names) > 5 else ''}"
                 + (f"; source {', '.join(sources[:3])}" if sources else "") + ")") if names else ""
        parts.append(op + where)
    return "MNNConvert does not support " + "; ".join(parts)


def _convert(onnx_path: Path, mnn_path: Path, spec: MNNOptions, out_dir: Path, fp16: bool):
    from convertctl.targets.mnn.tool import convert_argv, how_it_ended, run_tool

    mnn_path.unlink(missing_ok=True)
    run = run_tool("convert", convert_argv(onnx_path, mnn_path, fp16), out_dir, "convert", spec.converter_timeout_s)
    ops = run.refused_ops()
    if ops:
        raise ConvertctlError(refusal(onnx_path, ops),
                              hint=f"see `convertctl check {onnx_path.name} -t mnn`; log: {run.log}")
    if run.returncode != 0 or not mnn_path.exists() or "Converted Success" not in run.text:
        how = how_it_ended(run.returncode) if run.returncode != 0 else "ended without writing the model"
        said = run.summary()
        raise ConvertctlError(f"MNNConvert {how}" + (f": {said}" if said else ""),
                              hint=f"`convertctl check {onnx_path.name} -t mnn` names the operator it fails on; "
                                   f"log: {run.log}")
    return run


def _build(onnx_path: Path, spec: MNNOptions, out_dir: Path, ctx=None) -> BuiltArtifact:
    from convertctl.targets.mnn.kit import write_readme

    out_dir.mkdir(parents=True, exist_ok=True)
    model = out_dir / "model.mnn"
    inputs, outputs = _io_names(onnx_path)
    files = [Path("model.mnn"), Path("runtime.json"), Path("README.md"), Path("convert.log")]
    if spec.precision == "int8":
        from convertctl.targets.mnn.quant import quantize

        float_model = out_dir / "model.float.mnn"  # the quantizer's input, removed once quantized
        run = _convert(onnx_path, float_model, spec, out_dir, fp16=False)
        try:
            extra = quantize(float_model, model, onnx_path, spec, ctx, out_dir, inputs)
        finally:
            float_model.unlink(missing_ok=True)
        files += [Path("quant.json"), Path("quant.log"), Path("layers.json")]
        files += [Path(f) for f in ("model.mnn.json", "quant.KL.log") if (out_dir / f).exists()]  # scales; a KL crash
    else:
        run = _convert(onnx_path, model, spec, out_dir, fp16=spec.precision == "fp16")
        extra = {"layers": _layers(onnx_path, model, spec, ctx, out_dir)}
        if (out_dir / "layers.json").exists():
            files.append(Path("layers.json"))
    weights = {"fp32": "fp32", "fp16": "fp16-stored (--fp16)", "int8": "int8 (MNN offline quantizer)"}[spec.precision]
    runtime = {"backend": "CPU", "precision": spec.runtime_precision, "numThread": spec.num_threads,
               "inputs": inputs, "outputs": outputs}
    if spec.precision == "int8":
        runtime.update(_batching(model, runtime, spec, ctx, inputs))
    (out_dir / "runtime.json").write_text(json.dumps(runtime, indent=2) + "\n")
    settings = {"weights": weights, "precision_mode": spec.runtime_precision,
                "num_threads": spec.num_threads or "auto (CPUs available, at most 4)",
                "converter": "MNNConvert (the mnn wheel's native _tools.mnnconvert)",
                "converter_seconds": run.seconds,
                # what the converter's process imported: _tools only, never MNN.tools (the telemetry wrapper)
                "converter_imports": run.modules, **extra,
                **({"batch_check": {**runtime["batch_check"],
                                    "batching": "one sample at a time" if runtime.get("one_sample_at_a_time")
                                    else "batched"}} if "batch_check" in runtime else {})}
    write_readme(out_dir, onnx_path, spec, settings)
    return BuiltArtifact(files=files, settings=settings)


BATCH_CHECK_SAMPLES = 8


def _batching(model: Path, runtime: dict, spec: MNNOptions, ctx, inputs: list[str]) -> dict:
    """How the runner feeds an INT8 model: batched when, on the first calibration samples, a batch gives what one
    sample at a time gives (runner.batch_check; a report of wrong INT8 results at batch > 1 on the digits CNN could
    not be reproduced with MNN 3.6.1, docs/mnn.md), else one sample at a time, cut along each input's batch axis."""
    import numpy as np

    from convertctl.targets.mnn.runner import batch_check, default_threads

    axes = {s.name: s.batch_axis for s in ctx.inputs} if ctx is not None and ctx.inputs else {}
    axes = {name: axes.get(name, 0) for name in inputs}
    out = {"batch_axes": axes}
    if not any(a is not None for a in axes.values()):
        return out  # no batch axis: nothing is ever batched
    samples = []
    if ctx is not None and ctx.calibration is not None:
        for feeds in ctx.calibration():
            if any(axes[n] is not None and (np.ndim(feeds[n]) <= axes[n] or np.shape(feeds[n])[axes[n]] != 1)
                   for n in inputs if n in feeds) or not all(n in feeds for n in inputs):
                break
            samples.append({n: np.asarray(feeds[n]) for n in inputs})
            if len(samples) == BATCH_CHECK_SAMPLES:
                break
    if len(samples) < 2:
        out["batch_check"] = {"error": "no two single-sample calibration samples to compare a batch on"}
        out["one_sample_at_a_time"] = True
        return out
    try:
        check = batch_check(model, {**runtime, **out}, samples, spec.num_threads or default_threads())
    except Exception as exc:  # MNN could not run the batch: feed one sample at a time, and say why
        check = {"error": f"the batch did not run: {type(exc).__name__}: {exc}"[:300]}
    out["batch_check"] = check
    if not check.get("same"):
        out["one_sample_at_a_time"] = True
    return out


def _layers(onnx_path: Path, model: Path, spec: MNNOptions, ctx, out_dir: Path) -> dict:
    """The per-layer comparison against the ONNX on one sample (layers.py); its failure never fails the build."""
    from convertctl.targets.mnn.layers import compare_layers, probe_feeds
    from convertctl.targets.mnn.runner import default_threads

    feeds = probe_feeds(ctx)
    if feeds is None:
        return {"compared": 0, "skipped": "no sample to compare on (built without a run's context)"}
    if onnx_path.stat().st_size > 1_500_000_000:
        return {"compared": 0, "skipped": "the ONNX is too large to load with every node output (protobuf 2 GB)"}
    config = {"backend": "CPU", "numThread": spec.num_threads or default_threads(), "precision": spec.runtime_precision}
    try:
        result = compare_layers(onnx_path, model, feeds, config, spec.precision)
    except Exception as exc:  # the comparison is a diagnosis: say why it is missing, build on
        return {"compared": 0, "error": f"{type(exc).__name__}: {exc}"[:300]}
    (out_dir / "layers.json").write_text(json.dumps(result["rows"], indent=2) + "\n")
    return result["summary"]


def _open(out_dir: Path, spec: MNNOptions, settings: dict) -> Runner:
    from convertctl.targets.mnn.runner import open_mnn

    return open_mnn(out_dir, spec, settings)


def _check(facts):
    """The judge of `convertctl check`: MNNConvert's own ONNX operator list, then a trial conversion (check.py)."""
    from convertctl.targets.mnn.check import check_mnn

    return check_mnn(facts)


TARGET = Target(
    name="mnn",
    summary="MNN model (.mnn) for Alibaba's mobile inference engine, verified in MNN's x86 CPU runtime",
    module="MNN",
    distribution="mnn",
    extra="mnn",
    precisions=("fp32", "fp16", "int8"),
    options_model=MNNOptions,
    build=_build,
    open=_open,
    title="MNN",
    check=_check,
    environment=("mnn",),
    int8_quantizer="MNN's offline quantizer",
    model_suffixes=(".mnn",),
)
