"""Benchmark 10: the edge runtimes (MNN, ncnn, LiteRT) on the real-model corpus, against ONNX Runtime FP32 (issue 16).

    .venv/bin/python benchmarks/edge_targets.py                           # every model it runs by default
    .venv/bin/python benchmarks/edge_targets.py --models mtcnn_pnet,text_orientation
    .venv/bin/python benchmarks/edge_targets.py --render                  # the README table from the JSON
    options: --output JSON (default benchmarks/results/edge_targets.json), --timeout S per model (default 900),
    --keep (keep the temporary folder: recipes, outputs, logs), --list (the models)

For each model, its corpus recipe (recipes/corpus/<id>.yaml; `digits`: the labelled digits CNN of
tests/test_quantize_digits.py, trained here first) with the targets replaced by onnxruntime fp32, mnn fp32/fp16/int8,
ncnn fp32/fp16 and litert fp32/fp16/int8 (plus litert-torch fp32/int8 for a PyTorch source), and batch-1 latency on (`verify.latency`: batch 1, 10 warm-up + 50 timed
calls), is written to a temporary folder (paths made absolute, no `output`) and run there as one `convertctl run
RECIPE --json --no-cache -o TMP/out/<id>` process per model. So the export, calibration, conversions, verification
and latency are the ones a user's run makes: the latency stage times the baseline (the run's FP32 ONNX in ONNX
Runtime, default session options) and then every artifact that ran, each in a process of its own, sequentially.
The stage cache is off, so every conversion time is a real one. ncnn has no INT8 here (its wheels carry no
ncnn2table/ncnn2int8: docs/ncnn.md), so it is not asked for.

Collected per artifact from the manifest: status and reason, the converter's own seconds (MNNConvert, + the offline
quantizer for int8; pnnx; onnx2tf) and the artifact's build seconds (conversion + loading + verification), the model
file's size, the accuracy gate against the source (worst cosine, largest absolute error over the outputs, top-1
where the data is labelled), the batch-1 p50/p90 and the speed-up against the baseline of the same run, and the
threads each runtime reported (`effective`). Per model: the machine's load while it ran (the CPU share of other
processes, load average). The results JSON is written after every model, so a run cut short keeps what finished.

x86 timings of mobile runtimes are indicative only: a phone's ARM kernels (FP16 arithmetic, other INT8 paths) are
not what runs here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    PROTECTED,
    ROOT,
    ForeignLoad,
    corpus_bench_main,
    corpus_recipe,
    fmt_bytes,
    read_json_doc,
    run_cli_logged,
    run_machine,
    short,
    tail,
)

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
JSON_OUT = RESULTS / "edge_targets.json"
TARGETS = [
    {"runtime": "onnxruntime", "precision": "fp32"},
    {"runtime": "mnn", "precision": "fp32"},
    {"runtime": "mnn", "precision": "fp16"},
    {"runtime": "mnn", "precision": "int8"},
    {"runtime": "ncnn", "precision": "fp32"},
    {"runtime": "ncnn", "precision": "fp16"},
    {"runtime": "litert", "precision": "fp32"},
    {"runtime": "litert", "precision": "fp16"},
    {"runtime": "litert", "precision": "int8"},
]
# a PyTorch module also through Google's litert-torch (converter: litert_torch, asked for by name; auto is onnx2tf)
LITERT_TORCH = [{"runtime": "litert", "precision": p, "converter": "litert_torch", "name": f"litert_torch_{p}"}
                for p in ("fp32", "int8")]
LATENCY = {"enabled": True, "batch": 1, "warmup": 10, "runs": 50}
ONNX2TF_ENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "convertctl" / "envs" / "onnx2tf"
DISTS = ("convertctl", "mnn", "ncnn", "pnnx", "ai-edge-litert", "onnxruntime", "onnx", "torch", "numpy")

# In the order they run: quick ones first, so a run cut short covers most of the corpus.
# source: the framework the recipe exports from; what: one line on the model.
MODELS: dict[str, dict] = {
    "digits": {"source": "pytorch", "what": "small CNN trained here on scikit-learn's digits (8x8), labelled"},
    "mtcnn_pnet": {"source": "pytorch", "what": "MTCNN P-Net, dynamic H/W (160x160 here), 2 outputs"},
    "fer_emotion_h5": {"source": "tensorflow", "what": "Keras 2 .h5 mini-Xception, NHWC 64x64x1 (litert: TFLiteConverter)"},
    "text_orientation": {"source": "onnx", "what": "PP-LCNet page-orientation classifier 224x224, labelled"},
    "magika": {"source": "onnx", "what": "Keras (jax2tf) file-type classifier, int32 bytes in"},
    "ppocrv4_det_onnx": {"source": "onnx", "what": "PP-OCRv4 text detector, dynamic H/W (320x320 here)"},
    "ppocrv4_rec_onnx": {"source": "onnx", "what": "PP-OCRv4 SVTR recognizer (attention), 3x48x320"},
    "nudenet_yolov8n": {"source": "onnx", "what": "YOLOv8n detector 320x320"},
}
MODEL_FILES = (".mnn", ".param", ".bin", ".tflite", ".onnx", ".data")


# ---------------------------------------------------------------------------------------------- the recipes

def _targets(model: str) -> list[dict]:
    return TARGETS + (LITERT_TORCH if MODELS[model]["source"] == "pytorch" else [])


def derived_recipe(model: str, folder: Path) -> Path:
    if model == "digits":
        return _digits_recipe(folder)
    return corpus_recipe(model, folder, _targets(model), LATENCY, "edge")


def _digits_recipe(folder: Path) -> Path:
    """The digits CNN of tests/test_quantize_digits.py: trained into FOLDER/digits (about 20 s), its recipe (the
    tests' calibration on calib_data/digits, 300 calibration samples, 539 labelled held-out; the tests' INT8 gate)."""
    sys.path.insert(0, str(ROOT))
    from tests.test_quantize_digits import INT8_GATE, digits_recipe, train_digits

    work = folder / "digits"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "weights.pt").is_file():
        train_digits(work)
    data = digits_recipe("digits")
    data["verify"] = {"tolerances": {"int8": dict(INT8_GATE)}}
    return corpus_recipe("digits", folder, _targets("digits"), LATENCY, "edge", data=data, base=work)


# ------------------------------------------------------------------------------------------------- running

def _threads(effective: dict | None) -> int | None:
    for key, value in (effective or {}).items():
        if key.endswith("num_threads") and isinstance(value, int):
            return value
    return None


def _convert_seconds(a: dict) -> float | None:
    """The converter's own seconds: MNNConvert (+ mnnquant for int8), pnnx, onnx2tf."""
    s = a.get("settings") or {}
    if a["runtime"] == "mnn":
        parts = [s.get("converter_seconds"), s.get("quantizer_seconds")]
    elif a["runtime"] == "ncnn":
        parts = [s.get("convert_seconds")]
    elif a["runtime"] == "litert":
        parts = [s.get("converter_seconds")]
    else:
        return None
    parts = [p for p in parts if p is not None]
    return round(sum(parts), 3) if parts else None


