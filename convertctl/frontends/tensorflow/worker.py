"""Inside the child process: load a TensorFlow/Keras model, run it for reference outputs, convert (tf2onnx).

Formats: "saved_model" (its serving_default signature), "keras" (Keras 3 .keras) and "h5" (Keras 2 /
tf-keras, or Keras 3's legacy H5). Keras 2 models load through tf-keras, which needs TF_USE_LEGACY_KERAS=1
before tensorflow is first imported: decided from the Keras version the file records, else by re-running
this process once in that mode when Keras 3 fails on the model. The request and result: the worker protocol.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from convertctl.frontends.worker import ChildError, first_line, main, root_cause

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ info/warning chatter; errors still show
REEXEC_MARK = "CONVERTCTL_TF_LEGACY_REEXEC"  # set in the legacy-mode re-run; holds why Keras 3 failed
TF_EXTRA_HINT = "pip install 'convertctl[tf]'"
KERAS2_MARKERS = ("tf_keras", "tf-keras", "keras 2", "legacy keras", "keras_metadata", "tf.keras")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _major(version: str | None) -> int | None:
    m = re.match(r"\s*(\d+)\.", version or "")
    return int(m.group(1)) if m else None


def _newer(a: str, b: str | None) -> bool:
    def key(v):
        return tuple(int(x) for x in re.findall(r"\d+", v)[:3])

    return b is not None and key(a) > key(b)


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _short(text: str, limit: int = 200) -> str:
    """The first sentence of an error: Keras errors run to a paragraph."""
    head = re.split(r"(?<=[a-z0-9)`'\"])\. ", text, maxsplit=1)[0]
    return head if len(head) <= limit else head[:limit - 3] + "..."


# ---- which Keras: decided before tensorflow is imported ----------------------------------------------


def _saved_keras_version(fmt: str, path: Path) -> str | None:
    """The Keras version the file records (None if none); also checks that an .h5 is a whole model."""
    if fmt == "keras":
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise ChildError("source", f"{path} is not a readable .keras archive: {first_line(exc)}") from exc
        return _text(meta.get("keras_version"))
    if fmt == "h5":
        import h5py  # comes with tensorflow, and does not import it

        try:
            with h5py.File(path, "r") as f:
                attrs, keys = dict(f.attrs), set(f.keys())
        except OSError as exc:
            raise ChildError("source", f"{path} is not a readable HDF5 file: {first_line(exc)}") from exc
        if "model_config" not in attrs:
            # Keras 2 save_weights writes layer_names; a Keras 3 .weights.h5 has a top-level "layers" group
            weights = "layer_names" in attrs or "layers" in keys or path.name.endswith(".weights.h5")
            what = "only weights (save_weights)" if weights else "no Keras model"
            raise ChildError("source", f"{path} holds {what}: it has no 'model_config' attribute, so there "
                             "is no model architecture to load",
                             hint="save the whole model with model.save('x.h5') or model.save('x.keras')")
        return _text(attrs.get("keras_version"))
    return None


def _need_tf_keras(path: Path, why: str) -> None:
    if importlib.util.find_spec("tf_keras") is None:
        raise ChildError("usage", f"{path} is a Keras 2 model ({why}) and loading it needs tf-keras, which "
                         "is not installed in this environment", hint=TF_EXTRA_HINT)


def _legacy_mode(fmt: str, path: Path, notes: list[str]) -> bool:
    """Whether to run in Keras 2 mode (tf-keras); sets TF_USE_LEGACY_KERAS, so call it before importing TF.

    The file's recorded version decides; the user's TF_USE_LEGACY_KERAS only when none is recorded
    (Keras 3 files load with the `keras` package whatever tf.keras points at)."""
    if os.environ.get(REEXEC_MARK):
        notes.append(f"loaded in Keras 2 mode (tf-keras {_version('tf-keras')}, TF_USE_LEGACY_KERAS=1) "
                     f"after Keras 3 failed: {os.environ[REEXEC_MARK]}")
        return True
    saved = _saved_keras_version(fmt, path)
    if _major(saved) == 2:
        _need_tf_keras(path, f"it was saved by Keras {saved}")
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        notes.append(f"{path.name} was saved by Keras {saved}: loaded with tf-keras {_version('tf-keras')} "
                     "(TF_USE_LEGACY_KERAS=1)")
        return True
    legacy_env = os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true", "yes")
    if saved is None and legacy_env and fmt != "saved_model":  # a SavedModel loads the same either way
        _need_tf_keras(path, "TF_USE_LEGACY_KERAS is set")
        notes.append(f"TF_USE_LEGACY_KERAS is set: loaded with tf-keras {_version('tf-keras')} (Keras 2)")
        return True
    return False


def _looks_keras2(path: Path, exc: BaseException, saved_version: str | None) -> bool:
    text = root_cause(exc).lower()
    return (any(m in text for m in KERAS2_MARKERS) or (path / "keras_metadata.pb").is_file()
            or (saved_version is None and path.is_file()))


def _rerun_legacy(path: Path, exc: BaseException) -> None:
    """Re-run this worker once with TF_USE_LEGACY_KERAS=1 (TF reads it only at import); never returns."""
    reason = _short(root_cause(exc))
    if importlib.util.find_spec("tf_keras") is None:
        raise ChildError("usage", f"Keras 3 cannot load {path} ({reason}); if it is a Keras 2 model, loading "
                         "it needs tf-keras, which is not installed in this environment",
                         hint=TF_EXTRA_HINT) from exc
    print(f"[convertctl] Keras 3 could not load {path} ({reason}); re-running in Keras 2 mode (tf-keras)",
          file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", **{REEXEC_MARK: reason})
    os.execve(sys.executable, [sys.executable, "-m", "convertctl.frontends.tensorflow.worker", *sys.argv[1:]], env)


def _also() -> str:
    """In the legacy re-run: why Keras 3 failed first, so an error names both attempts."""
    return f"; Keras 3 failed before: {os.environ[REEXEC_MARK]}" if os.environ.get(REEXEC_MARK) else ""


# ---- loading --------------------------------------------------------------------------------------------


class Source:
    """A loaded model, the same for Keras models and SavedModel signatures.

    inputs / outputs: [(name, shape with None for dynamic dims, tf.DType)]; outputs in ONNX order.
    call: {input name: tensor} -> {output name: tensor}."""

    def __init__(self, kind: str, obj, inputs, outputs, call):
        self.kind, self.obj, self.inputs, self.outputs, self.call = kind, obj, inputs, outputs, call


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out


def _shape(shape) -> list | None:
    """A TensorShape / tuple as [int or None]; None for an unknown rank."""
    if hasattr(shape, "as_list"):  # tf.TensorShape
        if shape.rank is None:
            return None
        shape = shape.as_list()
    return None if shape is None else [None if d is None else int(d) for d in shape]


def _keras_source(model, tf) -> Source:
    try:
        tensors, out_tensors = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError) as exc:
        raise ChildError("source", f"the Keras model has no defined inputs ({first_line(exc)}): it was saved "
                         "before it was built", hint="build it (call it once, or start with an Input) and "
                         "save it again") from exc
    # Keras 3: a tensor's name is its Input's ("image"; Sequential's "input_layer"); tf-keras may add ":0"
    in_names = [t.name.split(":")[0] for t in tensors]
    layer_names = getattr(model, "output_names", None)
    if not layer_names or len(layer_names) != len(out_tensors):
        layer_names = [t._keras_history[0].name for t in out_tensors]  # the layer that made it
    out_names = _unique([str(n) for n in layer_names])
    struct = getattr(model, "_inputs_struct", None)  # Keras 3 functional: a tensor, list or dict
    if struct is None:
        struct = getattr(model, "_nested_inputs", None)  # tf-keras functional

    def call(by_name: dict) -> dict:
        flat = [by_name[n] for n in in_names]
        if struct is not None:
            packed = tf.nest.pack_sequence_as(struct, flat)
        else:
            packed = flat[0] if len(flat) == 1 else flat
        result = tf.nest.flatten(model(packed, training=False))
        if len(result) != len(out_names):
            raise ChildError("source", f"the model returned {len(result)} tensors but declares "
                             f"{len(out_names)} outputs")
        return dict(zip(out_names, result, strict=True))

    def io(names, ts):
        return [(n, _shape(t.shape), tf.as_dtype(t.dtype)) for n, t in zip(names, ts, strict=True)]

    return Source("keras", model, io(in_names, tensors), io(out_names, out_tensors), call)


def _saved_model_source(path: Path, tf, legacy: bool) -> Source:
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        if not legacy and _looks_keras2(path, exc, None):
            _rerun_legacy(path, exc)
        raise ChildError("source", f"{path} is not a loadable SavedModel: {_short(root_cause(exc), 300)}"
                         f"{_also()}") from exc
    signatures = dict(loaded.signatures)
    if "serving_default" not in signatures:
        raise ChildError("source", f"{path} has no 'serving_default' signature "
                         f"(it has: {sorted(signatures)})",
                         hint="save it with tf.saved_model.save(obj, path, signatures={'serving_default': "
                              "fn}), or a Keras model with model.export(path)")
    sig = signatures["serving_default"]
    args, kwargs = sig.structured_input_signature
    if args:
        raise ChildError("source", f"{path}: serving_default takes positional arguments, so its inputs "
                         "have no names")
    outputs = sig.structured_outputs
    if not isinstance(outputs, dict):
        outputs = {f"output_{i}": t for i, t in enumerate(tf.nest.flatten(outputs))}
    # sorted: the dict order varies between loads, and tf2onnx writes outputs in flattened (sorted) order
    in_names, out_names = sorted(kwargs), sorted(outputs)

    def call(by_name: dict) -> dict:
        result = sig(**by_name)
        if not isinstance(result, dict):
            result = dict(zip(out_names, tf.nest.flatten(result), strict=True))
        return {n: result[n] for n in out_names}

    return Source("saved_model", loaded, [(n, _shape(kwargs[n].shape), kwargs[n].dtype) for n in in_names],
                  [(n, _shape(outputs[n].shape), outputs[n].dtype) for n in out_names], call)


def load(request: dict, legacy: bool, tf) -> Source:
    fmt, path = request["format"], Path(request["model"])
    if fmt == "saved_model":
        return _saved_model_source(path, tf, legacy)
    saved = _saved_keras_version(fmt, path)
    try:
        if legacy:
            import tf_keras

            model = tf_keras.models.load_model(str(path), compile=False)
        else:
            import keras

            model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:
        if not legacy and _looks_keras2(path, exc, saved):
            _rerun_legacy(path, exc)
        name, installed = ("tf-keras", _version("tf-keras")) if legacy else ("Keras", _version("keras"))
        reason = _short(root_cause(exc), 300)
        if saved and _newer(saved, installed):
            raise ChildError("source", f"{path} was saved by Keras {saved}, newer than the installed {name} "
                             f"{installed}, which cannot load it: {reason}",
                             hint=f"upgrade keras where the export runs (pip install -U 'keras>={saved}'), "
                                  f"or save the model again with Keras {installed}") from exc
        if "safe_mode" in str(exc):
            hint = ("the model has a Lambda layer holding Python code, which Keras refuses to load from a "
                    "file; use a registered custom layer instead, or export a SavedModel (model.export)")
        else:
            hint = ("custom layers must be importable and registered "
                    "(keras.saving.register_keras_serializable)")
        found = f"saved by Keras {saved}" if saved else "no Keras version recorded"
        raise ChildError("source", f"{name} {installed} cannot load {path} ({found}): {reason}{_also()}",
                         hint=hint) from exc
    return _keras_source(model, tf)


# ---- inference ------------------------------------------------------------------------------------------


def _check_names(source: Source, request: dict) -> None:
    model_names = [n for n, _, _ in source.inputs]
    asked = [s["name"] for s in request["inputs"]]
    if sorted(asked) != sorted(model_names):
        raise ChildError("usage", f"the recipe's inputs {asked} do not match the model's inputs "
                         f"{model_names}",
                         hint=f"name the recipe's inputs exactly {model_names} (or leave inputs out to use "
                              "the model's own)")


def _samples(source: Source, request: dict, notes: list[str]) -> dict:
    """The sample arrays by input name, cast to the dtypes the model takes."""
    dtypes = {n: d for n, _, d in source.inputs}
    arrays = {}
    with np.load(request["samples"]) as data:
        missing = [s["name"] for s in request["inputs"] if s["name"] not in data.files]
        if missing:
            raise ChildError("usage", f"the samples file has no arrays for {missing} (it has {data.files})")
        for s in request["inputs"]:
            a, want = data[s["name"]], np.dtype(dtypes[s["name"]].as_numpy_dtype)
            if s.get("dtype") and np.dtype(s["dtype"]) != want:
                notes.append(f"input {s['name']}: the recipe says {s['dtype']} but the model takes "
                             f"{want.name}; the samples were cast and the ONNX input is {want.name}")
            arrays[s["name"]] = np.asarray(a.astype(want, copy=False), order="C")  # a scalar stays 0-d
    return arrays


def reference(source: Source, arrays: dict, chunk: int, tf, axes: dict | None = None) -> dict:
    """The outputs over every sample, in chunks cut along each input's batch axis (`axes`; default 0; None: the
    input is fed whole to every chunk), joined along axis 0 (data/batching.py)."""
    from convertctl.data.batching import join, sample_count, split

    parts = []
    runs = split(arrays, chunk, axes or {})
    for run in runs:
        out = source.call({n: tf.constant(a) for n, a in run.items()})
        parts.append({k: np.asarray(v) for k, v in out.items()})
    keys = list(parts[0])
    sizes = [sample_count(run, axes or {}) for run in runs]
    return dict(zip(keys, join([[p[k] for k in keys] for p in parts], sizes), strict=True))


# ---- conversion -----------------------------------------------------------------------------------------


def _check_opset(opset: int) -> None:
    import tf2onnx.constants

    known = sorted(tf2onnx.constants.OPSET_TO_IR_VERSION)
    if opset not in known:
        raise ChildError("usage", f"tf2onnx {_version('tf2onnx')} writes ONNX opsets {known[0]} to "
                         f"{known[-1]}, not {opset}",
                         hint=f"set export.opset to {min(max(opset, 7), known[-1])}")


def _tf_name(name: str, index: int) -> str:
    """A placeholder name TensorFlow accepts; the ONNX input gets the request's name afterwards."""
    clean = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name)
    return clean if re.match(r"[A-Za-z0-9.]", clean) else f"input_{index}"


