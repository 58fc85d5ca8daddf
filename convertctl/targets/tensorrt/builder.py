"""Build a TensorRT engine from an ONNX file with NVIDIA's Python API: TensorRT 10.x/11.x, and TensorRT for RTX.

The two products share one API lineage (the builder, the strongly typed network, the ONNX parser, optimization
profiles, the builder config); where they part, the shared code asks a `Flavour`, defined once per product:
`TENSORRT` here, the TensorRT-RTX one in its own target package. `building()` is the shared part (logger, network,
parse with per-node errors, configuration, profile, build.log), `serialize()` builds the plan and reports NVIDIA's
own reason when it cannot, `describe_network()` reads I/O tensors and layers from the network definition (no GPU).

TensorRT itself cannot be installed on this project's machines (its PyPI packages download the real wheels from
NVIDIA's own host, which is unreachable from them); `build_engine` below is written against the documented Python
API of TensorRT 10.16 and 11.1 (python/src/infer/pyCore.cpp, parsers/pyOnnx.cpp in NVIDIA/TensorRT). What differs
between the two is decided in version.py and trtexec.py. The shared part runs in the tests against TensorRT for
RTX, which installs and builds without a GPU (tests/test_tensorrt_rtx_target.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convertctl.errors import ConvertctlError, UsageError, require
from convertctl.targets.tensorrt.cuda_device import cuda_call, cuda_runtime, gpu_info
from convertctl.targets.tensorrt.engine_info import summarize_inspector
from convertctl.targets.tensorrt.profiles import Profiles
from convertctl.targets.tensorrt.trtexec import weak_precision_flags, weak_typing_problem
from convertctl.targets.tensorrt.version import api_major, explicit_strong_typing

_HARDWARE_LEVELS = {"ampere+": "AMPERE_PLUS", "same_compute_capability": "SAME_COMPUTE_CAPABILITY"}


class EngineBuildError(ConvertctlError):
    """TensorRT refused the model or could not build it; the message carries TensorRT's own reason, `stage` says
    which step refused it ("parse", "build") and `nodes` the ONNX nodes the parser named ("name (OpType)")."""

    def __init__(self, message: str, hint: str | None = None, stage: str = "build", nodes: tuple[str, ...] = ()):
        super().__init__(message, hint)
        self.stage = stage
        self.nodes = nodes


@dataclass(frozen=True)
class Flavour:
    """Where NVIDIA's TensorRT products differ for the shared builder: decided here, once per product."""

    module: str  # the Python module ("tensorrt", "tensorrt_rtx")
    extra: str  # convertctl's extra that installs it
    title: str  # how messages name the product ("TensorRT", "TensorRT-RTX")
    target: str  # the convertctl target that builds with it (for hints)
    # (spec, version) -> whether the network is created with NetworkDefinitionCreationFlag.STRONGLY_TYPED
    strongly_typed: Callable[[Any, str], bool]
    # (trt, config, spec, graph_int8) -> the product's own builder options, after the shared ones are set
    configure: Callable[[Any, Any, Any, bool], None]


def _tensorrt_configure(trt, config, spec, graph_int8: bool) -> None:
    if not spec.strongly_typed:  # 10.x only (refused earlier on 11.x): the precision flags 11.x removed
        for flag in weak_precision_flags(spec.precision, graph_int8):
            config.set_flag(getattr(trt.BuilderFlag, flag))
    if spec.hardware_compatibility_level in _HARDWARE_LEVELS:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel,
                                                      _HARDWARE_LEVELS[spec.hardware_compatibility_level])
    if spec.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)


TENSORRT = Flavour(module="tensorrt", extra="tensorrt", title="TensorRT", target="tensorrt",
                   strongly_typed=lambda spec, version: spec.strongly_typed and explicit_strong_typing(api_major(version)),
                   configure=_tensorrt_configure)


def collecting_logger(trt):
    """A tensorrt.ILogger that keeps warnings and errors, so a failure can be reported with TensorRT's words."""

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append((str(severity).split(".")[-1], str(msg)))

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if s in ("ERROR", "INTERNAL_ERROR")]

    return CollectingLogger()


def _node_names(onnx_path: Path) -> list[str]:
    onnx = require("onnx", "onnx")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [f"{n.name or f'#{i}'} ({n.op_type})" for i, n in enumerate(graph.node)]


def _parse(trt, builder, logger, onnx_path: Path, flags: int, log: list[str], flavour: Flavour = TENSORRT):
    """Parse the ONNX into a network; per-node errors name the ONNX node, the way `convertctl check` does."""
    from convertctl.targets.tensorrt.parser import parser_errors

    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_path)):
        return network, parser
    names = _node_names(onnx_path)
    errors = sorted(parser_errors(parser).items())
    lines = [f"{names[i] if 0 <= i < len(names) else 'model'}: {m}" for i, messages in errors for m in messages]
    log += lines
    raise EngineBuildError(f"{flavour.title} {trt.__version__} cannot parse {onnx_path.name}: "
                           f"{lines[0] if lines else 'no reason given'}"
                           + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""),
                           hint=f"every parser error is in build.log; `convertctl check MODEL -t {flavour.target}` "
                                "lists unsupported operators",
                           stage="parse", nodes=tuple(names[i] for i, _ in errors if 0 <= i < len(names)))


