"""ONNX Runtime as the core's reference executor: the session every parity check runs the ONNX in.

Export verification, the optimize guard, the quantize stage (calibration, emission checks, sensitivity), the
judging of a kit's ONNX and the latency baseline all run the ONNX here, whatever the targets are. The
onnxruntime target builds its artifact with the same session (targets/onnxruntime/), which is why that
target is the one runtime the core may name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from convertctl.errors import require

Feeds = dict[str, np.ndarray]

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


def session(model_path: Path, level: str = "all", threads: int | None = None):
    """An ONNX Runtime CPU session with explicit options (every parity check runs in one)."""
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
