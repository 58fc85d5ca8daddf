"""Run a built TensorRT engine on numpy inputs: for verification against ONNX Runtime and for timing.

TensorRT cannot be installed on this project's machines, so this is written against TensorRT 10.x/11.x's
tensor-name API (set_input_shape, set_tensor_address, execute_async_v3) and cuda-python. Before TensorRT sees
the file, the engine's metadata (or, without it, the version in the plan header) is checked against this
TensorRT and this GPU, because TensorRT's own error for a foreign engine is cryptic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from convertctl.errors import UsageError, require
from convertctl.targets.tensorrt.cuda_device import DeviceBuffers, cuda_call, cuda_runtime, gpu_info
from convertctl.targets.tensorrt.engine_info import compatibility_problem, read_plan_version_file
from convertctl.targets.tensorrt.version import parse_version


def host_array(value, dtype) -> np.ndarray:
    """The feed as a C-contiguous array of the engine's dtype, with its own shape: a scalar (a sample rate) stays
    0-d, where np.ascontiguousarray would make it 1-d and the engine would reject shape (1,) for shape ()."""
    array = np.asarray(value, dtype=dtype)
    return array if array.flags.c_contiguous else np.array(array, order="C", copy=True)


class EngineMismatchError(UsageError):
    """The engine was built for another TensorRT version or GPU."""


def check_engine_here(folder: Path, trt_version: str, gpu: dict | None) -> dict | None:
    """The engine's metadata, after checking it can be loaded with this TensorRT on this GPU (runs here too)."""
    engine = folder / "model.engine"
    if not engine.is_file():
        raise UsageError(f"no engine in {folder}", hint="build one with `convertctl build MODEL --target tensorrt`")
    built = read_plan_version_file(engine)
    meta_path = folder / "engine.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if meta is not None:
        problem = compatibility_problem(meta, trt_version, gpu)
    elif parse_version(built)[:3] != parse_version(trt_version)[:3]:
        problem = (f"{engine} was built by TensorRT {built}; this is TensorRT {trt_version}: engines only load in "
                   "the TensorRT version that built them")
    else:
        problem = None
    if problem:
        raise EngineMismatchError(problem, hint="rebuild it here with `convertctl build MODEL --target tensorrt`, "
                                                "or from its build kit (kit.json) with trtexec")
    return meta


class EngineRunner:
    def __init__(self, folder: Path, device: int = 0, flavour=None, check=check_engine_here):
        """`flavour`: the product (builder.Flavour; TensorRT when None); `check`: (folder, its version, this GPU) ->
        the engine's metadata, refusing an engine this product or GPU cannot load."""
        from convertctl.targets.tensorrt.builder import TENSORRT, collecting_logger

        flavour = flavour or TENSORRT
        self.trt = trt = require(flavour.module, flavour.extra)
        self.rt = rt = cuda_runtime()
        gpu = gpu_info(device)
        self.meta = check(folder, str(trt.__version__), gpu)
        cuda_call(rt, f"cudaSetDevice({device})", rt.cudaSetDevice(device))
        self.logger = collecting_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        if self.meta and self.meta.get("build_options", {}).get("version_compatible"):
            self.runtime.engine_host_code_allowed = True  # a version-compatible engine carries its lean runtime
        self.engine = self.runtime.deserialize_cuda_engine((folder / "model.engine").read_bytes())
        if self.engine is None:
            errors = self.logger.errors()
            raise EngineMismatchError(f"{flavour.title} {trt.__version__} cannot load {folder / 'model.engine'}: "
                                      f"{errors[-1] if errors else 'no reason given'}")
        self.context = self.engine.create_execution_context()
        self.stream = cuda_call(rt, "cudaStreamCreate", rt.cudaStreamCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.buffers = DeviceBuffers(rt)
        self.gpu = gpu

    def _dtype(self, name: str):
        try:
            return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
        except TypeError:
            raise UsageError(f"tensor {name!r} is {self.engine.get_tensor_dtype(name)}, which numpy cannot hold",
                             hint="keep the model's inputs and outputs float32/float16") from None

    def _check_shape(self, name: str, shape: tuple[int, ...]) -> None:
        declared = tuple(self.engine.get_tensor_shape(name))
        if all(d >= 0 for d in declared):
            if shape != declared:
                raise UsageError(f"input {name!r} has shape {shape}; the engine was built for {declared}")
            return
        low, _, high = (tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0))
        if len(shape) != len(low) or any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high, strict=False)):
            raise UsageError(f"input {name!r} has shape {shape}, outside the engine's profile {low}..{high}",
                             hint="rebuild with wider ranges in the recipe's dims")

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        rt, host = self.rt, []
        to_device = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name in self.inputs:
            if name not in feeds:
                raise UsageError(f"no data for engine input {name!r}; the engine's inputs are {self.inputs}")
            array = host_array(feeds[name], self._dtype(name))
            self._check_shape(name, tuple(array.shape))
            if not self.context.set_input_shape(name, array.shape):
                raise UsageError(f"TensorRT rejected shape {array.shape} for input {name!r}")
            pointer = self.buffers.get(name, array.nbytes)
            cuda_call(rt, f"copy {name} to the GPU",
                      rt.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, to_device, self.stream))
            self.context.set_tensor_address(name, pointer)
            host.append(array)  # keep it alive until the stream is synchronised
        results = []
        for name in self.outputs:
            out = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtype(name))
            self.context.set_tensor_address(name, self.buffers.get(name, out.nbytes))
            results.append(out)
        if not self.context.execute_async_v3(int(self.stream)):  # the handle as an integer, as TensorRT takes it
            errors = self.logger.errors()
            raise UsageError(f"TensorRT failed to run the engine: {errors[-1] if errors else 'no reason given'}")
        to_host = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, out in zip(self.outputs, results, strict=True):
            cuda_call(rt, f"copy {name} from the GPU", rt.cudaMemcpyAsync(
                out.ctypes.data, self.buffers.buffers[name][0], out.nbytes, to_host, self.stream))
        cuda_call(rt, "cudaStreamSynchronize", rt.cudaStreamSynchronize(self.stream))
        return results

    def close(self) -> None:
        self.buffers.free()
        self.rt.cudaStreamDestroy(self.stream)
