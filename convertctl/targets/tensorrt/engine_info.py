"""Facts about a serialized TensorRT engine, read without TensorRT.

Three things users trip over with engines: which TensorRT built a `.engine` file (the plan header says so),
what the engine inspector's JSON says (its schema changed between TensorRT 10.x and 11.x), and whether an
engine can load on this machine at all (TensorRT's own error for a version or GPU mismatch is cryptic).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from convertctl.errors import UsageError

# --- plan header -----------------------------------------------------------------------------------------
# Layout from trtexec's printPlanVersion (samples/common/sampleEngines.cpp), valid for TensorRT >= 8.6:
# uint32 LE tag at 0, uint32 LE serialization version at 4, then for version 0 the builder's
# major, minor, patch, build as single bytes at 24..27.
PLAN_TAG = 0x74727466
PLAN_HEADER_SIZE = 28
_KNOWN_SERIALIZATION_VERSIONS = (0,)
_ENGINE_HINT = "an engine is the file `convertctl build --target tensorrt` or `trtexec --saveEngine` writes"


def read_plan_version(data: bytes, name: str = "engine") -> str:
    """The TensorRT version ("major.minor.patch.build") that built the engine whose bytes start `data`."""
    if len(data) < PLAN_HEADER_SIZE:
        raise UsageError(f"{name} is not a TensorRT engine: only {len(data)} bytes", hint=_ENGINE_HINT)
    tag, serialization = struct.unpack_from("<II", data, 0)
    if tag != PLAN_TAG:
        raise UsageError(f"{name} is not a TensorRT engine (no plan tag)", hint=_ENGINE_HINT)
    if serialization not in _KNOWN_SERIALIZATION_VERSIONS:
        raise UsageError(
            f"{name}: unknown TensorRT plan serialization version {serialization} "
            "(engines from TensorRT >= 8.6 use 0)",
            hint="the engine may come from a newer TensorRT than convertctl knows; "
            "`trtexec --loadEngine=<engine> --getPlanVersionOnly` prints its version",
        )
    major, minor, patch, build = struct.unpack_from("<4B", data, 24)
    return f"{major}.{minor}.{patch}.{build}"


def read_plan_version_file(path: Path) -> str:
    """Like read_plan_version, reading only the header: engines can be gigabytes."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(PLAN_HEADER_SIZE)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", hint="check the engine path") from exc
    return read_plan_version(head, name=str(path))


# --- engine inspector JSON -------------------------------------------------------------------------------
SCHEMA_10 = "10.x (Bindings)"
SCHEMA_11 = "11.x (I/O Tensors)"
SCHEMA_UNKNOWN = "unknown"

# 11.x DataType names, plus spellings seen elsewhere (nvinfer1 enum names, numpy-like names).
_DTYPE_NAMES = {
    "float": "fp32", "fp32": "fp32", "float32": "fp32",
    "half": "fp16", "fp16": "fp16", "float16": "fp16",
    "bfloat16": "bf16", "bf16": "bf16",
    "int8": "int8", "int32": "int32", "int64": "int64", "uint8": "uint8",
    "bool": "bool", "fp8": "fp8", "int4": "int4", "fp4": "fp4",
}  # fmt: skip
# 10.x "Format/Datatype" strings ("Channel major FP16 format where channel % 8 == 0", "Int8 NC/32HW32"):
# the first dtype word wins. Word boundaries keep "Int8" out of "UInt8" and "Float" out of "BFloat16".
_FORMAT_TOKEN = re.compile(
    r"\b(" + "|".join(sorted(_DTYPE_NAMES, key=len, reverse=True)) + r")\b", re.IGNORECASE
)


def _dtype_from_format(text: str, unknown: str | None = "other") -> str | None:
    if text.strip().upper() in ("", "N/A"):
        return None
    match = _FORMAT_TOKEN.search(text)
    return _DTYPE_NAMES[match.group(1).lower()] if match else unknown


def _dtype_from_name(text: str) -> str | None:
    key = text.strip().rsplit(".", 1)[-1].lower()  # "DataType.HALF" -> "half"
    if key in _DTYPE_NAMES:
        return _DTYPE_NAMES[key]
    if key.startswith("k") and key[1:] in _DTYPE_NAMES:  # nvinfer1 enum spelling "kHALF"
        return _DTYPE_NAMES[key[1:]]
    return _dtype_from_format(text)


