"""Benchmark 9: TensorRT-RTX engines of the real-model corpus in FP32, FP16 and INT8 (issue 15).

    .venv/bin/python benchmarks/tensorrt_rtx_builds.py                      # every model it runs by default
    .venv/bin/python benchmarks/tensorrt_rtx_builds.py --models magika,text_orientation
    .venv/bin/python benchmarks/tensorrt_rtx_builds.py --render             # the README table from the JSON
    options: --output JSON (default benchmarks/results/tensorrt_rtx_builds.json), --timeout S per model
    (default 600), --keep (keep the temporary folder: recipes, outputs, logs), --list (the models and why some
    are left out by default)

For each corpus model, its recipe (recipes/corpus/<id>.yaml) with the targets replaced by `tensorrt_rtx` fp32, fp16
and int8 is written to a temporary folder (paths made absolute, no `output`) and run there as one `convertctl run
RECIPE --json --no-latency --no-cache -o TMP/out/<id>` process per model, so the export, calibration, the FP16 and
symmetric Q/DQ emissions and the three builds are the ones a user's run makes. The stage cache is off, so every
build is a real build (a cached stage would restore an old engine.json with an old build time). Nothing is
written into recipes/ or the models folder.

Collected per artifact from the manifest and the target folder's engine.json / build.log: status and reason,
the ONNX it was built from, TensorRT-RTX's build seconds (`build_serialized_network` alone), engine size, network
layers (all, and those with INT8 / FP16 outputs, convolutions), the gate of the FP16/INT8 ONNX in ONNX Runtime
(the engine itself cannot be verified here), and for a failure NVIDIA's message (the reason and the ERROR lines of
build.log). Building needs no GPU; on a machine without a supported GPU the engines are not run, so there is no
latency here: every built artifact is `skipped` with `built; not run: no supported GPU ...` and the run `partial`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import PROTECTED, ForeignLoad, corpus_bench_main, corpus_recipe, read_json_doc, run_machine, tail
from common import fmt_bytes as _mb
from common import run_cli_logged as execute
from common import short as _short
from common import target_folder as _target_folder

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
JSON_OUT = RESULTS / "tensorrt_rtx_builds.json"
PRECISIONS = ("fp32", "fp16", "int8")

# The corpus (docs/corpus.md), in the order they run (quick ones first, so a run cut short covers most of it).
# source: the framework the recipe exports from. skip: why it is left out by default (run it with --models).
MODELS: dict[str, dict] = {
    "text_orientation": {"source": "onnx"},
    "magika": {"source": "onnx"},
    "ppocr_cls_v2_onnx": {"source": "onnx"},
    "silero_vad_onnx": {"source": "onnx"},
    "nudenet_yolov8n": {"source": "onnx"},
    "ppocrv4_rec_onnx": {"source": "onnx"},
    "ppocrv4_det_onnx": {"source": "onnx"},
    "layout_cdla": {"source": "onnx"},
    "mtcnn_onet": {"source": "pytorch"},
    "mtcnn_pnet": {"source": "pytorch"},
    "fer_emotion_h5": {"source": "tensorflow"},
    "basic_pitch_savedmodel": {"source": "tensorflow"},
    "silero_vad_jit": {"source": "pytorch"},
}


# ---------------------------------------------------------------------------------------------- the recipes

def derived_recipe(model: str, folder: Path) -> Path:
    """The model's corpus recipe with three tensorrt_rtx targets, written to FOLDER (its relative paths made absolute:
    they are read against the recipe's own folder)."""
    return corpus_recipe(model, folder, [{"runtime": "tensorrt_rtx", "precision": p} for p in PRECISIONS],
                         {"enabled": False}, "tensorrt_rtx")  # no GPU: nothing to time


# ------------------------------------------------------------------------------------------------- running