def _profile(trt, builder, network, profiles: Profiles):
    """One optimization profile with min/opt/max of every dynamic input; names must match the network's."""
    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    unknown = [p.name for p in profiles.inputs if p.name not in inputs]
    if unknown:
        raise UsageError(f"the profile names inputs the network does not have: {unknown}; it has {sorted(inputs)}")
    dynamic = [name for name, shape in inputs.items() if any(d < 0 for d in shape)]
    missing = [n for n in dynamic if n not in {p.name for p in profiles.shaped}]
    if missing:
        raise UsageError(f"inputs {missing} are dynamic in the network but have no range in the profile",
                         hint="name their dynamic dims in the recipe's inputs and give ranges in dims")
    if not profiles.shaped:
        return None
    profile = builder.create_optimization_profile()
    for p in profiles.shaped:  # an input the recipe fixes but the ONNX leaves open gets min = opt = max
        profile.set_shape(p.name, p.min, p.opt, p.max)
    return profile


def _configure(trt, builder, spec, graph_int8: bool, flavour: Flavour = TENSORRT):
    config = builder.create_builder_config()
    if spec.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
    config.builder_optimization_level = spec.builder_optimization_level
    if spec.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default; "fp32" means FP32
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer precisions in the inspector JSON
    flavour.configure(trt, config, spec, graph_int8)
    return config


@dataclass
class Build:
    """A parsed, configured network on its way to a plan (the parser must outlive the build)."""

    trt: Any
    flavour: Flavour
    logger: Any
    builder: Any
    network: Any
    parser: Any
    config: Any


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while TensorRT works. The collector runs at any allocation, also inside the
    logger callback TensorRT calls with its own lock held; if it then frees an earlier build's objects (kept alive
    by a reference cycle, e.g. an exception's traceback), their destructors wait for that lock: a deadlock (seen
    with TensorRT-RTX 1.7: IBuilder's destructor in futex_wait, from a traceback freed by the collector)."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def building(trt, flavour: Flavour, onnx_path: Path, spec, profiles: Profiles, graph_int8: bool, out_dir: Path,
             log: list[str]) -> Iterator[Build]:
    """Parse and configure; on leaving, every message the product logged is appended to build.log in out_dir.
    The collector is paused meanwhile (gc_paused)."""
    with gc_paused():
        yield from _building(trt, flavour, onnx_path, spec, profiles, graph_int8, out_dir, log)


def _building(trt, flavour: Flavour, onnx_path: Path, spec, profiles: Profiles, graph_int8: bool, out_dir: Path,
              log: list[str]) -> Iterator[Build]:
    logger = collecting_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if flavour.strongly_typed(spec, str(trt.__version__)):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    try:
        network, parser = _parse(trt, builder, logger, onnx_path, flags, log, flavour)
        config = _configure(trt, builder, spec, graph_int8, flavour)
        profile = _profile(trt, builder, network, profiles)
        if profile is not None:
            config.add_optimization_profile(profile)
        yield Build(trt, flavour, logger, builder, network, parser, config)
    finally:
        log += [f"{severity}: {message}" for severity, message in logger.messages]
        (out_dir / "build.log").write_text("\n".join(log) + "\n")


def serialize(build: Build) -> tuple[bytes, float]:
    """The serialized engine and the seconds it took; EngineBuildError with the product's last error."""
    t0 = time.perf_counter()
    plan = build.builder.build_serialized_network(build.network, build.config)
    seconds = round(time.perf_counter() - t0, 3)
    if plan is None:
        errors = build.logger.errors()
        raise EngineBuildError(f"{build.flavour.title} {build.trt.__version__} could not build the engine: "
                               f"{errors[-1] if errors else 'no reason given'}", hint="all messages are in build.log")
    return bytes(plan), seconds


def _dtype(value) -> str:
    return str(value).split(".")[-1].lower()