def _tensor_dtype(tensor: dict) -> str | None:
    """Canonical dtype of one tensor entry, whichever TensorRT release wrote it; None when it does not say."""
    for key in ("DataType", "Datatype"):  # 11.x; both spellings occur
        value = tensor.get(key)
        if isinstance(value, str) and value.strip():
            return _dtype_from_name(value)
    value = tensor.get("Format/Datatype")  # 10.x
    if isinstance(value, str):
        return _dtype_from_format(value)
    value = tensor.get("Format")  # a bare format names a dtype only sometimes: do not guess "other"
    if isinstance(value, str):
        return _dtype_from_format(value, unknown=None)
    return None


def _shape(value) -> list | None:
    return list(value) if isinstance(value, list) else None


def _mode(value) -> str | None:
    mode = value.strip().lower() if isinstance(value, str) else None
    return mode if mode in ("input", "output") else None


def _io_tensors_11(entries: list) -> list[dict]:
    tensors = []
    for entry in entries:
        if isinstance(entry, str):
            tensors.append({"name": entry, "mode": None, "dtype": None, "shape": None})
            continue
        if not isinstance(entry, dict) or entry.get("Name") is None:
            continue  # a tensor without a name cannot be reported or bound
        dtype = _tensor_dtype(entry)
        profiles = entry.get("ProfileInfo")
        if dtype is None and isinstance(profiles, list) and profiles and isinstance(profiles[0], dict):
            dtype = _tensor_dtype(profiles[0])
        tensors.append({
            "name": str(entry["Name"]),
            "mode": _mode(entry.get("IOMode")),
            "dtype": dtype,
            "shape": _shape(entry.get("Dimensions")),
        })  # fmt: skip
    return tensors


def _io_tensors_10(names: list, layers: list[dict]) -> list[dict]:
    """10.x lists binding names only; detailed layers tell the rest: a binding some layer produces is an
    output, one that layers only consume is an input, and that layer's tensor entry has dtype and shape."""
    produced: dict[str, dict] = {}
    consumed: dict[str, dict] = {}
    for layer in layers:
        for key, seen in (("Outputs", produced), ("Inputs", consumed)):
            tensors = layer.get(key)
            for tensor in tensors if isinstance(tensors, list) else ():
                if isinstance(tensor, dict) and isinstance(tensor.get("Name"), str):
                    seen.setdefault(tensor["Name"], tensor)
    tensors = []
    for name in names:
        if not isinstance(name, str):
            continue
        mode, info = ("output", produced[name]) if name in produced else ("input", consumed.get(name))
        if info is None:
            mode = None
        tensors.append({
            "name": name,
            "mode": mode,
            "dtype": _tensor_dtype(info) if info else None,
            "shape": _shape(info.get("Dimensions")) if info else None,
        })  # fmt: skip
    return tensors


def summarize_inspector(text: str | bytes) -> dict:
    """Normalize IEngineInspector JSON (or trtexec --exportLayerInfo) from TensorRT 10.x or 11.x.

    Returns {"schema", "io_tensors": [{"name", "mode", "dtype", "shape"}], "layers": count,
    "layer_output_precisions": {dtype: layers whose first output has it}, "detailed": bool}.
    """
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = (
            f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else exc
        )
        raise UsageError(
            f"engine inspector output is not JSON: {detail}",
            hint="pass what IEngineInspector.get_engine_information(LayerInformationFormat.JSON) returns, "
            "or the file `trtexec --exportLayerInfo` writes",
        ) from exc
    if isinstance(doc, list):  # a bare layer list, as some tools save it
        doc = {"Layers": doc}
    if not isinstance(doc, dict):
        raise UsageError(
            f"engine inspector output is not a JSON object but a {type(doc).__name__}",
            hint="pass what IEngineInspector.get_engine_information(LayerInformationFormat.JSON) returns",
        )

    raw_layers = doc.get("Layers")
    raw_layers = raw_layers if isinstance(raw_layers, list) else []
    detailed_layers = [layer for layer in raw_layers if isinstance(layer, dict)]

    if isinstance(doc.get("I/O Tensors"), list):
        schema, io_tensors = SCHEMA_11, _io_tensors_11(doc["I/O Tensors"])
    elif isinstance(doc.get("Bindings"), list):
        schema, io_tensors = SCHEMA_10, _io_tensors_10(doc["Bindings"], detailed_layers)
    else:
        schema, io_tensors = SCHEMA_UNKNOWN, []

    precisions: dict[str, int] = {}
    for layer in detailed_layers:
        outputs = layer.get("Outputs")
        if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
            dtype = _tensor_dtype(outputs[0])
            if dtype is not None:
                precisions[dtype] = precisions.get(dtype, 0) + 1

    return {
        "schema": schema,
        "io_tensors": io_tensors,
        "layers": len(raw_layers),
        "layer_output_precisions": precisions,
        "detailed": bool(detailed_layers),
    }


