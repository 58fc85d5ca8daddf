"""paddle2onnx in a process of its own, and its failures as one line that names the Paddle operator.

paddle2onnx aborts the whole process (SIGABRT from C++) on an unsupported operator or an out-of-range opset,
so the conversion runs as `python -m convertctl.frontends.paddle.convert ARGS_JSON`, a grandchild of the
export child, whose output is read back. Runs inside the Paddle environments (stdlib, numpy, paddle, onnx).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from convertctl.frontends.paddle.common import (
    ANSI,
    LEGACY_STACK_HINT,
    major,
    p2o_version,
    static_mode,
)
from convertctl.frontends.worker import ChildError, first_line

# A log line of paddle2onnx, Paddle's Python logger or glog: ends a program listing that is being skipped.
_LOG_LINE = re.compile(r"\s*(\[Paddle2ONNX\]|\[ERROR\]|\[WARNING\]|\d{4}-\d\d-\d\d |[IWEF]\d{4} |-{10}"
                       r"|Traceback)")
# PIR op name -> the name paddle2onnx 2.x registers its mapper under (its convert_pir_op_name table).
_PIR_TO_P2O = {
    "matmul": "matmul_v2", "batch_norm_": "batch_norm", "topk": "top_k_v2", "expand": "expand_v2",
    "repeat_interleave_with_tensor_index": "repeat_interleave", "assign_value_": "assign_value",
    "flatten": "flatten_contiguous_range", "unsqueeze": "unsqueeze2", "arange": "range", "argmax": "arg_max",
    "floor_divide": "elementwise_floordiv", "subtract": "elementwise_sub", "multiply": "elementwise_mul",
    "divide": "elementwise_div", "remainder": "elementwise_mod", "minimum": "elementwise_min",
    "maximum": "elementwise_max", "min": "reduce_min", "max": "reduce_max", "mean": "reduce_mean",
    "sum": "reduce_sum", "prod": "reduce_prod", "any": "reduce_any", "all": "reduce_all", "numel": "size",
    "hardswish": "hard_swish", "hardsigmoid": "hard_sigmoid", "add": "elementwise_add", "add_n": "sum",
    "grid_sample": "grid_sampler", "nonzero": "where_index",
}
# Ops paddle2onnx handles without a mapper (graph inputs/outputs, weights, control flow).
_NOT_CONVERTED = {"feed", "fetch", "data", "if", "while", "yield", "print", "conditional_block",
                  "select_input", "parameter", "constant", "shadow_output", "set_parameter"}


def _convert_main(args: dict) -> None:
    """The grandchild: one paddle2onnx.export call; a failure may kill it with SIGABRT."""
    import paddle2onnx

    kwargs = {"save_file": args["onnx"], "opset_version": args["opset"], "auto_upgrade_opset": True,
              "verbose": True, "enable_onnx_checker": True, "enable_experimental_op": True,
              "enable_optimize": True, "deploy_backend": "onnxruntime"}
    if major(paddle2onnx.__version__) >= 2:
        # Its default, polygraphy, sets POLYGRAPHY_AUTOINSTALL_DEPS=1: it may pip-install onnxruntime mid-run.
        kwargs["optimize_tool"] = "none"
    paddle2onnx.export(args["model"], args["params"], **kwargs)


def _echo(lines):
    """Print paddle2onnx's output to the log without its program listings and per-op progress lines."""
    skipped = None  # lines left out of the listing being skipped, None when not in one
    for line in lines:
        if skipped is not None:
            if not _LOG_LINE.match(line) or "block_idx" in line:
                skipped += 1
                continue
            print(f"[convertctl] ({skipped} lines of program listing left out)", flush=True)
            skipped = None
        if "Start export " in line or "Finish export " in line:
            continue
        print(line, flush=True)
        if "PIR Program:" in line or "original inference program is:" in line:
            skipped = 0


def run_paddle2onnx(model: Path, params: Path, onnx_path: Path, opset: int) -> tuple[int, str]:
    """paddle2onnx in a grandchild: (return code, its stdout+stderr without ANSI colours)."""
    args = json.dumps({"model": str(model), "params": str(params), "onnx": str(onnx_path), "opset": opset})
    cmd = [sys.executable, "-m", "convertctl.frontends.paddle.convert", args]
    lines: list[str] = []
    # paddle2onnx 2.x translates a .pdmodel into a mkdtemp() folder that an abort leaves behind: use our own.
    with tempfile.TemporaryDirectory(prefix="convertctl-paddle2onnx-") as tmp:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": tmp}
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as proc:

            def read():
                for raw in proc.stdout:
                    line = ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
                    lines.append(line)
                    yield line

            _echo(read())
    return proc.returncode, "\n".join(lines)


def _pir_ops(model: Path, pir: bool) -> list[str]:
    """The PIR op names paddle2onnx 2.x sees (a .pdmodel is translated first, as paddle2onnx does)."""
    import paddle

    with static_mode(pir):
        if pir:
            program = paddle.static.Program()
            paddle.base.core.deserialize_pir_program(str(model), program)
        else:
            legacy = paddle.static.Program.parse_from_string(model.read_bytes())
            program = paddle.pir.translate_to_pir(legacy.desc)
        names = []

        def walk(block):
            for op in block.ops:
                names.append(op.name())
                for sub in (op.blocks() if hasattr(op, "blocks") else []):
                    walk(sub)

        walk(program.global_block())
    return names