def _specs(source: Source, request: dict, tf) -> list:
    """TensorSpecs in the request's input order: its shape (a str dim -> None) with the model's dtype."""
    dtypes = {n: d for n, _, d in source.inputs}
    return [tf.TensorSpec([None if isinstance(d, str) else int(d) for d in s["shape"]], dtypes[s["name"]],
                          name=_tf_name(s["name"], i)) for i, s in enumerate(request["inputs"])]


def _from_keras(source: Source, names: list[str], specs, opset: int):
    """tf2onnx from_keras. It calls model(*signature), so several inputs go in as one list, model order."""
    import tf2onnx

    by_name = dict(zip(names, specs, strict=True))
    ordered = [by_name[n] for n, _, _ in source.inputs]
    model_proto, _ = tf2onnx.convert.from_keras(
        source.obj, input_signature=ordered if len(ordered) == 1 else [ordered], opset=opset)
    return model_proto


def _from_function(source: Source, names: list[str], specs, opset: int, tf):
    """tf2onnx over a traced tf.function returning {output name: tensor}: ONNX outputs get those names."""
    import tf2onnx

    def fn(*args):
        return source.call(dict(zip(names, args, strict=True)))

    traced = tf.function(fn, input_signature=specs, autograph=False)
    model_proto, _ = tf2onnx.convert.from_function(traced, input_signature=specs, opset=opset)
    return model_proto


