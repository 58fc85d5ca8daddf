"""The CUDA device an engine is built for and run on, through NVIDIA's cuda-python (cuda.bindings.runtime).

TensorRT's Python API leaves device memory and streams to the caller; cuda-python is NVIDIA's own binding
for that (TensorRT's samples use it), so no hand-written ctypes layer is needed. Every call returns an error
code first: `cuda_call` turns a failure into one sentence naming the call and CUDA's own message.
"""

from __future__ import annotations

from convertctl.errors import MissingDependencyError, UsageError


def cuda_runtime():
    """cuda.bindings.runtime (cuda-python >= 12.6), or the older cuda.cudart module path."""
    try:
        from cuda.bindings import runtime  # noqa: PLC0415 - lazy: only on the TensorRT path
        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # noqa: PLC0415 - cuda-python < 12.6
        return cudart
    except ImportError:
        raise MissingDependencyError("cuda-python", "tensorrt") from None


class CudaError(UsageError):
    """A CUDA call failed: no driver, no device, out of memory. The message names the call."""


def cuda_call(rt, what: str, result):
    """The value(s) of a cuda-python call's `result` tuple (error code first); CudaError naming `what` and
    CUDA's own message when the code is not success."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        _, text = rt.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else str(text)
        raise CudaError(f"{what} failed: {text} ({getattr(err, 'name', err)})",
                        hint="TensorRT needs an NVIDIA GPU with a driver new enough for this CUDA runtime "
                             "(nvidia-smi shows both)")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(device: int = 0) -> dict:
    """Name, compute capability and memory of CUDA device `device`, plus the driver and runtime versions.

    Raises CudaError with CUDA's reason when no usable GPU is visible."""
    rt = cuda_runtime()
    count = cuda_call(rt, "cudaGetDeviceCount", rt.cudaGetDeviceCount())
    if device >= count:
        raise CudaError(f"CUDA device {device} does not exist: {count} device(s) visible",
                        hint="set the tensorrt target's `device`, or CUDA_VISIBLE_DEVICES")
    props = cuda_call(rt, f"cudaGetDeviceProperties({device})", rt.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    driver = cuda_call(rt, "cudaDriverGetVersion", rt.cudaDriverGetVersion())
    runtime = cuda_call(rt, "cudaRuntimeGetVersion", rt.cudaRuntimeGetVersion())
    return {"device": device, "name": name, "compute_capability": f"{props.major}.{props.minor}",
            "memory_mib": int(props.totalGlobalMem) >> 20, "driver": _cuda_version(driver),
            "cuda_runtime": _cuda_version(runtime)}


def _cuda_version(number: int) -> str:
    """CUDA encodes 12.4 as 12040."""
    return f"{number // 1000}.{(number % 1000) // 10}"


class DeviceBuffers:
    """Device allocations reused across runs of one engine (grown when a larger shape needs more)."""

    def __init__(self, rt):
        self.rt = rt
        self.buffers: dict[str, tuple[int, int]] = {}  # tensor name -> (pointer, bytes)

    def get(self, name: str, nbytes: int) -> int:
        pointer, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                cuda_call(self.rt, "cudaFree", self.rt.cudaFree(pointer))
            pointer = int(cuda_call(self.rt, f"cudaMalloc({nbytes} bytes for {name})", self.rt.cudaMalloc(max(nbytes, 1))))
            self.buffers[name] = (pointer, max(nbytes, 1))
        return pointer

    def free(self) -> None:
        for pointer, _ in self.buffers.values():
            self.rt.cudaFree(pointer)
        self.buffers.clear()
