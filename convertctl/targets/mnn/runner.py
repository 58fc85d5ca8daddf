"""MNN's Python runtime (`MNN.nn.load_module_from_file`, the Module API: control flow and input shapes that change
from call to call), with the settings of `runtime.json`.

Importing MNN and loading a model print on the process's stdout from native code ("The device supports: ...",
"MNN use high precision"); `--json` needs a clean stdout, so both happen with file descriptor 1 pointed at a
temporary file, which is read for the CPU features MNN reports and never echoed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

from convertctl.errors import require
from convertctl.targets.base import Feeds, Runner

_DEVICE: dict[str, int] = {}  # what MNN printed about the CPU when this process first loaded it


@contextlib.contextmanager
def native_stdout_captured():
    """File descriptor 1 into a temporary file for the block (C stdio flushed on both sides); yields a callable
    returning what was written."""
    import ctypes

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    text = {"value": ""}
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield lambda: text["value"]
        finally:
            sys.stdout.flush()
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            text["value"] = sink.read().decode("utf-8", errors="replace")
            _note_device(text["value"])


def _note_device(text: str) -> None:
    m = re.search(r"The device supports: (.*)", text)
    if m and not _DEVICE:
        _DEVICE.update({k.strip(): int(v) for k, v in re.findall(r"(\w+):\s*(\d+)", m.group(1))})


def import_mnn():
    with native_stdout_captured():
        return require("MNN", "mnn")


def default_threads() -> int:
    """The CPUs this process may run on, at most 4 (MNN's own default)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def _session_threads(MNN, path: Path, config: dict) -> int | None:
    """The thread count MNN's session reports (Interpreter.getSessionInfo THREAD_NUMBER). The binding returns the
    int as a float of the same bits; read it back as the int it is."""
    try:
        interp = MNN.Interpreter(str(path))
        session = interp.createSession(dict(config))
        value = interp.getSessionInfo(session, 4)
    except Exception:
        return None
    if isinstance(value, float) and 0 < value < 1e-30:
        return struct.unpack("i", struct.pack("f", value))[0]
    return int(value) if value else None


_DTYPES = {"float32": "float", "float64": "float", "float16": "float", "int64": "int", "int32": "int",
           "int16": "int", "int8": "int8", "uint8": "uint8", "bool": "int"}


def open_mnn(out_dir: Path, spec, settings: dict) -> Runner:
    MNN = import_mnn()
    F = MNN.expr
    saved = json.loads((out_dir / "runtime.json").read_text())
    threads = saved.get("numThread") or default_threads()
    config = {"backend": "CPU", "numThread": threads, "precision": saved["precision"]}
    path = out_dir / "model.mnn"
    inputs, outputs = saved["inputs"], saved["outputs"]
    with native_stdout_captured():
        manager = MNN.nn.create_runtime_manager((config,))
        module = MNN.nn.load_module_from_file(str(path), inputs, outputs, runtime_manager=manager,
                                              shape_mutable=True, rearrange=True)
        used_threads = _session_threads(MNN, path, config)
    if module is None:
        raise RuntimeError(f"MNN cannot load {out_dir.name}/model.mnn")

    def run_once(feeds: Feeds) -> list[np.ndarray]:
        args = []
        for name in inputs:
            value = np.asarray(feeds[name])
            kind = _DTYPES.get(value.dtype.name, "float")
            value = np.ascontiguousarray(value, dtype={"float": np.float32, "int": np.int32, "int8": np.int8,
                                                        "uint8": np.uint8}[kind])
            args.append(F.const(value, list(value.shape), F.NCHW, getattr(F, kind)))
        results = module.forward(args)
        out = []
        for var in results:
            if var.data_format == F.NC4HW4:
                var = F.convert(var, F.NCHW)
            out.append(np.array(var.read(), copy=True))
        return out

    axes = saved.get("batch_axes") or {}

    def run(feeds: Feeds) -> list[np.ndarray]:
        if not saved.get("one_sample_at_a_time"):
            return run_once(feeds)
        sizes = {np.asarray(feeds[n]).shape[axes[n]] for n in inputs if axes.get(n) is not None
                 and np.asarray(feeds[n]).ndim > axes[n]}
        if len(sizes) != 1 or sizes == {1}:
            return run_once(feeds)
        parts = [run_once({n: (np.take(np.asarray(v), [i], axis=axes[n]) if axes.get(n) is not None
                               and np.asarray(v).ndim > axes[n] else v) for n, v in feeds.items()})
                 for i in range(sizes.pop())]
        return [np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True)]

    fp16 = _DEVICE.get("fp16")
    return Runner(run=run, output_names=list(outputs), effective={
        "mnn": MNN.version(),
        "backend": "CPU",
        "num_threads": used_threads if used_threads is not None else threads,
        "num_threads_from": "session" if used_threads is not None else "configured",
        "precision_mode": saved["precision"],
        # MNN computes in FP16 only with precision low/normal on a CPU with FP16 arithmetic (ARMv8.2)
        "cpu_fp16_arithmetic": bool(fp16) if fp16 is not None else None,
        "arithmetic": _arithmetic(spec.precision, saved["precision"], fp16),
        **({"batching": "one sample at a time (MNN 3.6.1's INT8 models are wrong for a batch > 1)"}
           if saved.get("one_sample_at_a_time") else {}),
    })


def _arithmetic(precision: str, mode: str, fp16: int | None) -> str:
    if precision == "int8":
        return "int8 (MNN's INT8 kernels; float where MNN left layers unquantized)"
    if mode == "high" or fp16 == 0:
        return "fp32" + (" (FP16-stored weights widened at load)" if precision == "fp16" else "")
    return "fp16 where the CPU has FP16 arithmetic (precision " + mode + ")"