def _rename_values(graph, mapping: dict) -> None:
    """Rename tensors everywhere in `graph` and its subgraphs (If/Loop bodies use outer names)."""
    import onnx

    for values in (graph.input, graph.output, graph.value_info, graph.initializer):
        for v in values:
            v.name = mapping.get(v.name, v.name)
    for node in graph.node:
        for names in (node.input, node.output):
            for i, n in enumerate(names):
                names[i] = mapping.get(n, n)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_values(attr.g, mapping)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _rename_values(g, mapping)


def _reorder(values, names: list[str]) -> None:
    by_name = {v.name: v for v in values}
    copies = [type(by_name[n])() for n in names]
    for c, n in zip(copies, names, strict=True):
        c.CopyFrom(by_name[n])
    del values[:]
    values.extend(copies)


def _finish(proto, source: Source, request: dict, spec_names: list[str]) -> None:
    """Graph inputs named and ordered as the request's; outputs named and ordered as the model's."""
    import onnx

    graph = proto.graph
    wanted = [s["name"] for s in request["inputs"]]
    out_names = [n for n, _, _ in source.outputs]
    mapping = {}
    for v in graph.input:  # tf2onnx may keep TF's ":0"
        base = v.name.removesuffix(":0")
        if base in spec_names:
            mapping[v.name] = wanted[spec_names.index(base)]
    if sorted(mapping.values()) != sorted(wanted):
        raise RuntimeError(f"tf2onnx wrote inputs {[v.name for v in graph.input]}, expected {spec_names}")
    for v in graph.output:
        if v.name.endswith(":0") and v.name.removesuffix(":0") in out_names:
            mapping[v.name] = v.name.removesuffix(":0")
    _rename_values(graph, {k: v for k, v in mapping.items() if k != v})
    outs = [v.name for v in graph.output]
    if sorted(outs) != sorted(out_names):
        raise RuntimeError(f"tf2onnx wrote outputs {outs}, expected {out_names}")
    _reorder(graph.input, wanted)
    _reorder(graph.output, out_names)
    onnx.checker.check_model(proto)  # tf2onnx leaves ops it cannot convert in the graph (continue_on_error)


