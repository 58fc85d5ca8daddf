"""Runs inside the onnx2tf environment (its own Python: onnx2tf pins tensorflow 2.19, numpy 1.26, onnx 1.19): the
onnx2tf command line, exactly as recorded in kit.json, and its failure named by the ONNX node it stopped at.

Standard library and onnx2tf only: convertctl's own modules need packages that environment does not have.
    python -m convertctl.targets.litert.worker request.json  ->  result.json | error.json beside the request
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _line(exc: BaseException) -> str:
    """The reason in a TensorFlow/Keras exception text, without its frames, call arguments and graph node dumps."""
    skip = ("Exception encountered", "Call arguments", "\u2022", "in user code", "File ", "raise ", "return ")
    lines = [x.strip() for x in _ANSI.sub("", str(exc)).splitlines() if x.strip()]
    reason = next((x for x in lines if not x.startswith(skip)), lines[0] if lines else "")
    reason = re.sub(r" for '\{\{node.*?'(?= with input shapes|$)", "", reason)  # TF's node dump, not the shapes
    return f"{type(exc).__name__}: {reason[:300]}" if reason else type(exc).__name__


def _op_type(onnx_path: str, node_name: str | None) -> str | None:
    if not node_name:
        return None
    try:
        import onnx

        graph = onnx.load(onnx_path, load_external_data=False).graph
        return next((n.op_type for n in graph.node if n.name == node_name), None)
    except Exception:  # only for the message
        return None


def main(request_path: str) -> int:
    request_file = Path(request_path)
    request = json.loads(request_file.read_text())
    stem = request_file.name.removesuffix(".request.json")
    result, error = request_file.with_name(f"{stem}.result.json"), request_file.with_name(f"{stem}.error.json")
    import onnx2tf
    import tensorflow as tf

    sys.argv = ["onnx2tf", *request["argv"]]
    try:
        onnx2tf.main()
    except SystemExit as exc:  # onnx2tf's own checks: error() logged the reason, then sys.exit(1)
        if exc.code not in (0, None):
            error.write_text(json.dumps({"message": f"onnx2tf {onnx2tf.__version__} stopped (exit {exc.code})",
                                         "from_log": True}))
            return 1
    except BaseException as exc:
        node = getattr(exc, "onnx_op_name", None)
        traceback.print_exc()
        error.write_text(json.dumps({"message": _line(exc), "node": node,
                                     "op_type": _op_type(request["onnx"], node)}))
        return 1
    result.write_text(json.dumps({"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