def _model_bytes(a: dict) -> int | None:
    sizes = [f.get("bytes") or 0 for f in a.get("files") or [] if str(f.get("path", "")).endswith(MODEL_FILES)]
    return sum(sizes) if sizes else None


def _gate(a: dict) -> dict | None:
    ver = a.get("verification") or []
    if not ver:
        return None
    g = ver[0]
    outs = (g.get("outputs") or {}).values()
    cos = [o["cosine"] for o in outs if o.get("cosine") is not None]
    err = [o["max_abs"] for o in outs if o.get("max_abs") is not None]
    return {"against": g.get("against"), "passed": g.get("passed"), "worst_cosine": min(cos) if cos else None,
            "max_abs": max(err) if err else None, "failures": g.get("failures") or []}


def _layers(a: dict) -> dict | None:
    """Where the runtime's per-layer comparison puts the first divergence (MNN `layers`, ncnn `per_layer`)."""
    s = a.get("settings") or {}
    summary = s.get("layers") if a["runtime"] == "mnn" else s.get("per_layer") if a["runtime"] == "ncnn" else None
    if not isinstance(summary, dict):
        return None
    keep = ("compared", "matched", "first_diverging", "first_divergence", "first_unmatched", "worst", "error",
            "skipped")
    return {k: summary[k] for k in keep if k in summary}