def _nvidia_errors(folder: Path | None) -> list[str]:
    """The ERROR / INTERNAL_ERROR lines TensorRT-RTX logged while building (build.log)."""
    if folder is None or not (folder / "build.log").is_file():
        return []
    lines = (folder / "build.log").read_text(errors="replace").splitlines()
    return [ln[:600] for ln in lines if ln.startswith(("ERROR", "INTERNAL_ERROR"))][-5:]


def _gate(record: dict) -> dict | None:
    """The FP16/INT8 ONNX's gate in ONNX Runtime (the engine is not run here): passed, worst cosine, failures."""
    ver = record.get("verification") or []
    if not ver:
        return None
    g = ver[0]
    cos = [o.get("cosine") for o in (g.get("outputs") or {}).values() if o.get("cosine") is not None]
    return {"against": g.get("against"), "passed": g.get("passed"), "worst_cosine": min(cos) if cos else None,
            "failures": g.get("failures") or []}


def artifact_record(a: dict, out: Path) -> dict:
    settings = a.get("settings") or {}
    folder = _target_folder(out, a["id"])
    engine = {}
    if folder is not None and (folder / "engine.json").is_file():
        engine = json.loads((folder / "engine.json").read_text())
    types = engine.get("layer_types") or {}
    out_types = engine.get("precision", {}).get("layer_output_types") or settings.get("layer_output_types") or {}
    rec = {
        "id": a["id"], "precision": a["precision"], "status": a["status"], "reason": a.get("reason"),
        "built_from": a.get("built_from"), "artifact_seconds": a.get("seconds"),
        "graph_precision": settings.get("graph_precision"),
        "tensorrt_rtx": settings.get("tensorrt_rtx"),
        "compute_capabilities": settings.get("compute_capabilities"),
        "build_seconds": engine.get("build_seconds", settings.get("build_seconds")),
        "engine_bytes": engine.get("engine_bytes", settings.get("engine_bytes")),
        "layer_count": engine.get("layer_count", settings.get("layer_count")),
        "layer_output_types": out_types,
        # layers with an INT8 output: in a strongly typed Q/DQ network these are the Quantize layers and the INT8
        # weight constants (a Conv's own output stays float; which layers run INT8 is decided by TensorRT-RTX's
        # Q/DQ fusion when the kernels are compiled on the GPU)
        "int8_layers": out_types.get("int8", 0) if out_types else None,
        "half_layers": out_types.get("half", 0) if out_types else None,
        "int8_weight_constants": sum(1 for ly in engine.get("layers", [])
                                     if ly.get("type") == "constant" and "int8" in ly.get("outputs", [])),
        "constant_layers": types.get("constant"),
        "convolution_layers": types.get("convolution"),
        "matmul_layers": types.get("matrix_multiply"),
        "quantize_layers": types.get("quantize"),
        "dequantize_layers": types.get("dequantize"),
        "layer_types": types,
        "io_tensors": engine.get("io_tensors"),
        "emission_gate": _gate(a),
        "engine_written": bool(folder and (folder / "model.engine").is_file()),
    }
    if a["status"] == "error":
        rec["nvidia_errors"] = _nvidia_errors(folder)
    return rec


