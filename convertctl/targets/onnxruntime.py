"""ONNX Runtime (CPU): the portable baseline, and the runtime every parity check uses.

The artifact is the ONNX model plus `session.json`, the session options it was verified with,
so a deployment reproduces exactly what was measured.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from convertctl.errors import require
from convertctl.model import copy_model
from convertctl.schema import TargetOptions
from convertctl.targets.base import BuiltArtifact, Feeds, Runner, Target

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeOptions(TargetOptions):
    runtime: Literal["onnxruntime"]
    # int8: U8S8 Q/DQ (U8 activations, S8 per-channel weights: the fast form on x86); fp16: FP16-typed ONNX
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    intra_op_threads: int | None = Field(None, ge=1)
    # int8 only: the Q/DQ form. u8s8 saturates on x86 CPUs without VNNI; u8s8_reduce_range (7-bit weights)
    # does not; u8u8 does not either but ran slower than FP32 there. auto: u8s8 on a CPU with VNNI, else
    # u8s8_reduce_range (the CPU that builds and verifies the artifact).
    int8_form: Literal["auto", "u8s8", "u8s8_reduce_range", "u8u8"] = "auto"


def resolve_int8_form(choice: str, flags: set[str] | None = None) -> tuple[str, str]:
    """(INT8 Q/DQ form, why). ONNX Runtime's docs: on x86 AVX2/AVX-512 without VNNI the U8S8 kernels use
    VPMADDUBSW, which can saturate; reduce_range (7-bit weights) or U8U8 avoid it. Measured on
    EfficientNet-Lite0 (91 held-out views, AMD EPYC Zen 3, AVX2 only), cosine / top-1 agreement vs PyTorch:
    u8s8 0.9875 / 0.890, u8s8_reduce_range 0.9929 / 0.923, u8u8 0.9974 / 0.956 (but 3x slower than FP32)."""
    from convertctl.cpu import vnni_flags

    if choice != "auto":
        return choice, "set in the recipe"
    have = vnni_flags(flags)
    if have:
        return "u8s8", (f"this CPU has {', '.join(have)}: its U8S8 kernels do not saturate; on a CPU without "
                        "VNNI rebuild with int8_form: u8s8_reduce_range")
    return "u8s8_reduce_range", ("this CPU has no VNNI (avx512_vnni, avx_vnni, amx_int8): its U8S8 kernels "
                                 "(VPMADDUBSW) saturate with 8-bit weights, not with 7-bit ones")


def int8_emission(spec: OnnxRuntimeOptions) -> str:
    """The quantize stage's emission an int8 target is built from: u8s8 with or without reduce_range is
    `qdq_u8s8` (S8-typed weights either way; the stage reads the form from the targets), u8u8 `qdq_u8u8`."""
    return "qdq_u8u8" if spec.int8_form == "u8u8" else "qdq_u8s8"


def session(model_path: Path, level: str = "all", threads: int | None = None):
    """An ONNX Runtime CPU session with explicit options (also used by every parity check)."""
    ort = require("onnxruntime", "onnxruntime")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])


def load_error(exc: BaseException, limit: int = 600) -> str:
    """ONNX Runtime's reason for refusing a model, on one line. The "[ONNXRuntimeError] : 1 : FAIL : Load model
    from PATH failed:" prefix and the C++ source location and signature in front of the reason (together often
    over 300 characters) are dropped first, so the length limit cuts after the reason, never before it."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text)
    text = re.sub(r"^Load model from .*? failed:\s*", "", text)
    text = _without_source_locations(text).replace("This is an invalid model. ", "")
    text = re.sub(r" The operator schemas and or other functionality .*? backward compatibility\.", "", text)
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _without_source_locations(text: str) -> str:
    """"model.cc:256 onnxruntime::Model::Model(args...) reason" -> "reason"; "utils.cc:18 GetData reason" -> "reason"."""
    while (m := re.search(r"(?<![\w/])(?:/onnxruntime_src/\S+|\w+)\.(?:cc|h|cpp):\d+ ", text)):
        rest = text[m.end():]
        name = re.match(r"[^()]*?(?=\()", rest)  # return type and qualified name, up to the argument list
        cut = len(rest.split(" ", 1)[0])  # no argument list: the function's name alone
        if name and " " not in name.group(0).split("::")[-1]:
            depth = 0
            for i in range(name.end(), len(rest)):
                depth += {"(": 1, ")": -1}.get(rest[i], 0)
                if depth == 0:
                    cut = i + 1
                    break
        text = text[: m.start()] + " " + rest[cut:]
    return " ".join(text.split())


def run_session(sess, feeds: Feeds, chunk: int | None = None) -> list[np.ndarray]:
    """Run all samples, `chunk` at a time along dim 0 (the model's batch limit)."""
    from convertctl.data.batching import run_in_chunks

    names = {i.name for i in sess.get_inputs()}

    def run(part):
        return [np.asarray(o) for o in sess.run(None, {k: v for k, v in part.items() if k in names})]

    return run_in_chunks(run, feeds, chunk)


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
)
