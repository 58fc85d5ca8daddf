"""Runs inside the litert-torch environment (its own Python: litert-torch 0.10 pins pydantic 2.11 and pulls jax): the
PyTorch model of the recipe -> torch.export -> litert-torch's converter -> model.tflite, then, for fp16 and int8,
ai-edge-quantizer on that .tflite.

Only the standard library, numpy, torch, litert-torch, ai-edge-quantizer and the light convertctl modules the PyTorch
front end's worker uses (its build_model), nothing that needs convertctl's own environment.
    python -m convertctl.targets.litert.torch_worker litert_torch.request.json
        -> litert_torch.result.json | litert_torch.error.json beside the request

Request keys: source {kind, path, factory, factory_args}, inputs [names, in forward()'s order], samples (npz: one
array per input, the static shape converted at), calibration (npz: per input, the samples stacked along a new axis
0) or null, precision fp32|fp16|int8, int8_io float32|int8, output_names or null, tflite (file name to write).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from convertctl.frontends.worker import ChildError, first_line, main, root_cause

SIGNATURE = "serving_default"  # litert-torch's default signature name, used by the calibration feed


def _named(model, input_names: list[str], output_names: list[str] | None):
    """The model behind forward(**feeds): litert-torch names a keyword argument's signature input after its key
    (positional ones become args_0, args_1...), so the .tflite's inputs carry the recipe's names. A dict output
    names the signature outputs the same way (else output_0, output_1...)."""
    import torch

    from convertctl.frontends.pytorch.worker import flatten

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, **feeds):
            outs = flatten(self.model(*[feeds[n] for n in input_names]))
            if output_names is None:
                return tuple(outs)
            if len(outs) != len(output_names):
                raise ChildError("usage", f"export.output_names names {len(output_names)} outputs; the model "
                                          f"returns {len(outs)}")
            return dict(zip(output_names, outs, strict=True))

    return Named().eval()


def _fp16_recipe():
    """Weight-only float16: the weights of the ops that have them (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D,
    CONV_2D_TRANSPOSE, EMBEDDING_LOOKUP) stored as float16 and dequantized to float32 (ai-edge-quantizer's
    float_casting algorithm): the meaning of the litert target's fp16 (TFLite's float16 post-training
    quantization); the CPU computes in float32, a GPU delegate in float16."""
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    rm = recipe_manager.RecipeManager()
    rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              algorithm_key=AlgorithmName.FLOAT_CASTING)
    return rm.get_quantization_recipe()


def _int8_recipe(int8_io: str):
    """Full-integer static: int8 weights (per channel) and int8 activations from min/max calibration
    (ai_edge_quantizer.recipe.static_wi8_ai8). It quantizes the graph's inputs and outputs too (int8 in and out);
    for float32 input/output the INPUT and OUTPUT pseudo-ops are left unquantized, so a QUANTIZE follows each input
    and a DEQUANTIZE precedes each output (measured: float32 signature, int8 inside)."""
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    rm = recipe_manager.RecipeManager()
    rm.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8,
                         weight_num_bits=8, algorithm_key=AlgorithmName.MIN_MAX_UNIFORM_QUANT)
    if int8_io == "float32":
        for io in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            rm.add_quantization_config(regex=".*", operation_name=io, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return rm.get_quantization_recipe()


def _quantize(model_bytes: bytes, request: dict, names: list[str]) -> tuple[bytes, dict]:
    from ai_edge_quantizer import quantizer

    precision = request["precision"]
    q = quantizer.Quantizer(model_bytes, _fp16_recipe() if precision == "fp16" else _int8_recipe(request["int8_io"]))
    calibration = None
    info: dict = {}
    if q.need_calibration:
        with np.load(request["calibration"]) as data:
            stacks = {n: data[n] for n in names}
        count = len(next(iter(stacks.values())))
        feeds = [{n: np.ascontiguousarray(stacks[n][i]) for n in names} for i in range(count)]
        calibration = q.calibrate({SIGNATURE: feeds}, num_threads=1)  # 1: the machine is shared
        info["calibration_samples"] = count
    try:
        result = q.quantize(calibration, enable_progress_report=False)
    except Exception as exc:
        raise ChildError("convert", f"ai-edge-quantizer could not make the {precision} model: {root_cause(exc)}") \
            from exc
    return bytes(result.quantized_model), info  # a bytearray: the LiteRT Interpreter only takes bytes


def _signature(model_bytes: bytes) -> dict:
    """The .tflite's serving signature as the LiteRT Interpreter reads it: names, shapes, dtypes, and the int8
    scale / zero point of quantized inputs and outputs (the caller needs them to feed an int8-in model)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model_bytes).get_signature_runner(SIGNATURE)

    def describe(details: dict) -> list[dict]:
        out = []
        for name, d in details.items():
            item = {"name": name, "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
            scale, zero = d.get("quantization", (0.0, 0))
            if scale:
                item["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
            out.append(item)
        return out

    return {"name": SIGNATURE, "inputs": describe(runner.get_input_details()),
            "outputs": describe(runner.get_output_details())}


def _self_check(model_bytes: bytes, feeds: dict, reference: dict) -> dict:
    """Cosine of each signature output with torch's on the sample input: a fast first look for the log and the
    settings (the target verifies properly afterwards). Float signatures only."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model_bytes).get_signature_runner(SIGNATURE)
    if any(np.dtype(d["dtype"]) != np.float32 for d in runner.get_input_details().values()):
        return {}
    got = runner(**feeds)
    out = {}
    for name, ref in reference.items():
        a, b = np.asarray(got[name], np.float64).ravel(), np.asarray(ref, np.float64).ravel()
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        out[name] = round(float(a @ b) / denom, 7) if denom else (1.0 if np.array_equal(a, b) else 0.0)
    return out


def work(request: dict) -> dict:
    import litert_torch
    import torch

    from convertctl.frontends.pytorch.worker import build_model, flatten

    torch.manual_seed(0)
    model = build_model(request["source"])
    if isinstance(model, torch.jit.ScriptModule):  # the parent refuses these first; a factory may still return one
        raise ChildError("usage", "litert-torch converts through torch.export, which cannot trace a TorchScript "
                                  "module", hint="use the litert target's onnx2tf converter for TorchScript sources")
    model.eval()
    names = request["inputs"]
    with np.load(request["samples"]) as data:
        arrays = {n: np.ascontiguousarray(data[n]) for n in names}
    tensors = {n: torch.from_numpy(a) for n, a in arrays.items()}
    wrapped = _named(model, names, request.get("output_names"))
    shapes = ", ".join(f"{n}: {list(a.shape)} {a.dtype}" for n, a in arrays.items())
    try:
        with torch.inference_mode():
            out = wrapped(**tensors)
    except ChildError:
        raise
    except Exception as exc:
        raise ChildError("source", f"the model rejected the sample inputs ({shapes}): {first_line(exc)}") from exc
    keys = list(out) if isinstance(out, dict) else [f"output_{i}" for i in range(len(out))]
    reference = dict(zip(keys, [t.detach().numpy() for t in flatten(out)], strict=True))

    t0 = time.perf_counter()
    try:
        edge = litert_torch.convert(wrapped, sample_kwargs=tensors)
        float_bytes = bytes(edge.model_content())  # the flatbuffer, as export(path) writes it
    except ChildError:
        raise
    except Exception as exc:  # torch.export's or the MLIR converter's: its innermost reason names the op
        raise ChildError("convert", f"litert-torch could not convert the model: {root_cause(exc)[:600]}",
                         hint="see the log; the litert target's onnx2tf converter is the other way") from exc
    convert_s = round(time.perf_counter() - t0, 3)

    info: dict = {}
    quantize_s = None
    model_bytes = float_bytes
    if request["precision"] in ("fp16", "int8"):
        t1 = time.perf_counter()
        model_bytes, info = _quantize(float_bytes, request, names)
        quantize_s = round(time.perf_counter() - t1, 3)
    Path(request["tflite"]).write_bytes(model_bytes)

    from importlib.metadata import version

    return {
        "litert_torch": litert_torch.__version__,
        "torch": torch.__version__,
        "ai_edge_quantizer": version("ai-edge-quantizer"),
        "ai_edge_litert": version("ai-edge-litert"),
        "convert_seconds": convert_s,
        "quantize_seconds": quantize_s,
        "float_bytes": len(float_bytes),
        "tflite_bytes": len(model_bytes),
        "signature": _signature(model_bytes),
        "self_check_cosine": _self_check(model_bytes, arrays, reference),
        **info,
    }


if __name__ == "__main__":
    main(work)