def convert(source: Source, request: dict, tf) -> tuple[object, str, list[dict]]:
    import tf2onnx

    opset = int(request["opset"])
    specs = _specs(source, request, tf)
    names = [s["name"] for s in request["inputs"]]
    plan = [("tf2onnx from_function", lambda: _from_function(source, names, specs, opset, tf))]
    if source.kind == "keras":
        plan.insert(0, ("tf2onnx from_keras", lambda: _from_keras(source, names, specs, opset)))
    attempts = []
    for name, run in plan:
        t0 = time.perf_counter()
        print(f"[convertctl] converting: {name} (tf2onnx {tf2onnx.__version__}), opset {opset}",
              file=sys.stderr)
        try:
            proto = run()
            _finish(proto, source, request, [s.name for s in specs])
        except Exception as exc:
            reason = root_cause(exc)
            if "2GB" in reason:
                raise ChildError("source", "the ONNX would exceed protobuf's 2 GB limit; tf2onnx writes such "
                                 "models only as a zip with external data, which this export does not do",
                                 hint="convert it with python -m tf2onnx.convert --large_model") from exc
            if name.endswith("from_keras") and isinstance(exc, KeyError) and "keras_tensor" in reason:
                reason += " (tf2onnx's from_keras does not handle some Keras 3 models, e.g. Sequential ones)"
            attempts.append({"converter": name, "ok": False, "seconds": round(time.perf_counter() - t0, 3),
                             "reason": reason[:600]})
            print(f"[convertctl] {name} failed: {reason}", file=sys.stderr)
            continue
        attempts.append({"converter": name, "ok": True, "seconds": round(time.perf_counter() - t0, 3)})
        return proto, name, attempts
    reasons = "; ".join(f"{a['converter']}: {a['reason']}" for a in attempts)
    raise ChildError("source", f"tf2onnx {tf2onnx.__version__} could not convert the model ({reasons})",
                     hint="see export.log; another opset (export.opset) sometimes helps")