def artifact_record(a: dict) -> dict:
    lat = a.get("latency") or {}
    acc = a.get("accuracy") or {}
    s = a.get("settings") or {}
    return {
        "id": a["id"], "runtime": a["runtime"], "precision": a["precision"], "status": a["status"],
        "reason": a.get("reason"), "built_from": a.get("built_from"),
        "convert_seconds": _convert_seconds(a), "artifact_seconds": a.get("seconds"),
        "model_bytes": _model_bytes(a),
        "gate": _gate(a),
        "top1": acc.get("top1"), "reference_top1": acc.get("reference_top1"), "top1_drop": acc.get("top1_drop"),
        "labelled_samples": acc.get("samples"),
        "latency": {k: lat.get(k) for k in ("status", "reason", "batch", "threads", "p50_ms", "p90_ms", "min_ms",
                                            "speedup")} if lat else None,
        "threads": _threads(a.get("effective")),
        "effective": a.get("effective"),
        "converter": s.get("converter") or s.get("pnnx_command"),
        "weights": s.get("weights") or s.get("precision"),
        "feature_quantize_method": s.get("feature_quantize_method"),
        "layers": _layers(a),
    }


def run_model(model: str, tmp: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    recipe = derived_recipe(model, tmp)
    prepare_s = round(time.perf_counter() - t0, 1)  # digits: the training
    out = tmp / "out" / model
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = ["run", str(recipe), "--json", "--no-cache", "-o", str(out)]
    load_before = os.getloadavg()[0]
    with ForeignLoad() as load:  # a shared machine: other processes' CPU share while this model ran
        raw = run_cli_logged(argv, logs, model, timeout)
    doc = read_json_doc(raw["stdout"])
    rec = {"model": model, "source": MODELS[model]["source"], "what": MODELS[model]["what"],
           "exit_code": raw["exit_code"], "wall_seconds": raw["wall_seconds"], "timed_out": raw["timed_out"],
           "prepare_seconds": prepare_s, "foreign_cpu_share": load.share,
           "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "argv": raw["argv"][:2] + [f"<tmp>/recipes/{recipe.name}"] + raw["argv"][3:-1] + [f"<tmp>/out/{model}"],
           "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if doc is not None and "artifacts" in doc:
        base = doc.get("latency_baseline") or {}
        rec.update({
            "kind": "manifest", "status": doc.get("status"), "run_seconds": doc.get("seconds"),
            "samples": (doc.get("samples") or {}).get("shapes"),
            "stage_seconds": {s["name"]: s.get("seconds") for s in doc.get("stages", [])},
            "baseline": {k: base.get(k) for k in ("status", "reason", "of", "batch", "threads", "p50_ms", "p90_ms",
                                                  "min_ms")} if base else None,
            "messages": doc.get("messages", [])[:20],
            "artifacts": [artifact_record(a) for a in doc.get("artifacts", [])],
        })
    else:
        rec.update({"kind": "no-manifest", "status": (doc or {}).get("status", "crash" if doc is None else "error"),
                    "error": (doc or {}).get("error"), "hint": (doc or {}).get("hint"),
                    "stderr_tail": tail(raw["stderr"])})
    return rec


def onnx2tf_versions() -> dict:
    """The versions in onnx2tf's own environment (what converts for litert)."""
    py = Path(os.environ.get("CONVERTCTL_ONNX2TF_PYTHON") or ONNX2TF_ENV / "bin" / "python")
    code = ("import importlib.metadata as m, json\nout = {}\n"
            "for d in ('onnx2tf', 'tensorflow', 'onnx', 'onnxruntime', 'ai-edge-litert', 'numpy'):\n"
            "    try: out[d] = m.version(d)\n    except m.PackageNotFoundError: pass\nprint(json.dumps(out))")
    try:
        proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60)
        return {"python": str(py), **json.loads(proc.stdout)}
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"python": str(py), "error": f"{type(exc).__name__}: {exc}"}


