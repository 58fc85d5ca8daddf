"""PyTorch -> model.tflite through Google's litert-torch (torch.export and its own MLIR converter, no TensorFlow and
no ONNX), run in a child process of its own Python environment, with a timeout.

Why its own environment: litert-torch 0.10.0 needs torch<2.15, jax, transformers and torchao, and pins pydantic 2.11
and typing_extensions 4.12, which would downgrade convertctl's. `make frameworks` builds it from torch-env.txt beside
this file. Why a child: torch and jax take seconds to import, and a native converter abort must not take the run with
it; a hang is stopped at `timeout`.

The interpreter, in this order: $CONVERTCTL_LITERT_TORCH_PYTHON; <cache>/envs/litert-torch/bin/python.

Precisions (torch_worker.py says how): fp32, litert-torch's float model; fp16, its weights stored as float16
(ai-edge-quantizer's weight-only float casting); int8, full-integer static quantization calibrated on the given
samples (ai-edge-quantizer's static_wi8_ai8), float32 or int8 input/output. The model is converted at the static
shape of the sample inputs (batch 1), like the onnx2tf path by default.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from convertctl.errors import ConvertctlError, SourceModelError, UsageError

ENV_VAR = "CONVERTCTL_LITERT_TORCH_PYTHON"
ENV_NAME = "litert-torch"
PINS = Path(__file__).resolve().parent / "torch-env.txt"
WORKER = "convertctl.targets.litert.torch_worker"
PRECISIONS = ("fp32", "fp16", "int8")
# import names a finished environment has: a `make frameworks` stopped halfway leaves bin/python without them
PACKAGES = ("torch", "litert_torch", "ai_edge_quantizer", "ai_edge_litert")
LOG_NAME = "litert_torch"  # the child's files: litert_torch.{request,result,error}.json, litert_torch.log


def managed_env() -> Path:
    from convertctl.paths import default_cache_dir

    return default_cache_dir() / "envs" / ENV_NAME


def _make_hint(env: Path) -> str:
    return (f"`make frameworks`, or: python3 -m venv {env} && {env}/bin/pip install \"$(grep -m1 '^torch==' {PINS})\" "
            f"&& {env}/bin/pip install -r {PINS}; or set {ENV_VAR} to a Python that has litert-torch 0.10.0")


def interpreter() -> tuple[str, str]:
    """(python, how it was chosen). A UsageError naming how to make the environment when there is none, or when the
    one found was not finished."""
    from convertctl.frontends.interpreters import env_lacks, incomplete_env

    chosen = os.environ.get(ENV_VAR)
    if chosen:
        if not (Path(chosen).is_file() and os.access(chosen, os.X_OK)):
            raise UsageError(f"{ENV_VAR} names {chosen}, which is not an executable Python interpreter")
        env = Path(chosen).parent.parent
        # a venv's layout can be looked at without starting it; another interpreter is taken at its word
        lacking = env_lacks(env, PACKAGES) if (env / "pyvenv.cfg").is_file() else []
        if lacking:
            raise incomplete_env(env, lacking, f"install {PINS} into it (torch==2.13.0 first), or unset {ENV_VAR}")
        return chosen, ENV_VAR
    env = managed_env()
    managed = env / "bin" / "python"
    if managed.is_file():
        lacking = env_lacks(env, PACKAGES)
        if lacking:
            raise incomplete_env(env, lacking, "run `make frameworks` again")
        return str(managed), f"{env} (make frameworks)"
    raise UsageError("no Python environment with litert-torch for the litert target's PyTorch converter",
                     hint=_make_hint(env))


def convert(source: dict, sample_inputs: dict[str, np.ndarray] | list[np.ndarray], precision: str, out_dir: Path,
            timeout: float, calibration: list[dict[str, np.ndarray]] | None = None, *,
            output_names: list[str] | None = None, int8_io: str = "float32") -> dict:
    """Convert the PyTorch model `source` to out_dir/model.tflite at the static shape of `sample_inputs`.

    source: the PyTorch front end's dict {kind: factory|state_dict|torchscript, path, factory, factory_args}
      (convertctl/frontends/pytorch/parent.py); torchscript is refused (torch.export cannot trace it).
    sample_inputs: one array per forward() argument, in its order: a dict names the .tflite's inputs after its keys
      (a list: input_0, input_1...). Their shapes are the model's (batch 1, as the onnx2tf path converts by default).
    precision: fp32 | fp16 (float16 weights) | int8 (full-integer static, needs `calibration`).
    calibration: int8 only: samples, each {input name: array of the sample shape}; an array of N rows of a batch-1
      input counts as N samples.
    output_names: names of the .tflite's outputs (else output_0, output_1...); int8_io: float32 | int8 (int8 only).

    Returns the settings to record: versions, seconds, sizes, the .tflite's signature (names, shapes, dtypes, int8
    scales), the worker's own cosine check against torch on the sample, and `snippet`, Python that reproduces the
    conversion in that environment. The child's request, samples and log stay in out_dir (files: their names).
    A ConvertctlError (UsageError for the recipe's part) when it cannot convert.
    """
    from convertctl import processes
    from convertctl.frontends.child import exit_description, offline_env, package_path

    if precision not in PRECISIONS:
        raise UsageError(f"litert-torch converts to {', '.join(PRECISIONS)}, not {precision!r}")
    if int8_io not in ("float32", "int8"):
        raise UsageError(f"int8_io is float32 or int8, not {int8_io!r}")
    if source.get("kind") == "torchscript":
        raise UsageError("litert-torch converts through torch.export, which cannot trace a TorchScript module",
                         hint="use the litert target's onnx2tf converter (it converts the ONNX the PyTorch front end "
                              "exports) for TorchScript sources, or give the model's Python code as source.factory")
    if precision == "int8" and not calibration:
        raise UsageError("a litert int8 model through litert-torch needs calibration data (a `calibration` section, "
                         "or --calib)")
    python, origin = interpreter()

    named = _name_inputs(sample_inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = out_dir / f"{LOG_NAME}.samples.npz"
    np.savez(samples, **named)
    calib_file = None
    if precision == "int8":
        calib_file = out_dir / f"{LOG_NAME}.calibration.npz"
        np.savez(calib_file, **_stack_calibration(calibration, named))
    tflite = out_dir / "model.tflite"
    tflite.unlink(missing_ok=True)
    request_file = out_dir / f"{LOG_NAME}.request.json"
    result, error, log = (out_dir / f"{LOG_NAME}.result.json", out_dir / f"{LOG_NAME}.error.json",
                          out_dir / f"{LOG_NAME}.log")
    for stale in (result, error):
        stale.unlink(missing_ok=True)
    request = {"source": source, "inputs": list(named), "samples": samples.name,
               "calibration": calib_file.name if calib_file else None, "precision": precision, "int8_io": int8_io,
               "output_names": output_names, "tflite": tflite.name}
    request_file.write_text(json.dumps(request, indent=2, default=str))
    # nothing leaves the machine (offline_env): litert-torch, transformers and huggingface_hub need no download
    env = offline_env(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    with open(log, "wb") as out, package_path(python) as path:
        if path:  # a folder holding only a link to convertctl: the child's own site-packages stay first
            env["PYTHONPATH"] = path
        try:
            proc = processes.run([python, "-m", WORKER, request_file.name], timeout=timeout, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=out_dir)
        except subprocess.TimeoutExpired:
            raise ConvertctlError(f"litert-torch did not finish within {int(timeout)} s and was stopped",
                                  hint=f"raise converter_timeout_s; full log: {log}") from None
    seconds = round(time.perf_counter() - t0, 3)
    if error.exists():
        err = json.loads(error.read_text())
        cls = {"usage": UsageError, "source": SourceModelError}.get(err.get("kind"), ConvertctlError)
        raise cls(err["message"], hint=err.get("hint") or f"full log: {log}")
    if proc.returncode != 0 or not result.exists() or not tflite.exists():
        raise ConvertctlError(f"the litert-torch process {exit_description(proc.returncode)} without a result"
                              + (f": {_last_line(log)}" if _last_line(log) else ""), hint=f"full log: {log}")
    ran = json.loads(result.read_text())
    return {
        "converter": "litert-torch",
        **ran,
        "precision": precision,
        **({"int8_io": int8_io} if precision == "int8" else {}),
        "input_shapes": {n: list(a.shape) for n, a in named.items()},
        "seconds": seconds,  # the child's whole run: start-up and imports included
        "python": python,
        "python_origin": origin,
        "files": {"tflite": tflite.name, "log": log.name, "request": request_file.name, "samples": samples.name,
                  **({"calibration": calib_file.name} if calib_file else {})},
        "snippet": snippet(source, named, precision, int8_io, output_names),
    }


def _name_inputs(sample_inputs) -> dict[str, np.ndarray]:
    if isinstance(sample_inputs, dict):
        named = {str(k): np.ascontiguousarray(v) for k, v in sample_inputs.items()}
    else:
        named = {f"input_{i}": np.ascontiguousarray(v) for i, v in enumerate(sample_inputs)}
    if not named:
        raise UsageError("litert-torch needs at least one sample input to trace the model with")
    return named


def _stack_calibration(calibration: list[dict[str, np.ndarray]], named: dict[str, np.ndarray]) -> dict:
    """Per input, the calibration samples stacked along a new axis 0, each of the sample's shape: the model is
    static, so a batch of N rows of a batch-1 input is N samples."""
    stacks: dict[str, list[np.ndarray]] = {n: [] for n in named}
    for feeds in calibration:
        rows = None
        for name, sample in named.items():
            if name not in feeds:
                raise UsageError(f"a calibration sample has no input {name!r} (it has {sorted(feeds)})")
            arr = np.asarray(feeds[name], dtype=sample.dtype)
            if arr.shape == sample.shape:
                parts = [arr]
            elif sample.ndim and sample.shape[0] == 1 and arr.shape[1:] == sample.shape[1:]:
                parts = [arr[i:i + 1] for i in range(arr.shape[0])]
            else:
                raise UsageError(f"calibration input {name!r} has shape {list(arr.shape)}; the model is converted at "
                                 f"{list(sample.shape)}")
            if rows is not None and len(parts) != rows:
                raise UsageError("the calibration inputs of one sample have different batch sizes")
            rows = len(parts)
            stacks[name].extend(parts)
    return {n: np.stack(v) for n, v in stacks.items()}


def _last_line(log: Path) -> str:
    try:
        lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def snippet(source: dict, named: dict[str, np.ndarray], precision: str, int8_io: str,
            output_names: list[str] | None) -> str:
    """Python that reproduces the conversion in the litert-torch environment (torch-env.txt), in the build's folder:
    litert_torch.samples.npz (and litert_torch.calibration.npz for int8) hold the inputs it used."""
    names = list(named)
    lines = ["# litert-torch 0.10.0 (torch-env.txt); run where litert_torch.samples.npz is",
             "import importlib, importlib.util, numpy as np, torch, litert_torch"]
    if source.get("factory"):
        file, _, attr = source["factory"].rpartition(":")
        if file.endswith(".py"):
            lines += [f"spec = importlib.util.spec_from_file_location('factory', {file!r})",
                      "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)"]
        else:  # "package.module:callable"
            lines.append(f"mod = importlib.import_module({file!r})")
        lines.append(f"model = mod.{attr}(**{source.get('factory_args') or {}!r})")
        if source.get("kind") == "state_dict":
            lines.append(f"model.load_state_dict(torch.load({str(source['path'])!r}, map_location='cpu', "
                         "weights_only=True))")
    lines += ["model.eval()",
              "class Named(torch.nn.Module):  # keyword inputs: the .tflite's inputs carry these names",
              "    def __init__(self, m): super().__init__(); self.m = m",
              f"    def forward(self, **f): out = self.m(*[f[n] for n in {names!r}]); "
              + (f"return dict(zip({output_names!r}, out if isinstance(out, (tuple, list)) else [out]))"
                 if output_names else "return out"),
              "samples = np.load('litert_torch.samples.npz')",
              f"edge = litert_torch.convert(Named(model).eval(), sample_kwargs={{n: torch.from_numpy(samples[n]) "
              f"for n in {names!r}}})"]
    if precision == "fp32":
        lines.append("edge.export('model.tflite')")
        return "\n".join(lines)
    lines += ["from ai_edge_quantizer import qtyping, quantizer, recipe_manager",
              "from ai_edge_quantizer.algorithm_manager import AlgorithmName",
              "rm = recipe_manager.RecipeManager()"]
    if precision == "fp16":
        lines += ["rm.add_weight_only_config(regex='.*', operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, "
                  "num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)",
                  "q = quantizer.Quantizer(edge.model_content(), rm.get_quantization_recipe())",
                  "open('model.tflite', 'wb').write(q.quantize().quantized_model)"]
        return "\n".join(lines)
    lines.append("rm.add_static_config(regex='.*', operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, "
                 "activation_num_bits=8, weight_num_bits=8, algorithm_key=AlgorithmName.MIN_MAX_UNIFORM_QUANT)")
    if int8_io == "float32":
        lines += ["for io in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):  # float32 in/out",
                  "    rm.add_quantization_config(regex='.*', operation_name=io, "
                  "algorithm_key=AlgorithmName.NO_QUANTIZE)"]
    lines += ["q = quantizer.Quantizer(edge.model_content(), rm.get_quantization_recipe())",
              "calib = np.load('litert_torch.calibration.npz')",
              f"feeds = [{{n: calib[n][i] for n in {names!r}}} for i in range(len(calib[{names[0]!r}]))]",
              "result = q.quantize(q.calibrate({'serving_default': feeds}))",
              "open('model.tflite', 'wb').write(result.quantized_model)"]
    return "\n".join(lines)

