"""The recipe: a typed, strict description of one conversion job, loaded from YAML.

Unknown keys are rejected and every error names its key path (`targets[1].precision: ...`).
Relative paths inside a recipe are resolved against the recipe file's folder, so
`convertctl run recipes/x.yaml` behaves the same from any working directory.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator

from convertctl.data import limits
from convertctl.errors import RecipeError
from convertctl.quantize.spec import CalibrationSpec, QuantizeSpec
from convertctl.schema import ImagePreprocess, Strict, Tolerance
from convertctl.targets import registry

RECIPE_VERSION = 1
STAGES = ("export", "check", "optimize", "build")


def _dim(value):
    """One entry of `inputs[].shape`: a positive int up to limits.MAX_DIM, or a symbolic name."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # `224.0` in YAML
    if isinstance(value, str):
        if not value.isidentifier():
            raise ValueError(f"symbolic dimension {value!r} must be an identifier such as 'batch'")
    elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"dimension {value} must be a positive integer or a symbolic name "
                         f"(zero-size, negative and fractional dims are not supported)")
    elif value > limits.MAX_DIM:
        raise ValueError(f"dimension {value} is larger than {limits.MAX_DIM}")
    return value


Dim = Annotated[int | str, BeforeValidator(_dim)]  # per item, so an error names `inputs[0].shape[2]`

# Random integer samples are drawn in [low, high] of the dtype; values outside it would wrap around.
_INT_RANGE = {"uint8": (0, 255), "int8": (-128, 127), "int16": (-2**15, 2**15 - 1), "int32": (-2**31, 2**31 - 1),
              "int64": (-2**63, 2**63 - 2)}
_FLOAT_MAX = {"float16": 65504.0, "float32": 3.4028234663852886e38}
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
DType = Literal["float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"]


class InputSpec(Strict):
    """One model input. Symbolic dims (strings such as `batch`) become dynamic ONNX dims.

    The samples are stacked along `batch_axis` (0 by default; `null`: the input is not batched, every run gets the
    same tensor, e.g. a sample rate or a recurrent state fed as given). `shape: []` is a scalar (never batched).
    `value` fills every element with one number (a sample rate, a zero state); otherwise random data in `range`."""

    name: str = Field(description="Input name (becomes the ONNX input name); names must be unique.")
    shape: list[Dim] = Field(max_length=64, description=(
        "The input's dims; symbolic names (identifiers such as `batch`) become dynamic ONNX dims. Every other dim is "
        "a positive int (zero-size, negative and fractional dims are refused); `[]` is a scalar."))
    dtype: DType = Field("float32", description="Element type.")
    range: tuple[float, float] = Field((0.0, 1.0), description=(
        "[low, high] of random samples, when the input has no `value` and no images feed it. Whole numbers within "
        "the dtype for integer dtypes, at most 65504 in size for float16."))
    value: float | int | bool | None = Field(None, description=(
        "A fixed value for every element, instead of random data (a sample rate, a zero state). It must fit the "
        "dtype: a whole number for integer dtypes, true/false for bool."))
    batch_axis: int | None = Field(0, description=(
        "The axis the samples are stacked along (and cut along for each run); null: not batched, every run gets "
        "the same tensor. A scalar (`shape: []`) defaults to null."))

    @field_validator("range")
    @classmethod
    def _range(cls, value, info: ValidationInfo):
        lo, hi = value
        dtype = info.data.get("dtype", "float32")
        if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(hi - lo)):
            raise ValueError(f"range {list(value)} must be two finite numbers [low, high]")
        if lo > hi:
            raise ValueError(f"range [{lo}, {hi}] is inverted: set [low, high] with low <= high")
        if dtype in _INT_RANGE:
            bottom, top = _INT_RANGE[dtype]
            if not (lo.is_integer() and hi.is_integer()):
                raise ValueError(f"range [{lo}, {hi}] of a {dtype} input must be whole numbers")
            if lo < bottom or hi > top:
                raise ValueError(f"range [{lo:.0f}, {hi:.0f}] does not fit {dtype} ({bottom}..{top})")
        if dtype in _FLOAT_MAX and max(abs(lo), abs(hi)) > _FLOAT_MAX[dtype]:
            raise ValueError(f"range [{lo}, {hi}] does not fit {dtype} (at most {_FLOAT_MAX[dtype]:g} in size)")
        return value

    @field_validator("value")
    @classmethod
    def _value(cls, value, info: ValidationInfo):
        if value is None:
            return value
        dtype = info.data.get("dtype", "float32")
        if dtype == "bool":
            if value not in (0, 1):  # True/False, 0/1
                raise ValueError(f"value {value!r} of a bool input must be true or false")
            return bool(value)
        if isinstance(value, bool):
            raise ValueError(f"value {value!r} is a boolean; a {dtype} input takes a number")
        if not math.isfinite(value):
            raise ValueError(f"value {value} must be a finite number")
        if dtype in _INT_RANGE:
            bottom, top = _INT_RANGE[dtype]
            if not float(value).is_integer() or not bottom <= value <= top:
                raise ValueError(f"value {value} does not fit {dtype} (whole numbers {bottom}..{top})")
            return int(value)
        if dtype in _FLOAT_MAX and abs(value) > _FLOAT_MAX[dtype]:
            raise ValueError(f"value {value} does not fit {dtype} (at most {_FLOAT_MAX[dtype]:g} in size)")
        return value

    @model_validator(mode="after")
    def _batch_axis(self):
        if not self.shape and "batch_axis" not in self.model_fields_set:
            self.batch_axis = None  # a scalar has no axis to stack samples along
        if self.batch_axis is not None and not 0 <= self.batch_axis < len(self.shape):
            if not self.shape:
                raise ValueError(f"batch_axis {self.batch_axis}: a scalar (shape []) has no axis to batch along; "
                                 "use null (the same value for every run)")
            raise ValueError(f"batch_axis {self.batch_axis} is not an axis of shape {list(self.shape)}: give "
                             f"0..{len(self.shape) - 1}, or null (not batched: the same tensor for every run)")
        return self

    @property
    def dynamic_dims(self) -> list[str]:
        return [d for d in self.shape if isinstance(d, str)]


