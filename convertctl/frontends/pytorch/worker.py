"""Inside the child process: build the PyTorch model, run it for reference outputs, export to ONNX.

Request keys: source {kind, path, factory, factory_args}, inputs [{name, shape, dtype}],
dims {name: {min, max}}, opset, exporter (auto|dynamo|legacy), output_names, samples, onnx, reference.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from convertctl.frontends.worker import ChildError, first_line, main, root_cause

TWO_GB = 2**31


def _load_callable(spec: str):
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ChildError("source", f"factory file not found: {path}")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.path.insert(0, str(path.parent))
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:
            raise ChildError("source", f"importing {path} failed: {first_line(exc)}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ChildError("source", f"cannot import module {target!r} for the factory: {first_line(exc)}") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ChildError("source", f"{target} has no callable named {attr!r}")
    return fn


def build_model(source: dict):
    import torch

    kind = source["kind"]
    path = Path(source["path"]) if source.get("path") else None
    if path is not None and not path.is_file():
        raise ChildError("source", f"model file not found: {path}")
    if kind == "torchscript":
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ChildError("source", f"{path} is not a loadable TorchScript file: {first_line(exc)}",
                             hint="a state dict needs source.factory too") from exc
    factory = _load_callable(source["factory"])
    try:
        model = factory(**source.get("factory_args", {}))
    except Exception as exc:
        raise ChildError("source", f"the factory {source['factory']} raised {first_line(exc)}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ChildError("source", f"the factory {source['factory']} returned {type(model).__name__}, not a torch.nn.Module")
    if kind == "state_dict":
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            model.load_state_dict(state)
        except Exception as exc:
            raise ChildError("source", f"loading the state dict {path} failed: {first_line(exc)}") from exc
    return model


def flatten(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in flatten(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in flatten(v)]
    raise ChildError("source", f"the model returned {type(out).__name__}; only tensors, tuples, lists and dicts export")


def _export_dynamo(model, args, request, onnx_path: Path, external: bool):
    import torch

    dyn = []
    for spec in request["inputs"]:
        axes = {}
        for axis, d in enumerate(spec["shape"]):
            if isinstance(d, str):
                r = request["dims"].get(d, {})
                # min is left to torch.export (it specialises 0/1); the max bounds the dim.
                axes[axis] = torch.export.Dim(d, max=r.get("max")) if r.get("max", 1) > 1 else torch.export.Dim(d)
        dyn.append(axes or None)
    torch.onnx.export(
        model, tuple(args), str(onnx_path), dynamo=True, opset_version=request["opset"],
        input_names=[s["name"] for s in request["inputs"]], output_names=request.get("output_names") or None,
        dynamic_shapes=tuple(dyn) if any(dyn) else None, external_data=external, verbose=False,
    )


def _export_legacy(model, args, request, onnx_path: Path, external: bool):
    import torch

    dynamic_axes = {}
    for spec in request["inputs"]:
        axes = {axis: d for axis, d in enumerate(spec["shape"]) if isinstance(d, str)}
        if axes:
            dynamic_axes[spec["name"]] = axes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, tuple(args), str(onnx_path), dynamo=False, opset_version=request["opset"],
            input_names=[s["name"] for s in request["inputs"]], output_names=request.get("output_names") or None,
            dynamic_axes=dynamic_axes or None, do_constant_folding=True,
        )


def _move_weights_out(onnx_path: Path) -> None:
    """One external-data file, `model.onnx.data`, whatever the exporter wrote (legacy writes none or many)."""
    import onnx

    model = onnx.load(str(onnx_path))
    for f in onnx_path.parent.iterdir():
        if f != onnx_path and f.suffix not in (".json", ".npz", ".log") and f.is_file():
            f.unlink()  # the exporter's own external files: now loaded into `model`
    onnx.save(model, str(onnx_path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=onnx_path.name + ".data", size_threshold=1024)  # small shape constants must stay inline


def work(request: dict) -> dict:
    import torch

    torch.manual_seed(0)
    model = build_model(request["source"])
    model.eval()
    with np.load(request["samples"]) as data:
        arrays = [np.asarray(data[s["name"]], order="C") for s in request["inputs"]]  # scalars stay 0-d
    from convertctl.data.batching import join, sample_count, split

    names = [s["name"] for s in request["inputs"]]
    axes = {s["name"]: s.get("batch_axis", 0) for s in request["inputs"]}  # None: fed as given, every run
    feeds = dict(zip(names, arrays, strict=True))
    runs = split(feeds, request.get("chunk") or sample_count(feeds, axes), axes)

    def tensors(run):
        return [torch.from_numpy(np.asarray(run[n], order="C")) for n in names]

    args = tensors(runs[0])  # example inputs for the exporter: one chunk
    shapes = ", ".join(f"{s['name']}: {list(a.shape)} {a.dtype}" for s, a in zip(request["inputs"], args, strict=True))
    try:
        with torch.inference_mode():
            parts = [[o.detach().numpy() for o in flatten(model(*tensors(run)))] for run in runs]
            sizes = [sample_count(run, axes) for run in runs]
            outputs = [torch.from_numpy(np.asarray(o, order="C")) for o in join(parts, sizes)]
    except ChildError:
        raise
    except Exception as exc:
        raise ChildError("source", f"the model rejected the declared inputs ({shapes}): {first_line(exc)}",
                         hint="check inputs[].shape and dtype in the recipe against the model's forward()") from exc
    np.savez(request["reference"], *[o.detach().numpy() for o in outputs])

    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers())
    # protobuf cannot hold 2 GB: leave room for the graph itself
    needed = param_bytes >= TWO_GB * 0.9
    if needed and request["external_data"] == "never":
        raise ChildError("usage", f"export.external_data is 'never' but the weights take {param_bytes / 2**30:.1f} GiB; "
                         "protobuf cannot hold 2 GB", hint="use external_data: auto")
    external = request["external_data"] == "always" or needed
    onnx_path = Path(request["onnx"])
    order = {"auto": ["dynamo", "legacy"], "dynamo": ["dynamo"], "legacy": ["legacy"]}[request["exporter"]]
    scripted = isinstance(model, torch.jit.ScriptModule)
    if scripted and request["exporter"] == "auto":  # torch.export refuses every ScriptModule: its error says nothing
        order = ["legacy"]
    attempts, used = [], None
    for name in order:
        t0 = time.perf_counter()
        try:
            exporter = _export_dynamo if name == "dynamo" else _export_legacy
            exporter(model, args, request, onnx_path, external)
            if external:
                _move_weights_out(onnx_path)
            attempts.append({"exporter": name, "ok": True, "seconds": round(time.perf_counter() - t0, 3)})
            used = name
            break
        except Exception as exc:
            attempts.append({"exporter": name, "ok": False, "seconds": round(time.perf_counter() - t0, 3),
                             "reason": root_cause(exc)[:600]})
            print(f"[convertctl] exporter {name} failed: {root_cause(exc)}", file=sys.stderr)
            onnx_path.unlink(missing_ok=True)
    if used is None:
        reasons = "; ".join(f"{a['exporter']}: {a['reason']}" for a in attempts)
        hint = "run with -v and see the export log"
        if scripted:  # the TorchScript exporter replays the scripted code: Python-side state and branches often fail
            hint = ("a TorchScript module that keeps state in attributes or branches on Python values often does not "
                    "export; export from the model's Python code, or use an ONNX its publisher ships; " + hint)
        raise ChildError("source", f"torch.onnx.export failed ({reasons})", hint=hint)
    return {
        "exporter": used,
        "attempts": attempts,
        "torch": torch.__version__,
        "parameters_bytes": int(param_bytes),
        "external_data": external,
        "output_count": len(outputs),
    }


if __name__ == "__main__":
    main(work)