def describe_network(build: Build, profiles: Profiles) -> dict:
    """I/O tensors (with their profile) and layers (type, precision, output types) of the network definition: what
    the engine was built from, read without deserializing it (which needs a GPU)."""
    network = build.network
    shaped = {p.name: p for p in profiles.shaped}
    io = []
    for mode, count, get in (("input", network.num_inputs, network.get_input),
                             ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            tensor = get(i)
            entry = {"name": tensor.name, "mode": mode, "dtype": _dtype(tensor.dtype),
                     "shape": [int(d) for d in tensor.shape]}
            if tensor.name in shaped:
                p = shaped[tensor.name]
                entry["profile"] = {"min": list(p.min), "opt": list(p.opt), "max": list(p.max)}
            io.append(entry)
    layers = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [_dtype(layer.get_output_type(k)) for k in range(layer.num_outputs)]
        entry = {"name": layer.name, "type": _dtype(layer.type), "outputs": outputs}
        if hasattr(layer, "precision"):  # TensorRT's ILayer; TensorRT-RTX's has none (the output types decide)
            entry["precision"] = _dtype(layer.precision)
        layers.append(entry)
    counts: dict[str, int] = {}
    types: dict[str, int] = {}
    for layer in layers:
        types[layer["type"]] = types.get(layer["type"], 0) + 1
        for dtype in set(layer["outputs"]):
            counts[dtype] = counts.get(dtype, 0) + 1
    return {"io_tensors": io, "layers": layers, "layer_count": len(layers),
            "layer_types": dict(sorted(types.items())),  # `constant`: the weights and shape constants of the ONNX
            "layer_output_types": dict(sorted(counts.items()))}


def _tensor(engine, name: str, trt) -> dict:
    entry = {"name": name,
             "mode": "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output",
             "dtype": str(engine.get_tensor_dtype(name)).split(".")[-1].lower(),
             "shape": [int(d) for d in engine.get_tensor_shape(name)]}
    if entry["mode"] == "input" and any(d < 0 for d in entry["shape"]):
        low, opt, high = engine.get_tensor_profile_shape(name, 0)
        entry["profile"] = {"min": list(low), "opt": list(opt), "max": list(high)}
    return entry


def default_timing_cache(cache_dir: Path, version: str, gpu: dict) -> Path:
    """One timing cache per TensorRT version and GPU architecture: a cache from another does not apply."""
    return cache_dir / "tensorrt" / f"timing-{version}-sm{gpu['compute_capability'].replace('.', '')}.cache"


def build_engine(onnx_path: Path, spec, profiles: Profiles, out_dir: Path, cache_dir: Path,
                 graph_precision: str) -> dict:
    """Build model.engine, engine.json, layers.json, timing.cache, build.log in out_dir; return engine.json's dict."""
    trt = require("tensorrt", "tensorrt")
    version = str(trt.__version__)
    major = api_major(version)
    problem = weak_typing_problem(major, spec)
    if problem:
        raise UsageError(problem)
    rt = cuda_runtime()
    gpu = gpu_info(spec.device)
    cuda_call(rt, f"cudaSetDevice({spec.device})", rt.cudaSetDevice(spec.device))
    log: list[str] = [f"TensorRT {version} (API {major}.x), GPU {gpu['name']} sm{gpu['compute_capability']}"]
    with building(trt, TENSORRT, onnx_path, spec, profiles, graph_precision.startswith("int8"), out_dir, log) as b:
        config, logger = b.config, b.logger
        cache_path = spec.timing_cache or default_timing_cache(cache_dir, version, gpu)
        cached = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(cached)
        cache_state = "loaded" if cached else "new"
        if not config.set_timing_cache(cache, ignore_mismatch=False):  # made by another TensorRT or GPU
            cache, cache_state = config.create_timing_cache(b""), "replaced (made by another TensorRT or GPU)"
            config.set_timing_cache(cache, ignore_mismatch=False)
        engine_bytes, seconds = serialize(b)
        (out_dir / "model.engine").write_bytes(engine_bytes)
        serialized = bytes(config.get_timing_cache().serialize())
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(serialized)
        (out_dir / "timing.cache").write_bytes(serialized)
        engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
        inspector_json = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
        (out_dir / "layers.json").write_text(inspector_json)
        layers = summarize_inspector(inspector_json)
        return {
            "format": "convertctl.tensorrt-engine/1",
            "engine": "model.engine",
            "tensorrt": {"version": version, "api": f"{major}.x"},
            "gpu": gpu,
            "precision": {"requested": spec.precision, "graph": graph_precision,
                          "network": "strongly typed" if spec.strongly_typed else "weakly typed (precision flags)",
                          "layer_output_precisions": layers["layer_output_precisions"]},
            "profiles": profiles.to_dict(),
            "io_tensors": [_tensor(engine, engine.get_tensor_name(i), trt) for i in range(engine.num_io_tensors)],
            "layers": layers["layers"],
            "build_options": {
                "strongly_typed": spec.strongly_typed, "tf32": spec.tf32, "workspace_mib": spec.workspace_mib,
                "builder_optimization_level": spec.builder_optimization_level,
                "hardware_compatibility_level": spec.hardware_compatibility_level,
                "version_compatible": spec.version_compatible, "profiling_verbosity": "detailed",
                "timing_cache": {"path": str(cache_path), "state": cache_state, "bytes": len(serialized)}},
            "build_seconds": seconds,
        }