# ---- the request ----------------------------------------------------------------------------------------


def _versions(tf, legacy: bool) -> dict:
    import onnx
    import tf2onnx

    versions = {"tensorflow": tf.__version__, "keras": _version("keras"), "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__, "numpy": np.__version__}
    if legacy:
        versions["tf_keras"] = _version("tf-keras")
    return versions


def _describe(source: Source, versions: dict, notes: list[str]) -> dict:
    unknown = [n for n, shape, _ in source.inputs if shape is None]
    if unknown:
        raise ChildError("usage", f"the model's inputs {unknown} have no known rank, so their shapes cannot "
                         "be taken from the model", hint="give inputs[] (name, shape, dtype) in the recipe")

    def io(items):
        return [{"name": n, "shape": s, "dtype": d.name} for n, s, d in items]

    return {"inputs": io(source.inputs), "outputs": io(source.outputs), "versions": versions, "notes": notes}


def work(request: dict) -> dict:
    fmt, path = request["format"], Path(request["model"])
    if fmt not in ("saved_model", "keras", "h5"):
        raise ChildError("usage", f"the TensorFlow worker does not handle format {fmt!r}")
    if not path.exists():
        raise ChildError("source", f"model not found: {path}")
    notes: list[str] = []
    legacy = _legacy_mode(fmt, path, notes)
    import tensorflow as tf

    # TF32 (Ampere+ GPUs) would put the reference ~1e-3 away from an fp32 ONNX run
    tf.config.experimental.enable_tensor_float_32_execution(False)
    source = load(request, legacy, tf)
    versions = _versions(tf, legacy)
    if request["mode"] == "describe":
        return _describe(source, versions, notes)

    _check_names(source, request)
    _check_opset(int(request["opset"]))
    arrays = _samples(source, request, notes)
    from convertctl.data.batching import sample_count

    axes = {s["name"]: s.get("batch_axis", 0) for s in request.get("inputs") or []}
    chunk = request.get("chunk") or sample_count(arrays, axes)
    shapes = ", ".join(f"{n}: {list(a.shape)} {a.dtype}" for n, a in arrays.items())
    print(f"[convertctl] tensorflow {tf.__version__}: reference on {shapes}, chunk {chunk}", file=sys.stderr)
    try:
        ref = reference(source, arrays, chunk, tf, axes)
    except ChildError:
        raise
    except Exception as exc:
        raise ChildError("source", f"the model rejected the sample inputs ({shapes}): {root_cause(exc)}",
                         hint="check inputs[].shape and dtype in the recipe") from exc

    proto, converter, attempts = convert(source, request, tf)
    import onnx

    onnx.save(proto, request["onnx"])
    output_names = [v.name for v in proto.graph.output]
    np.savez(request["reference"], *[ref[n] for n in output_names])
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), request["opset"])
    if opset != request["opset"]:
        notes.append(f"tf2onnx wrote opset {opset} (asked for {request['opset']})")
    print(f"[convertctl] wrote {request['onnx']} ({converter}); outputs {output_names}", file=sys.stderr)
    return {"converter": converter, "attempts": attempts, "versions": versions, "opset": int(opset),
            "output_names": output_names, "notes": notes}


if __name__ == "__main__":
    main(work)
