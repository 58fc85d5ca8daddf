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


def _load(MNN, path: Path, saved: dict, threads: int):
    """The Module of `path` with the settings of runtime.json, and a function running it on one feed."""
    F = MNN.expr
    config = {"backend": "CPU", "numThread": threads, "precision": saved["precision"]}
    inputs = saved["inputs"]
    with native_stdout_captured():
        manager = MNN.nn.create_runtime_manager((config,))
        module = MNN.nn.load_module_from_file(str(path), inputs, saved["outputs"], runtime_manager=manager,
                                              shape_mutable=True, rearrange=True)
    if module is None:
        raise RuntimeError(f"MNN cannot load {path.parent.name}/{path.name}")

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

    return config, run_once


def _one_at_a_time(run_once, inputs: list[str], axes: dict):
    """`run_once` fed one sample at a time along each input's batch axis, the outputs joined along axis 0."""

    def run(feeds: Feeds) -> list[np.ndarray]:
        sizes = {np.asarray(feeds[n]).shape[axes[n]] for n in inputs if axes.get(n) is not None
                 and np.asarray(feeds[n]).ndim > axes[n]}
        if len(sizes) != 1 or sizes == {1}:
            return run_once(feeds)
        parts = [run_once({n: (np.take(np.asarray(v), [i], axis=axes[n]) if axes.get(n) is not None
                               and np.asarray(v).ndim > axes[n] else v) for n, v in feeds.items()})
                 for i in range(sizes.pop())]
        return [np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True)]

    return run


BATCH_TOLERANCE = 1e-4  # max |batched - one at a time| / max |one at a time| beyond which a build stops batching


def batch_check(path: Path, saved: dict, samples: list[Feeds], threads: int) -> dict:
    """Whether `path` gives, for a batch of the single-sample `samples` stacked along each input's batch axis (all
    of them, and the first 3), what it gives for each sample alone. Reported by a build of an INT8 model: it runs
    batched when they agree (float noise), else one sample at a time."""
    from convertctl.data.batching import stack

    MNN = import_mnn()
    axes = saved.get("batch_axes") or {}
    _, run_once = _load(MNN, path, saved, threads)
    singles = [run_once(s) for s in samples]
    worst, scale, sizes = 0.0, 0.0, []
    for n in dict.fromkeys((len(samples), min(3, len(samples)))):
        if n < 2:
            continue
        sizes.append(n)
        batched = run_once(stack(samples[:n], axes))
        for got, *parts in zip(batched, *singles[:n], strict=True):
            ref = np.concatenate(parts, axis=0).astype(np.float64)
            got = np.asarray(got, np.float64)
            scale = max(scale, float(np.abs(ref).max()) if ref.size else 0.0)
            diff = float(np.abs(got.reshape(ref.shape) - ref).max()) if got.size == ref.size and ref.size else 0.0
            worst = max(worst, diff if np.all(np.isfinite(got)) and got.size == ref.size else float("inf"))
    rel = worst / scale if scale > 0 else (0.0 if worst == 0 else float("inf"))
    return {"batch_sizes": sizes, "max_abs": min(worst, 1e30), "rel": min(rel, 1e30),
            "tolerance_rel": BATCH_TOLERANCE, "same": bool(sizes) and rel <= BATCH_TOLERANCE}


def open_mnn(out_dir: Path, spec, settings: dict) -> Runner:
    MNN = import_mnn()
    saved = json.loads((out_dir / "runtime.json").read_text())
    threads = saved.get("numThread") or default_threads()
    path = out_dir / "model.mnn"
    inputs, outputs = saved["inputs"], saved["outputs"]
    config, run_once = _load(MNN, path, saved, threads)
    with native_stdout_captured():
        used_threads = _session_threads(MNN, path, config)
    one = bool(saved.get("one_sample_at_a_time"))
    run = _one_at_a_time(run_once, inputs, saved.get("batch_axes") or {}) if one else run_once
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
        **({"batching": _batching(saved)} if "batch_check" in saved or one else {}),
    })


def _batching(saved: dict) -> str:
    check = saved.get("batch_check") or {}
    if not saved.get("one_sample_at_a_time"):
        return (f"batched (at build, batches of {check.get('batch_sizes')} gave what one sample at a time gives: "
                f"max abs {check.get('max_abs', 0):.3g})")
    why = (f"at build a batch differed from one sample at a time: max abs {check['max_abs']:.3g}, relative "
           f"{check['rel']:.3g}" if "max_abs" in check else check.get("error", "runtime.json asks for it"))
    return f"one sample at a time ({why})"


def _arithmetic(precision: str, mode: str, fp16: int | None) -> str:
    if precision == "int8":
        return "int8 (MNN's INT8 kernels; float where MNN left layers unquantized)"
    if mode == "high" or fp16 == 0:
        return "fp32" + (" (FP16-stored weights widened at load)" if precision == "fp16" else "")
    return "fp16 where the CPU has FP16 arithmetic (precision " + mode + ")"
