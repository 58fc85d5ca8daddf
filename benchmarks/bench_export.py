"""Benchmark 7: export time per framework on a ResNet-18-sized model, with the child-process overhead apart.

    .venv/bin/python benchmarks/bench_export.py [--repeats 3] [--output benchmarks/results/export.json]

The same architecture (ResNet-18, 224x224, seeded random weights: conversion time does not depend on the
values) is written by each framework in its own formats, then exported with `convertctl export` in a fresh
process, `repeats` times each:

    pytorch        factory (benchmarks/models/resnet18.py)                 torch.onnx.export
    paddle         PIR inference.json (Paddle 3 stack)                     paddle2onnx 2.1
    paddle_legacy  .pdmodel written by Paddle 2.6 (paddle-legacy stack)   paddle2onnx 1.3
    tensorflow     Keras 3 .keras and a SavedModel                         tf2onnx

Recorded per export: the CLI's wall time, the export stage's time (manifest), the child process's time
(`child_seconds`: interpreter start, framework import, model load, reference inference, conversion) and the
converter's own time (the worker's `attempts`). The child-process overhead is measured separately: the time
to start the same interpreter and import the framework and its converter (`python -c "import ..."`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from common import CLI, RESULTS, ROOT, WORK, machine, source_state

OUT = WORK / "export_bench"
CACHE = Path(os.environ.get("CONVERTCTL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "convertctl")
PYTHONS = {"paddle": CACHE / "envs" / "paddle" / "bin" / "python",
           "paddle-legacy": CACHE / "envs" / "paddle-legacy" / "bin" / "python"}

PADDLE_MODEL = textwrap.dedent("""
    import os, sys
    if sys.argv[2] == "legacy":
        os.environ["FLAGS_enable_pir_api"] = "0"   # Paddle 3 writes .pdmodel only with PIR off
    import paddle
    paddle.seed(0)
    model = paddle.vision.models.resnet18()
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, 224, 224], "float32", name="x")]
    paddle.jit.save(model, os.path.join(sys.argv[1], "inference"), input_spec=spec)
""")

KERAS_MODEL = textwrap.dedent("""
    import os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)

    def block(x, filters, stride):
        shortcut = x
        y = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False)(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.BatchNormalization()(layers.Conv2D(filters, 1, stride, use_bias=False)(x))
        return layers.ReLU()(layers.Add()([y, shortcut]))

    inputs = keras.Input((224, 224, 3), name="x")
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(64, 7, 2, padding="same", use_bias=False)(inputs)))
    x = layers.MaxPooling2D(3, 2, padding="same")(x)
    for filters, stride in ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)):
        x = block(x, filters, stride)
    outputs = layers.Dense(1000)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs, name="resnet18")
    print(model.count_params())
    model.save(os.path.join(sys.argv[1], "resnet18.keras"))
    model.export(os.path.join(sys.argv[1], "saved_model"), verbose=False)
""")


def _write(python: str, script: str, *args: str) -> None:
    proc = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"building the model failed:\n{proc.stderr[-3000:]}")


def build_models() -> dict[str, tuple[str, list[str]]]:
    """name -> (what `convertctl export` gets, its extra arguments)."""
    OUT.mkdir(parents=True, exist_ok=True)
    cases = {"pytorch": (f"{ROOT / 'benchmarks/models/resnet18.py'}:build", ["--input", "input:batch,3,224,224"])}
    if PYTHONS["paddle"].exists():
        (OUT / "paddle_pir").mkdir(exist_ok=True)
        _write(str(PYTHONS["paddle"]), PADDLE_MODEL, str(OUT / "paddle_pir"), "pir")
        cases["paddle (PIR, Paddle 3 stack)"] = (str(OUT / "paddle_pir"), ["--input", "x:batch,3,224,224"])
    if PYTHONS["paddle-legacy"].exists():
        (OUT / "paddle_legacy").mkdir(exist_ok=True)
        _write(str(PYTHONS["paddle-legacy"]), PADDLE_MODEL, str(OUT / "paddle_legacy"), "legacy")
        cases["paddle (legacy .pdmodel, paddle-legacy stack)"] = (str(OUT / "paddle_legacy"),
                                                                  ["--input", "x:batch,3,224,224"])
    _write(sys.executable, KERAS_MODEL, str(OUT))
    cases["tensorflow (Keras 3 .keras)"] = (str(OUT / "resnet18.keras"), ["--input", "x:batch,224,224,3"])
    cases["tensorflow (SavedModel)"] = (str(OUT / "saved_model"), [])
    return cases


def _import_time(python: str, modules: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", f"import {modules}"], check=True, capture_output=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 2)


def export_once(source: str, args: list[str], out: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([CLI, "export", source, *args, "-o", str(out), "--json"], capture_output=True, text=True,
                          timeout=1800, cwd=ROOT)
    wall = time.perf_counter() - t0
    if not proc.stdout.strip():
        raise RuntimeError(f"convertctl export {source} failed:\n{proc.stderr[-3000:]}")
    manifest = json.loads(proc.stdout)
    stage = manifest["stages"][0]
    details = stage["details"]
    converted = [a for a in details.get("attempts", []) if a.get("ok")]
    return {"status": manifest["status"], "wall_s": round(wall, 2), "export_stage_s": stage["seconds"],
            "child_s": details.get("child_seconds"), "convert_s": converted[0]["seconds"] if converted else None,
            "converter": details.get("converter") or details.get("exporter"),
            "python": (details.get("python") or {}).get("executable"),
            "cosine": (next(iter(stage["verification"][0]["outputs"].values()))["cosine"]
                       if stage.get("verification") else None)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "export.json")
    args = parser.parse_args()
    rows = []
    for name, (source, extra) in build_models().items():
        runs = [export_once(source, extra, OUT / "runs" / f"{len(rows)}_{i}") for i in range(args.repeats)]
        python = runs[0]["python"] or sys.executable
        modules = {"pytorch": "torch", "paddle": "paddle, paddle2onnx", "tensorflow": "tensorflow, tf2onnx"}[
            name.split(" ")[0]]
        median = {k: round(statistics.median(r[k] for r in runs), 2) for k in ("wall_s", "export_stage_s", "child_s")
                  if all(r[k] is not None for r in runs)}
        converts = [r["convert_s"] for r in runs if r["convert_s"] is not None]
        median["convert_s"] = round(statistics.median(converts), 2) if converts else None
        start = _import_time(python, modules, args.repeats)
        rows.append({"case": name, "runs": runs, "median": median, "startup_and_import_s": start,
                     "child_overhead_share": round(start / median["child_s"], 3) if median.get("child_s") else None})
        print(f"{name:48} wall {median.get('wall_s')} s, export stage {median.get('export_stage_s')} s, child "
              f"{median.get('child_s')} s (start-up + import {start} s), converter {median['convert_s']} s")
    result = {"benchmark": "export", "machine": machine(), "source": source_state(), "repeats": args.repeats,
              "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