def machine() -> dict:
    return {**run_machine(DISTS), "onnx2tf_env": onnx2tf_versions()}


def bench(models: list[str] | None = None, timeout: float = 900.0, keep: bool = False,
          output: Path | None = None) -> dict:
    """Run the models, one `convertctl run` each; return the results (and write them to OUTPUT after each model)."""
    models = models or list(MODELS)
    tmp = Path(tempfile.mkdtemp(prefix="edge-targets-"))
    assert not any(str(tmp.resolve()).startswith(str(p)) for p in PROTECTED), tmp
    t0 = time.perf_counter()
    doc = {"benchmark": "edge_targets", "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "targets": TARGETS, "latency": LATENCY, "timeout_per_model": timeout,
           "models_asked": models, "complete": False,
           "note": "x86 timings of mobile runtimes are indicative, not what a phone will see", "records": []}
    try:
        for model in models:
            print(f">> {model}: convertctl run <its recipe with onnxruntime fp32, mnn, ncnn, litert>", file=sys.stderr,
                  flush=True)
            rec = run_model(model, tmp, timeout)
            doc["records"].append(rec)
            print("   " + summary_line(rec), file=sys.stderr, flush=True)
            doc["seconds"] = round(time.perf_counter() - t0, 1)
            if output is not None:
                output.parent.mkdir(parents=True, exist_ok=True)
                output.write_text(json.dumps(doc, indent=1) + "\n")
        doc["complete"] = True
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    at_end = run_machine(DISTS)
    doc.update({"uncommitted_at_end": at_end["uncommitted"], "commit_at_end": at_end["commit"],
                "seconds": round(time.perf_counter() - t0, 1)})
    return doc


# ---------------------------------------------------------------------------------------------- rendering

def summary_line(rec: dict) -> str:
    if rec["kind"] != "manifest":
        return f"exit {rec['exit_code']} in {rec['wall_seconds']} s, no manifest: {short(rec.get('error'), 200)}"
    parts = []
    for a in rec["artifacts"]:
        lat = a["latency"] or {}
        p50 = f" {lat['p50_ms']:.2f} ms" if lat.get("p50_ms") is not None else ""
        why = f": {short(a['reason'], 100)}" if a["status"] not in ("ok",) and a["reason"] else ""
        parts.append(f"{a['id']} {a['status']}{p50}{why}")
    base = (rec.get("baseline") or {}).get("p50_ms")
    return (f"exit {rec['exit_code']} in {rec['wall_seconds']} s ({rec['status']}, baseline "
            f"{base if base is not None else '–'} ms); " + "; ".join(parts))


