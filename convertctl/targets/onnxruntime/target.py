"""ONNX Runtime (CPU): the portable baseline. Its runtime is also the core's reference executor
(convertctl/onnx_session.py), which this target builds and opens its artifact with.

The artifact is the ONNX model plus `session.json`, the session options it was verified with,
so a deployment reproduces exactly what was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from convertctl.errors import require
from convertctl.model import copy_model
from convertctl.onnx_session import load_error, run_session, session
from convertctl.targets.base import BuiltArtifact, Runner, Target
from convertctl.targets.onnxruntime.options import OnnxRuntimeOptions, int8_emission, resolve_int8_form


def _check(facts):
    """The judge of `convertctl check`: the installed ONNX Runtime, node by node (check.py)."""
    from convertctl.targets.onnxruntime.check import check_onnxruntime

    return check_onnxruntime(facts)


def _build(onnx_path: Path, spec: OnnxRuntimeOptions, out_dir: Path, ctx=None) -> BuiltArtifact:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = copy_model(onnx_path, out_dir)
    settings = {
        "providers": ["CPUExecutionProvider"],
        "graph_optimization_level": spec.graph_optimization_level,
        "intra_op_num_threads": spec.intra_op_threads or 0,  # 0 = ONNX Runtime's default (all cores)
    }
    if spec.precision == "int8":  # what the quantize stage emitted (same choice, same CPU)
        settings["int8_form"], settings["int8_form_reason"] = resolve_int8_form(spec.int8_form)
    (out_dir / "session.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    files.append(Path("session.json"))
    return BuiltArtifact(files=files, settings=settings)


def _open(out_dir: Path, spec: OnnxRuntimeOptions, settings: dict) -> Runner:
    ort = require("onnxruntime", "onnxruntime")
    saved = json.loads((out_dir / "session.json").read_text())
    try:
        sess = session(out_dir / "model.onnx", saved["graph_optimization_level"],
                       saved["intra_op_num_threads"] or None)
    except Exception as exc:  # the artifact's reason: ONNX Runtime's own, not its C++ source location
        raise RuntimeError(f"ONNX Runtime cannot load {out_dir.name}/model.onnx: {load_error(exc)}") from exc
    return Runner(
        run=lambda feeds: run_session(sess, feeds),
        output_names=[o.name for o in sess.get_outputs()],
        effective={
            "onnxruntime": ort.__version__,
            "providers": sess.get_providers(),
            # read back from the session: what actually runs (0 threads = ORT's default, one per core)
            "intra_op_num_threads": sess.get_session_options().intra_op_num_threads,
            "graph_optimization_level": str(sess.get_session_options().graph_optimization_level).split(".")[-1],
        },
    )


TARGET = Target(
    name="onnxruntime",
    summary="ONNX Runtime, CPU execution provider (portable baseline)",
    module="onnxruntime",
    distribution="onnxruntime",
    extra="onnxruntime",
    precisions=("fp32", "fp16", "int8"),
    options_model=OnnxRuntimeOptions,
    build=_build,
    open=_open,
    emission=lambda spec: {"fp32": "fp32", "fp16": "fp16"}.get(spec.precision) or int8_emission(spec),
    title="ONNX Runtime",
    check=_check,
    environment=("onnxruntime",),
    # a native crash in ONNX Runtime's graph optimizer: the lower levels skip the layout transformations
    crash_hint="; try graph_optimization_level: extended (or basic) for this target",
)