# --- can this engine load here? --------------------------------------------------------------------------
AMPERE_PLUS_MIN_CC = (8, 0)
_REMEDY = (
    "rebuild it on this machine with `convertctl build ... --target tensorrt`, "
    "or use the build kit to build it on the machine that will run it"
)
_HW_LEVELS = {
    "none": "none", "knone": "none", "": "none",
    "ampere+": "ampere+", "ampere_plus": "ampere+", "kampere_plus": "ampere+",
    "same_compute_capability": "same_compute_capability",
    "ksame_compute_capability": "same_compute_capability",
}  # fmt: skip


def _version(text) -> tuple[int, int, int] | None:
    """(major, minor, patch) of "10.16.1.11" or "10.16.1"; the build number never decides loadability."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text)) if text is not None else None
    if not match:
        return None
    return tuple(int(part or 0) for part in match.groups())  # type: ignore[return-value]


def _cc(text) -> tuple[int, int] | None:
    """Compute capability "8.9" as (8, 9), so that "8.10" sorts after "8.9"."""
    match = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?\s*", str(text)) if text is not None else None
    return (int(match.group(1)), int(match.group(2) or 0)) if match else None


def _section(meta: dict, key: str) -> dict:
    value = meta.get(key) if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


def compatibility_problem(meta: dict, runtime_version: str, gpu: dict | None) -> str | None:
    """None when the engine described by `meta` can be deserialized here, else one sentence saying why not.

    `gpu` is this machine's {"name", "compute_capability"}, or None when no NVIDIA GPU is visible.
    A check whose facts are missing from `meta` (or unparseable) is skipped rather than guessed.
    """
    built_gpu = _section(meta, "gpu")
    options = _section(meta, "build_options")
    built_name = built_gpu.get("name") or "an unknown GPU"
    built_cc_text = built_gpu.get("compute_capability")
    level = _HW_LEVELS.get(
        str(options.get("hardware_compatibility_level") or "none").strip().lower().replace("-", "_"), "none"
    )  # an unknown level is treated as the strictest

    if gpu is None:
        target = (
            "an Ampere or newer GPU (compute capability 8.0 and up)"
            if level == "ampere+"
            else f"{built_name} (compute capability {built_cc_text or 'unknown'})"
        )
        return (
            f"no NVIDIA GPU is visible here: this engine was built for {target} and TensorRT needs such "
            "a GPU to load it; run it on a machine with one (check `nvidia-smi` and the driver if it has one)"
        )

    built_text = _section(meta, "tensorrt").get("version")
    built, runtime = _version(built_text), _version(runtime_version)
    if built is not None and runtime is not None:
        if bool(options.get("version_compatible", False)):
            if runtime[0] != built[0] or runtime < built:
                return (
                    f"this engine was built version-compatible with TensorRT {built_text}, which lets it "
                    f"load only on TensorRT {built[0]}.x from {'.'.join(map(str, built))} on, but this "
                    f"machine has TensorRT {runtime_version}: {_REMEDY}"
                )
        elif runtime != built:
            return (
                f"this engine was built with TensorRT {built_text} but this machine has TensorRT "
                f"{runtime_version}, and an engine loads only on the TensorRT version that built it: "
                f"{_REMEDY}"
            )

    here_name = gpu.get("name") or "an unknown GPU"
    here_cc_text = gpu.get("compute_capability")
    here_cc = _cc(here_cc_text)
    if here_cc is None:
        return None
    if level == "ampere+":
        if here_cc < AMPERE_PLUS_MIN_CC:
            return (
                f"this engine was built hardware-compatible for Ampere or newer GPUs (compute capability 8.0 "
                f"and up) on {built_name}, but the GPU here, {here_name}, has compute capability "
                f"{here_cc_text}: {_REMEDY}"
            )
        return None
    built_cc = _cc(built_cc_text)
    if built_cc is not None and built_cc != here_cc:
        return (
            f"this engine was built on {built_name} (compute capability {built_cc_text}) but the GPU here, "
            f"{here_name}, has compute capability {here_cc_text}, and an engine loads only on GPUs of the "
            f"compute capability it was built for: {_REMEDY}"
        )
    return None