def _f(x, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def _vs_source(a: dict) -> str:
    g = a["gate"]
    if not g:
        return "–"
    text = f"cos {_f(g['worst_cosine'], '.6f')}, max abs {_f(g['max_abs'], '.1e')}"
    if a["top1"] is not None:
        text += f", top-1 {a['top1']:.3f} (ref {a['reference_top1']:.3f})"
    return text


def _status(a: dict) -> str:
    if a["status"] == "ok":
        return "ok"
    if a["status"] == "failed":
        return f"**gate failed**: {short('; '.join(a['gate']['failures']) if a['gate'] else a['reason'], 110)}"
    return f"**{a['status']}**: {short(a['reason'], 140)}"


def markdown(doc: dict) -> str:
    """One row per model and artifact: status, conversion and build time, size, accuracy, batch-1 latency."""
    rows = ["| model | artifact | result | convert s / build s | model file | vs source (worst output) "
            "| p50 ms (p90, min) | speed-up vs ORT fp32 | threads |",
            "|---|---|---|---|---|---|---|---|---|"]
    for rec in doc["records"]:
        share = rec.get("foreign_cpu_share")
        label = (f"{rec['model']} ({rec['source']}; run {rec['wall_seconds']:.0f} s, others' CPU "
                 f"{_f(share, '.0%')})")
        if rec["kind"] != "manifest":
            rows.append(f"| {label} | all | **no manifest** (exit {rec['exit_code']}): {short(rec.get('error'), 160)} "
                        "| – | – | – | – | – | – |")
            continue
        for i, a in enumerate(rec["artifacts"]):
            lat = a["latency"] or {}
            if lat.get("status") == "measured":
                p50 = f"{_ms(lat['p50_ms'])} ({_ms(lat['p90_ms'])}, {_ms(lat['min_ms'])})"
                speed = (f"{lat['speedup']:.2f}x" if lat["speedup"] >= 0.1 else f"{lat['speedup']:.3f}x") if lat.get("speedup") is not None else "–"
            else:
                p50 = f"{lat['status']}: {short(lat.get('reason'), 60)}" if lat else "–"
                speed = "–"
            threads = a["threads"] if a["threads"] is not None else lat.get("threads")
            if a["runtime"] == "onnxruntime" and threads == 0:
                threads = "0 (ORT default)"
            rows.append(
                f"| {label if i == 0 else ''} | {a['id']} | {_status(a)} "
                f"| {_f(a['convert_seconds'], '.1f')} / {_f(a['artifact_seconds'], '.1f')} "
                f"| {fmt_bytes(a['model_bytes'])} | {_vs_source(a)} | {p50} | {speed} | {_f(threads, '')} |")
        base = rec.get("baseline") or {}
        if base.get("p50_ms") is not None:
            rows.append(f"| | *baseline: FP32 ONNX in ORT* | measured | | | | {_ms(base['p50_ms'])} "
                        f"({_ms(base['p90_ms'])}, {_ms(base['min_ms'])}) | 1.00x | {base.get('threads')} (ORT default) |")
    m = doc["machine"]
    v = m.get("versions", {})
    env = m.get("onnx2tf_env", {})
    head = (f"Measured {doc['started'][:16].replace('T', ' ')} UTC on {m['cpu']}, {m['cores']} cores (shared), "
            f"convertctl {m['commit']}" + (f" + uncommitted {', '.join(m['uncommitted'])}" if m["uncommitted"] else "")
            + f"; mnn {v.get('mnn')}, ncnn {v.get('ncnn')}, pnnx {v.get('pnnx')}, ai-edge-litert "
            f"{v.get('ai-edge-litert')}, onnxruntime {v.get('onnxruntime')}; onnx2tf {env.get('onnx2tf')} "
            f"(tensorflow {env.get('tensorflow')}). Batch 1, {doc['latency']['warmup']} warm-up + "
            f"{doc['latency']['runs']} timed calls, each artifact in its own process."
            + ("" if doc.get("complete") else " **Incomplete run: only the models below finished.**"))
    return head + "\n\n" + "\n".join(rows)


def main() -> int:
    return corpus_bench_main(
        __doc__, models=MODELS, json_out=JSON_OUT, timeout=900.0, section="edge",
        bench=lambda models, timeout, keep, output: bench(models, timeout, keep, output=output), markdown=markdown,
        list_line=lambda m, spec: f"{m:20} {spec['source']:8} {spec['what']}", needs_recipe=lambda m: m != "digits")


if __name__ == "__main__":
    sys.exit(main())