def run_model(model: str, tmp: Path, timeout: float) -> dict:
    recipe = derived_recipe(model, tmp)
    out = tmp / "out" / model
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = ["run", str(recipe), "--json", "--no-latency", "--no-cache", "-o", str(out)]
    load_before = os.getloadavg()[0]
    with ForeignLoad() as load:  # a shared machine: other processes' CPU share while this model ran
        raw = execute(argv, logs, model, timeout)
    doc = read_json_doc(raw["stdout"])
    rec = {"model": model, "source": MODELS[model]["source"], "exit_code": raw["exit_code"],
           "wall_seconds": raw["wall_seconds"], "timed_out": raw["timed_out"],
           "foreign_cpu_share": load.share, "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "argv": raw["argv"][:2] + [f"<tmp>/recipes/{recipe.name}"] + raw["argv"][3:-1] + [f"<tmp>/out/{model}"],
           "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if doc is not None and "artifacts" in doc:
        stages = {s["name"]: s for s in doc.get("stages", [])}
        quant = stages.get("quantize") or {}
        qdq = (quant.get("details") or {}).get("qdq_s8") or {}
        rules = qdq.get("tensorrt_rules") or {}
        rec.update({
            "kind": "manifest", "status": doc.get("status"), "run_seconds": doc.get("seconds"),
            "stage_seconds": {s["name"]: s.get("seconds") for s in doc.get("stages", [])},
            "stage_status": {s["name"]: s.get("status") for s in doc.get("stages", [])},
            "quantize_findings": [f for f in quant.get("findings", []) if "qdq_s8" in f or "fp16" in f
                                  or "not made" in f][:8],
            "qdq_s8_error": qdq.get("error"),
            "qdq_s8_tensorrt_rules": {k: rules.get(k) for k in ("ok", "counts", "errors")} if rules else None,
            "check_tensorrt_rtx": {k: v for k, v in (((stages.get("check") or {}).get("details", {}).get("targets")
                                                       or {}).get("tensorrt_rtx") or {}).items() if k != "nodes"},
            "messages": doc.get("messages", [])[:10],
            "artifacts": [artifact_record(a, out) for a in doc.get("artifacts", [])],
        })
    else:
        rec.update({"kind": "no-manifest", "status": (doc or {}).get("status", "crash" if doc is None else "error"),
                    "error": (doc or {}).get("error"), "hint": (doc or {}).get("hint"),
                    "stderr_tail": tail(raw["stderr"])})
    return rec


def machine() -> dict:
    return run_machine(("tensorrt-rtx-cu13", "tensorrt-rtx-cu12", "onnx", "onnxruntime", "torch", "tensorflow-cpu",
                        "tensorflow", "tf2onnx", "convertctl"), gpu=True)


def bench(models: list[str] | None = None, timeout: float = 600.0, keep: bool = False) -> dict:
    """Run the models (default: every one not marked skip), one `convertctl run` each; return the results."""
    models = models or [m for m, spec in MODELS.items() if not spec.get("skip")]
    tmp = Path(tempfile.mkdtemp(prefix="tensorrt-rtx-builds-"))
    assert not any(str(tmp.resolve()).startswith(str(p)) for p in PROTECTED), tmp
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    at_start = machine()
    records = []
    try:
        for model in models:
            print(f">> {model}: convertctl run <its recipe with tensorrt_rtx fp32/fp16/int8>", file=sys.stderr,
                  flush=True)
            rec = run_model(model, tmp, timeout)
            records.append(rec)
            print("   " + summary_line(rec), file=sys.stderr, flush=True)
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    at_end = machine()
    return {"benchmark": "tensorrt_rtx_builds", "started": started, "machine": at_start,
            "uncommitted_at_end": at_end["uncommitted"], "commit_at_end": at_end["commit"],
            "seconds": round(time.perf_counter() - t0, 1), "timeout_per_model": timeout,
            "not_run_by_default": {m: s["skip"] for m, s in MODELS.items() if s.get("skip") and m not in models},
            "gpu_note": "building needs no GPU; there is no GPU here, so no engine was loaded, run, verified or timed",
            "records": records}


# ---------------------------------------------------------------------------------------------- rendering

def summary_line(rec: dict) -> str:
    if rec["kind"] != "manifest":
        return f"exit {rec['exit_code']} in {rec['wall_seconds']} s, no manifest: {_short(rec.get('error'), 200)}"
    parts = []
    for a in rec["artifacts"]:
        if a["build_seconds"] is not None:
            parts.append(f"{a['precision']} {a['status']} {a['build_seconds']:.2f} s {_mb(a['engine_bytes'])} "
                         f"{a['layer_count']} layers (int8 {a['int8_layers']}, half {a['half_layers']})")
        else:
            parts.append(f"{a['precision']} {a['status']}: {_short(a['reason'], 140)}")
    return f"exit {rec['exit_code']} in {rec['wall_seconds']} s ({rec['status']}); " + "; ".join(parts)


def _state(a: dict) -> str:
    if a["status"] == "skipped" and (a["reason"] or "").startswith("built; not run"):
        return "built, not run"
    if a["status"] == "failed" and a["engine_written"]:
        return "built, not run; its ONNX **fails the gate**"
    return a["status"]


def _gate_text(a: dict) -> str:
    gate = a["emission_gate"]
    if not gate or a["precision"] == "fp32":
        return "–"
    verdict = "pass" if gate["passed"] else "FAIL"
    return f"{verdict} ({gate['worst_cosine']:.4f})" if gate.get("worst_cosine") is not None else verdict


def _int8_text(a: dict) -> str:
    if a["precision"] != "int8":
        return "–"
    return f"{a['quantize_layers'] or 0} / {a['dequantize_layers'] or 0} / {a['int8_weight_constants']}"


def markdown(doc: dict) -> str:
    """One row per model and precision: what was built, its build time and size, the network's layers."""
    # "earlier_run": build seconds of another invocation (e.g. under a lighter load), {model: {precision: s}}
    earlier = (doc.get("earlier_run") or {}).get("build_seconds") or {}
    extra = " | build s, earlier run" if earlier else ""
    rows = [f"| model (source) | precision | result | build s{extra} | engine | vs fp32 engine | network layers "
            "| convolutions | FP16-output layers | Q / DQ layers / INT8 weights | FP16/INT8 ONNX gate in ORT "
            "(worst cosine) | run s (others' CPU share) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if earlier else "")]
    dash = " | –" if earlier else ""
    for rec in doc["records"]:
        label = f"{rec['model']} ({rec['source']})"
        if rec["kind"] != "manifest":
            rows.append(f"| {label} | all | no engine: {_short(rec.get('error'), 160)} | –{dash} | – | – | – | – | – | – | – "
                        f"| {rec['wall_seconds']:.0f} |")
            continue
        fp32 = next((a["engine_bytes"] for a in rec["artifacts"] if a["precision"] == "fp32"), None)
        for i, a in enumerate(rec["artifacts"]):
            share = rec.get("foreign_cpu_share")
            wall = f"{rec['wall_seconds']:.0f}" + (f" ({share:.0%})" if share is not None else "")
            first = (label, wall) if i == 0 else ("", "")
            if a["build_seconds"] is None:
                rows.append(f"| {first[0]} | {a['precision']} | {a['status']}: {_short(a['reason'])} | –{dash} | – | – | – "
                            f"| – | – | – | {_gate_text(a)} | {first[1]} |")
                continue
            ratio = f"{a['engine_bytes'] / fp32:.2f}x" if fp32 and a["precision"] != "fp32" else "–"
            rows.append(
                f"| {first[0]} | {a['precision']} | {_state(a)} | {a['build_seconds']:.2f}"
                + (f" | {earlier[rec['model']][a['precision']]:.2f}"
                   if earlier.get(rec["model"], {}).get(a["precision"]) is not None else dash)
                + f" | {_mb(a['engine_bytes'])} "
                f"| {ratio} | {a['layer_count']} | {a['convolution_layers'] or 0} "
                f"| {a['half_layers'] if a['precision'] == 'fp16' else '–'} | {_int8_text(a)} | {_gate_text(a)} "
                f"| {first[1]} |")
    return "\n".join(rows)


def main() -> int:
    return corpus_bench_main(
        __doc__, models=MODELS, json_out=JSON_OUT, timeout=600.0, section="tensorrt_rtx",
        bench=lambda models, timeout, keep, output: bench(models, timeout, keep), markdown=markdown,
        list_line=lambda m, spec: f"{m:24} {spec['source']:10} "
                                  + ("left out: " + spec["skip"] if spec.get("skip") else "runs"))


if __name__ == "__main__":
    sys.exit(main())