def unsupported_ops(model: Path, pir: bool) -> list[str]:
    """Ops of the model paddle2onnx has no mapper for: when its own message does not name them (2.x prints an
    empty list). Best effort: [] when unsure."""
    try:
        from paddle2onnx.utils import get_all_supported_operators

        if major(p2o_version()) >= 2:
            from paddle2onnx.utils import get_all_supported_operators_pir

            supported = set(get_all_supported_operators_pir())
            found = []
            for name in _pir_ops(model, pir):
                short = name.split(".", 1)[-1]
                if name.startswith("builtin.") and short not in _NOT_CONVERTED:
                    short = "builtin_" + short
                found.append(_PIR_TO_P2O.get(short, short))
        else:
            supported = set(get_all_supported_operators())
            import paddle

            with static_mode(False):
                program = paddle.static.Program.parse_from_string(model.read_bytes())
                found = [op.type for block in program.blocks for op in block.ops]
        return sorted({n for n in found if n not in supported and n not in _NOT_CONVERTED})
    except Exception as exc:  # only a better error message is at stake
        print(f"[convertctl] could not list the model's operators: {first_line(exc)}", file=sys.stderr)
        return []


def _failure_ops(output: str) -> list[str]:
    ops: list[str] = []
    for m in re.finditer(r"not supported yet, including ([^\n]*)", output):
        ops += [o.strip() for o in m.group(1).split(",") if o.strip()]
    if not ops:
        # Verbose 2.x logs "Start export pd_op.X" per op: a Start without its Finish is the op that broke.
        started = re.findall(r"(Start|Finish) export (\S+?),", output)
        if started and started[-1][0] == "Start":
            ops.append(started[-1][1].removeprefix("pd_op."))
    return list(dict.fromkeys(ops))


def _failure_reason(output: str, code: int) -> str:
    for pattern in (r"Failed to convert PaddlePaddle model: (.+)", r"\[ERROR\]\s*(?:\[Paddle2ONNX\])?\s*(.+)",
                    r"(Only support opset_version in range.+)", r"(Failed to load parameters.+)",
                    r"^(\w+Error: .+)"):
        m = re.search(pattern, output, re.MULTILINE)
        if m:
            return re.sub(r"\s*\[Hint:.*", "", m.group(1).strip()).rstrip(".")
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}" if code else "it wrote no ONNX model"


def convert_error(output: str, code: int, model: Path, pir: bool) -> ChildError:
    version = p2o_version()
    ops = _failure_ops(output)
    if not ops and ("unsupported operators" in output or "not supported yet" in output):
        ops = unsupported_ops(model, pir)
    reason = _failure_reason(output, code)
    if ops and "unsupported operators" in reason:
        reason = "no ONNX conversion for these Paddle operators"
    head = f"paddle2onnx {version} " + (f"cannot convert {', '.join(ops)}" if ops else "failed")
    hint = "the export log has paddle2onnx's full output"
    if "FloatAttribute" in output and not pir and major(version) >= 2:
        hint = f"paddle2onnx {version} fails on many Paddle 2.x models; {LEGACY_STACK_HINT}"
    elif "not supported yet" in output or "unsupported operators" in output:
        hint = ("paddle2onnx has no ONNX mapping for these operators; try the other Paddle stack, or replace "
                "the operators in the model")
    return ChildError("source", f"{head}: {reason}", hint=hint)


def check_written(model_proto, onnx_path: Path, version: str, pir: bool) -> None:
    """paddle2onnx 2.x writes invalid graphs for some Paddle 2.x models (e.g. a Concat with an axis out of
    range in PP-OCR rec/cls) and its own checker lets them pass: shape inference catches them."""
    import onnx

    try:
        onnx.checker.check_model(model_proto, full_check=True)
    except Exception as exc:
        onnx_path.unlink(missing_ok=True)
        text = " ".join(ANSI.sub("", str(exc)).split())
        text = text.replace("[ShapeInferenceError] Inference error(s): ", "")
        errors = [e.strip() for e in re.split(r"(?=\(op_type:)", text) if e.strip()]
        reason = errors[0][:300] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        hint = "the export log has paddle2onnx's full output"
        if not pir and major(version) >= 2:
            hint = f"paddle2onnx {version} mistranslates many Paddle 2.x models; {LEGACY_STACK_HINT}"
        raise ChildError("source", f"paddle2onnx {version} wrote an invalid ONNX model: {reason}",
                         hint=hint) from exc


def opset_note(output: str, asked: int, written: int) -> str | None:
    if written == asked:
        return None
    why = re.findall(r"Due to the operator: (\S+?), requires opset_version >= (\d+)", output)
    need = ", ".join(f"{op} needs {v}" for op, v in dict(why).items())
    return f"paddle2onnx raised the ONNX opset from {asked} to {written}" + (f" ({need})" if need else "")


if __name__ == "__main__":
    _convert_main(json.loads(sys.argv[1]))