def _dim_range(value):
    """`dims: {x_2: 640}` is a fixed value: min = opt = max = 640. A range whose min or opt is above the default
    max (8) gets max = the larger of them, so `{opt: 640}` means 1..640..640."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return {"min": value, "opt": value, "max": value}
    if isinstance(value, dict) and "max" not in value:
        given = [v for v in (value.get("min"), value.get("opt")) if isinstance(v, int) and not isinstance(v, bool)]
        if given and max(given) > 8:
            return {**value, "max": max(given)}
    return value


class DimRange(Strict):
    """Range of a symbolic dim: used for sample shapes and TensorRT optimisation profiles."""

    min: int = Field(1, ge=1, le=limits.MAX_DIM, description="Smallest value.")
    opt: int | None = Field(None, ge=1, le=limits.MAX_DIM, description=(
        "Typical value: the size the samples have along this dim; null: `min`."))
    max: int = Field(8, ge=1, le=limits.MAX_DIM, description=(
        "Largest value: the dim's upper bound for the dynamo exporter; for a batch dim, the largest chunk of "
        "samples run at once. Not given, it is the larger of `min` and `opt` when one is above 8 "
        "(`{opt: 640}` is 1..640..640)."))

    @model_validator(mode="after")
    def _order(self):
        opt = self.opt if self.opt is not None else self.min
        if not self.min <= opt <= self.max:
            raise ValueError(f"need min <= opt <= max, got {self.min}, {opt}, {self.max}")
        return self

    @property
    def value(self) -> int:
        """The size the samples have along this dim: opt, else min."""
        return self.opt if self.opt is not None else self.min


DimEntry = Annotated[DimRange, BeforeValidator(_dim_range, json_schema_input_type=int | DimRange)]  # `x_2: 640` too


class Samples(Strict):
    """Data every artifact is verified on: real images from a folder, or seeded random tensors."""

    images: Path | None = Field(None, description=(
        "A folder of real images, instead of seeded random data. Its .jpg .jpeg .png .bmp files are searched "
        "recursively and preprocessed as `preprocess` says."))
    input: str | None = Field(None, description=(
        "Which input receives the images (the others get their `value` or random data); null: the first input."))
    count: int = Field(8, ge=1, le=10000, description=(
        "Number of verification samples. A fixed batch dim can change it (see Sample count)."))
    seed: int = Field(0, description="Seed of the random data and of the choice of images.")
    preprocess: ImagePreprocess = Field(default_factory=ImagePreprocess, description="How images become tensors.")


class Source(Strict):
    """Where the model comes from.

    pytorch: `factory` ("pkg.module:callable" or "path/to/file.py:callable") builds an nn.Module;
    with `path` as well, `path` is a state dict loaded into it; `path` alone is a TorchScript file.
    onnx: `path` is an ONNX file.
    paddle: `path` is a Paddle inference model (folder, .pdmodel or .json, with its .pdiparams).
    tensorflow: `path` is a SavedModel folder, a .keras file or an .h5 file.
    """

    framework: Literal["pytorch", "onnx", "paddle", "tensorflow"] = Field(description="The source framework.")
    path: Path | None = Field(None, description=(
        "The model file or folder. ONNX: the .onnx file; PyTorch: a TorchScript file, or with `factory` a state "
        "dict loaded into the model it builds; Paddle: the inference model's folder, .pdmodel or .json (with its "
        ".pdiparams); TensorFlow: a SavedModel folder, a .keras or an .h5 file."))
    format: Literal["auto", "paddle_legacy", "paddle_pir", "saved_model", "keras", "h5"] = Field("auto", description=(
        "Paddle/TensorFlow only: the on-disk format. auto: detected from the files; a named one must match them."))
    factory: str | None = Field(None, description=(
        "PyTorch: \"file.py:callable\" or \"package.module:callable\" returning a torch.nn.Module."))
    factory_args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments passed to the factory.")

    @field_validator("factory")
    @classmethod
    def _factory(cls, value):
        if value is not None and (":" not in value or value.endswith(":") or value.startswith(":")):
            raise ValueError("factory must look like 'package.module:callable' or 'path/to/file.py:callable'")
        return value

    @model_validator(mode="after")
    def _needs(self):
        from convertctl.frontends import registry

        frontend = registry.get(self.framework)  # its record: which of path/factory it takes, which formats
        frontend.check_source(self)
        if frontend.formats:
            if self.format not in ("auto", *frontend.formats):
                raise ValueError(f"format {self.format!r} is not a {self.framework} format "
                                 f"({', '.join(frontend.formats)})")
        elif self.format != "auto":
            detecting = " and ".join(f.name for f in registry.detecting())
            raise ValueError(f"'format' is for {detecting} sources, not {self.framework}")
        return self

    @property
    def kind(self) -> str:
        if self.framework in ("onnx", "paddle", "tensorflow"):
            return self.framework
        if self.factory and self.path:
            return "state_dict"
        return "factory" if self.factory else "torchscript"


class ExportOptions(Strict):
    """Framework -> ONNX (ignored for an ONNX source)."""

    opset: int | None = Field(None, ge=7, le=25, description=(
        "ONNX opset asked for; null: pytorch 18 (the dynamo exporter's minimum), paddle 13, tensorflow 17. The "
        "opset written is read back from the model and recorded."))
    python: Path | None = Field(None, description=(
        "The interpreter that runs the framework's export child (another environment's bin/python); null: "
        "CONVERTCTL_<STACK>_PYTHON, then the environments `make frameworks` builds, then this one "
        "(convertctl/frontends/interpreters.py)."))
    exporter: Literal["auto", "dynamo", "legacy"] = Field("auto", description=(
        "PyTorch's exporter; auto: dynamo first, the legacy TorchScript exporter if it fails (the reason is "
        "recorded)."))
    output_names: list[str] | None = Field(None, description="Names of the ONNX outputs; null: the exporter's.")
    external_data: Literal["auto", "always", "never"] = Field("auto", description=(
        "PyTorch: weights in a separate `model.onnx.data` file; auto: only when protobuf's 2 GB limit requires it."))


class OptimizeOptions(Strict):
    simplifier: Literal["onnxslim", "onnxsim", "none"] = Field("onnxslim", description=(
        "Graph simplifier, followed by ONNX shape inference; none: the stage is recorded as skipped."))


def _default_tolerances() -> dict[str, Tolerance]:
    return {
        "fp32": Tolerance(min_cosine=0.9999, max_abs=1e-2, min_top1_agreement=1.0, atol=1e-5, rtol=1e-3),
        "fp16": Tolerance(min_cosine=0.999, min_top1_agreement=0.9, atol=1e-3, rtol=1e-2),
        "int8": Tolerance(min_cosine=0.99, min_top1_agreement=0.9, atol=1e-3, rtol=1e-2),
    }


class Latency(Strict):
    """Latency of every artifact (and of the FP32 ONNX in ONNX Runtime, the baseline), each timed in its own
    process on a fixed batch cut from the verification samples: `warmup` calls, then `runs` timed calls."""

    enabled: bool = Field(True, description="false (or --no-latency): nothing is timed.")
    runs: int = Field(50, ge=5, description="Timed calls per measurement.")
    warmup: int = Field(10, ge=0, description=(
        "Untimed calls first (the first call of a runtime is often much slower)."))
    batch: int = Field(1, ge=1, description=(
        "Samples per call along each input's batch axis. It must lie within `dims` of a symbolic batch dim; "
        "an input with a fixed batch dim wins."))
    timeout_s: float = Field(120.0, gt=0, description=(
        "Seconds per measurement (one child process: load, warm-up, timed calls); beyond it the process is killed."))


class CheckOptions(Strict):
    """The check stage: per-target operator support (`convertctl check`) right after export."""

    fail_fast: bool = Field(False, description=(
        "true: a target runtime judged unsupported stops the run (exit 3); false: only its targets are not built. "
        "The run stops right after the check stage, before optimize and calibration; targets not built are error "
        "artifacts."))


class Regression(Strict):
    """How much worse than a baseline run `convertctl diff` accepts (exit 4 for accuracy, 5 for latency)."""

    max_cosine_drop: float = Field(0.001, ge=0, description="Cosine drop accepted, per output of the accuracy gate.")
    max_top1_agreement_drop: float = Field(0.01, ge=0, le=1, description="Top-1 agreement drop accepted.")
    max_accuracy_drop: float = Field(0.005, ge=0, le=1, description=(
        "Labelled top-1 accuracy drop accepted, as a fraction."))
    max_latency_increase: float = Field(0.10, ge=0, description=(
        "p50 latency increase accepted, as a fraction, on top of the noise both runs' own measurements show "
        "((p90-p50)/p50)."))


class Verify(Strict):
    """How every artifact is judged: accuracy gates, latency, and the regression thresholds of `convertctl diff`."""

    tolerances: dict[Literal["fp32", "fp16", "int8"], Tolerance] = Field(
        default_factory=_default_tolerances, description=(
            "The accuracy gate of each precision: an artifact fails it (exit 4) when any bound is broken. A "
            "precision given replaces its default entirely; those left out keep theirs."))
    latency: Latency = Field(default_factory=Latency, description="Time every artifact, each in its own process.")
    regression: Regression = Field(default_factory=Regression, description=(
        "What `convertctl diff` accepts against a baseline run."))

    @field_validator("tolerances")
    @classmethod
    def _fill(cls, value):
        return {**_default_tolerances(), **value}


# One typed options model per target, each defined in its own target file (targets/*.py).
TargetSpec = Annotated[
    Union[tuple(t.options_model for t in registry.all_targets())],  # noqa: UP007
    Field(discriminator="runtime"),
]


class Recipe(Strict):
    """One conversion job: where the model comes from, its inputs, the data to verify and calibrate on, the targets
    to build and the accuracy each must keep."""

    version: Literal[1] = Field(RECIPE_VERSION, description="Recipe format version; only 1 exists.")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description=(
        "Names the run and the default output folder out/<name>; letters, digits and _ . -"))
    source: Source = Field(description="Where the model comes from.")
    inputs: list[InputSpec] = Field(default_factory=list, description=(
        "Every model input, in forward() order. Required for a PyTorch source; an ONNX, Paddle or TensorFlow "
        "model's are read from it when omitted."))
    dims: dict[str, DimEntry] = Field(default_factory=dict, description=(
        "Size or range of each symbolic dim (sample shapes, the targets' optimisation profiles). `name: {min, opt, "
        "max}`, or `name: N` for one size; a symbolic dim not given gets 1..8."))
    samples: Samples = Field(default_factory=Samples, description=(
        "Data every stage and artifact is verified on (8 random samples by default). Not used when `calibration` "
        "holds out samples."))
    export: ExportOptions = Field(default_factory=ExportOptions, description="Framework -> ONNX options.")
    optimize: OptimizeOptions = Field(default_factory=OptimizeOptions, description="Graph simplification.")
    calibration: CalibrationSpec | None = Field(None, description=(
        "Calibration data for INT8 (and the ranges of FP16); its held-out split becomes the verification data. "
        "Required by int8 targets."))
    quantize: QuantizeSpec = Field(default_factory=QuantizeSpec, description="What to keep out of quantization.")
    check: CheckOptions = Field(default_factory=CheckOptions, description=(
        "What a target runtime the check judges unsupported does to the run."))
    targets: list[TargetSpec] = Field(default_factory=list, description=(
        "The artifacts to build; `runtime:` picks each one's target, whose keys it then takes."))
    stages: list[Literal["export", "check", "optimize", "build"]] = Field(
        default_factory=lambda: list(STAGES), description=(
            "Which stages run, always in the order export, check, optimize, build. Default: all four, without "
            "build when `targets` is empty."))
    verify: Verify = Field(default_factory=Verify, description=(
        "Accuracy tolerances per precision, latency measurement, regression thresholds."))
    output: Path | None = Field(None, description=(
        "Output folder; null: out/<name> in the current folder. -o on the command line wins."))

    @model_validator(mode="after")
    def _consistent(self):
        if self.source.framework == "pytorch" and not self.inputs:
            raise ValueError("a pytorch source needs 'inputs' (name and shape of every model input)")
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        for i in self.inputs:
            for d in i.dynamic_dims:
                self.dims.setdefault(d, DimRange())
        problem = unknown_dims_problem(self.inputs, self.dims) if self.inputs else None  # else: once read
        if problem:
            raise ValueError(problem)
        if self.samples.input and names and self.samples.input not in names:
            raise ValueError(f"samples.input {self.samples.input!r} is not one of the inputs {names}")
        if "stages" not in self.model_fields_set and not self.targets:
            self.stages = [s for s in self.stages if s != "build"]  # default: build only when targets are given
        if "build" in self.stages and not self.targets:
            raise ValueError("stage 'build' needs at least one entry in 'targets'")
        int8 = [t.id for t in self.targets if t.precision == "int8"]
        if int8 and self.calibration is None:
            raise ValueError(f"int8 targets ({', '.join(int8)}) need a 'calibration' section (calibration.data)")
        if self.calibration and self.calibration.input and names and self.calibration.input not in names:
            raise ValueError(f"calibration.input {self.calibration.input!r} is not one of the inputs {names}")
        ids = [t.id for t in self.targets]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"two targets share the id {dupes[0]!r}; give one of them a distinct 'name'")
        problem = latency_batch_problem(self.inputs, self.dims, self.verify.latency.batch)
        if problem:
            raise ValueError(problem)
        self.stages = [s for s in STAGES if s in self.stages]  # the pipeline's order, whatever the file says
        return self

    def resolve_paths(self, base: Path) -> Recipe:
        """Make every relative path absolute against `base` (the recipe file's folder)."""

        def fix(p: Path | None) -> Path | None:
            if p is None:
                return None
            p = p.expanduser()  # `output: ~/out` means the home folder, not a folder named "~"
            return (p if p.is_absolute() else (base / p)).resolve()

        self.source.path = fix(self.source.path)
        self.export.python = None if self.export.python is None else (
            self.export.python if self.export.python.is_absolute() else (base / self.export.python).absolute())
        if self.source.factory:
            target, _, attr = self.source.factory.rpartition(":")
            if target.endswith(".py") and not Path(target).is_absolute():
                self.source.factory = f"{(base / target).resolve()}:{attr}"
        self.samples.images = fix(self.samples.images)
        if self.calibration is not None:
            self.calibration.data = fix(self.calibration.data)
            self.calibration.cache = fix(self.calibration.cache)
            if isinstance(self.calibration.labels, Path):
                self.calibration.labels = fix(self.calibration.labels)
        self.output = fix(self.output)
        return self


def explicit_dim_ranges(recipe: Recipe) -> dict[str, tuple[int, int, int]]:
    """The (min, opt, max) of every symbolic dim the recipe gives a value in `dims` (or `--dim`): a range, or a
    fixed size (min = opt = max), given in full or in part (`{opt: 640}`), or found in the data or the model's
    metadata by data/inputs.resolve_dims.

    Dims filled in with the default range (a symbolic dim the recipe names but gives no value, such as a batch
    dim, or one read from an ONNX source) are left out: for the check they have no range. A dim the recipe fixes
    in inputs[].shape (an int where the model's dim is dynamic) has no name here: the check reads it from the
    recipe's inputs (checks/model_facts.input_specs)."""
    return {name: (r.min, r.opt if r.opt is not None else r.min, r.max)
            for name, r in recipe.dims.items() if r.model_fields_set}


def latency_batch_problem(inputs, dims, batch: int) -> str | None:
    """Why `verify.latency.batch` does not fit the range `dims` gives a symbolic batch dim, else None.

    A fixed batch dim (an int, or a batch dim another input uses as a plain dim) is not checked here: the
    measurement uses that size instead (and says so)."""
    from convertctl.data.dims import fixed_batch_sizes

    fixed = fixed_batch_sizes(inputs, dims)
    for spec in inputs:
        if spec.batch_axis is None or spec.name in fixed:
            continue
        first = spec.shape[spec.batch_axis]
        if isinstance(first, str) and first in dims and not dims[first].min <= batch <= dims[first].max:
            return (f"verify.latency.batch {batch} does not fit input {spec.name!r}: dims.{first} allows "
                    f"{dims[first].min}..{dims[first].max}")
    return None


def unknown_dims_problem(inputs, dims) -> str | None:
    """`dims.NAME` for a name no input has: it would be accepted and ignored, so it is an error."""
    used = list(dict.fromkeys(d for spec in inputs for d in spec.dynamic_dims))
    unknown = [name for name in dims if name not in used]
    if not unknown:
        return None
    have = ", ".join(used) if used else "none: every dim is fixed"
    return (f"dims.{unknown[0]}: no input has a dim of that name{f' (nor {len(unknown) - 1} more)' if len(unknown) > 1 else ''}"
            f"; the inputs' dynamic dims are: {have}")


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: `targets[1].precision: Input should be 'fp32' or 'fp16'`."""
    lines = []
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part == "[key]":
                path += " (the key itself)"
            elif part in registry.target_names() and e["loc"][0] == "targets":
                continue  # the discriminator tag pydantic inserts, not a key the user wrote
            else:
                path += f".{part}" if path else str(part)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and e["loc"] and isinstance(e["loc"][-1], str):
            close = difflib.get_close_matches(e["loc"][-1], _option_names(), n=1, cutoff=0.75)
            msg += f" (did you mean '{close[0]}'?)" if close else ""
        lines.append(f"{path or '(top level)'}: {msg}")
    return "; ".join(lines)


def _option_names() -> set[str]:
    """Every key a recipe may hold, in any section or target: what a misspelt key is compared with."""
    from pydantic import BaseModel

    names: set[str] = set()
    todo = [Recipe, *(t.options_model for t in registry.all_targets())]
    while todo:
        model = todo.pop()
        for name, info in model.model_fields.items():
            names.add(name)
            for arg in (info.annotation, *typing.get_args(info.annotation)):
                for inner in (arg, *typing.get_args(arg)):
                    if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in todo:
                        todo.append(inner)
    return names


def parse_recipe(data: Any, base: Path, origin: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        said = format_validation_error(err)
        hint = "see docs/recipe.md, or write a commented template with `convertctl recipe init`"
        if origin == "command line" and "need a 'calibration' section" in said:
            hint = "give calibration data: `convertctl quantize MODEL --int8 --calib FOLDER_OR_NPZ -t ...`"
        raise RecipeError(f"{origin}: {said}", hint=hint) from None
    problems = budget_problems(recipe)
    if problems:
        raise RecipeError(f"{origin}: {'; '.join(problems)}", hint=limits.budget_hint())
    return recipe.resolve_paths(base)


def feed_shape(spec, dims, count: int) -> list[int]:
    """An input's shape as the samples have it: `count` along its batch axis (none for an unbatched input), a
    symbolic dim at its value (opt, else min; dims are resolved before samples are made, data/inputs.py)."""
    def value(d):
        r = dims.get(d)
        return 1 if r is None else r.value

    shape = [d if isinstance(d, int) else value(d) for d in spec.shape]
    if spec.batch_axis is not None:
        shape[spec.batch_axis] = count
    return shape


def budget_problems(recipe: Recipe) -> list[str]:
    """What the recipe's inputs would allocate beyond the tensor budget (limits.tensor_budget), before anything
    is allocated: the verification samples and the latency batch, one `key.path: ...` line each."""
    from convertctl.data.dims import fixed_batch_sizes

    if not recipe.inputs:
        return []  # an ONNX/Paddle/TF source without `inputs`: checked when the samples are built
    # at most this many: a fixed batch dim rounds samples.count down to a multiple of it (data/samples.py)
    count = max([recipe.samples.count] + list(fixed_batch_sizes(recipe.inputs, recipe.dims).values()))
    problem = tensor_problem(recipe.inputs, recipe.dims, count, "samples.count")
    if problem is None and recipe.verify.latency.enabled:  # one line: the latency batch is the same inputs again
        problem = tensor_problem(recipe.inputs, recipe.dims, recipe.verify.latency.batch, "verify.latency.batch")
    return [problem] if problem else []


def tensor_problem(inputs, dims, first: int, count_key: str) -> str | None:
    """Why `first` samples of every input (stacked along its batch axis) exceed the tensor budget, else None.
    The line names the largest input and the keys that make it smaller."""
    budget = limits.tensor_budget()
    shapes = [feed_shape(spec, dims, first) for spec in inputs]
    sizes = [limits.nbytes(shape, limits.ITEMSIZE[spec.dtype]) for spec, shape in zip(inputs, shapes, strict=True)]
    if sum(sizes) <= budget:
        return None
    i = max(range(len(inputs)), key=sizes.__getitem__)
    spec = inputs[i]
    what = (f"{first} sample{'s' if first > 1 else ''} of input {spec.name!r} ({shapes[i]} {spec.dtype}) take "
            f"{limits.fmt_bytes(sizes[i])}")
    if sizes[i] < sum(sizes):
        what += f" ({limits.fmt_bytes(sum(sizes))} with the other inputs)"
    keys = [count_key] + [f"dims.{d}.opt" for d in dict.fromkeys(
        d for k, d in enumerate(spec.shape) if isinstance(d, str) and k != spec.batch_axis)]
    return (f"inputs[{i}].shape: {what}, more than the tensor budget of {limits.fmt_bytes(budget)}: "
            f"lower {', '.join(keys)} or the fixed dims of inputs[{i}].shape")


class YamlLimitError(ValueError):
    """A YAML document beyond limits.MAX_YAML_NODES / MAX_YAML_DEPTH; `mark` is where it was noticed."""

    def __init__(self, message: str, mark=None, hint: str | None = None):
        super().__init__(message)
        self.mark = mark
        self.hint = hint


@functools.cache
def _bounded_loader():
    """A yaml.SafeLoader that refuses, while composing, a document that is too large once its aliases are
    expanded (a "billion laughs" file of a few hundred bytes) or nested too deep (PyYAML composes recursively).

    The expanded size is counted as the document is composed: every node counts 1, every alias counts the
    expanded size of the node it names. So a bomb is refused after a few hundred nodes, in milliseconds."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self._depth = 0
            self._total = 0  # expanded nodes so far
            self._sizes: dict[int, int] = {}  # id(node) -> its expanded size, once composed

        def _charge(self, n: int, mark) -> None:
            self._total += n
            if self._total > limits.MAX_YAML_NODES:
                raise YamlLimitError(f"more than {limits.MAX_YAML_NODES:,} YAML nodes once its aliases (*name) are "
                                     f"expanded", mark, hint="a recipe is small: write the values out instead of "
                                                             "nesting aliases of aliases")

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                node = self.anchors.get(event.anchor)
                if node is not None and id(node) not in self._sizes:
                    raise YamlLimitError(f"alias *{event.anchor} refers to a collection that contains it",
                                         event.start_mark)
                node = super().compose_node(parent, index)
                self._charge(self._sizes[id(node)], event.start_mark)
                return node
            mark = self.peek_event().start_mark
            self._depth += 1
            if self._depth > limits.MAX_YAML_DEPTH:
                raise YamlLimitError(f"collections nested more than {limits.MAX_YAML_DEPTH} deep", mark,
                                     hint="flatten the nesting (factory_args are keyword arguments)")
            self._charge(1, mark)
            node = super().compose_node(parent, index)
            self._depth -= 1
            self._sizes[id(node)] = 1 + sum(self._sizes[id(c)] for c in _children(node))
            return node

        def construct_mapping(self, node, deep=False):
            # PyYAML keeps the last of two equal keys: a second `targets:` would silently replace the first
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key_node, _ in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                        if key_node.value in seen:
                            raise YamlLimitError(f"the key {key_node.value!r} appears twice in one mapping",
                                                 key_node.start_mark, hint="keep one of them")
                        seen.add(key_node.value)
            return super().construct_mapping(node, deep)

    return BoundedLoader


def _children(node) -> list:
    if isinstance(node.value, list):
        return [c for item in node.value for c in (item if isinstance(item, tuple) else (item,))]
    return []


def load_yaml(path: Path) -> tuple[Any, bytes]:
    """A user's YAML file -> (data, its bytes), bounded: at most limits.MAX_RECIPE_BYTES, MAX_YAML_NODES nodes
    once aliases are expanded, MAX_YAML_DEPTH deep. Every YAML a user hands over is read through here."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe file not found: {path}",
                          hint="check the path, or create one with `convertctl recipe init`")
    if not path.is_file():  # a folder, a FIFO (reading it would hang), a device
        raise RecipeError(f"{path} is not a regular file (a folder, pipe or device), so not a recipe")
    with open(path, "rb") as fh:
        raw = fh.read(limits.MAX_RECIPE_BYTES + 1)  # not the size stat() reports: a file may grow meanwhile
    if len(raw) > limits.MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: larger than {limits.fmt_bytes(limits.MAX_RECIPE_BYTES)}, the most a recipe may be",
                          hint="a recipe names its data files; it does not hold the data")
    try:
        return yaml.load(raw, Loader=_bounded_loader()), raw  # a SafeLoader subclass: plain data only
    except YamlLimitError as err:
        where = f" (line {err.mark.line + 1})" if err.mark else ""
        raise RecipeError(f"{path}: refused: {err}{where}", hint=err.hint) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(f"{path}: not valid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as err:  # e.g. an integer of more than 4300 digits
        first = str(err).splitlines()[0].split("; use sys.set_int_max_str_digits")[0]
        raise RecipeError(f"{path}: not a usable YAML value: {first[:200]}") from None


def load_recipe(path: Path) -> tuple[Recipe, str]:
    """Load and validate a recipe file. Returns the recipe and the sha256 of the file's bytes."""
    path = Path(path)
    data, raw = load_yaml(path)
    recipe = parse_recipe(data, path.resolve().parent, origin=str(path))
    return recipe, hashlib.sha256(raw).hexdigest()


def format_recipe_content(recipe: Recipe) -> dict:
    """The validated recipe, defaults filled in, as plain JSON data (recorded in the manifest)."""
    return recipe.model_dump(mode="json")
