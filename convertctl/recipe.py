"""The recipe: a typed, strict description of one conversion job, loaded from YAML.

Unknown keys are rejected and every error names its key path (`targets[1].precision: ...`).
Relative paths inside a recipe are resolved against the recipe file's folder, so
`convertctl run recipes/x.yaml` behaves the same from any working directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from convertctl.errors import RecipeError
from convertctl.quantize.spec import CalibrationSpec, QuantizeSpec
from convertctl.schema import ImagePreprocess, Strict, Tolerance
from convertctl.targets import registry

RECIPE_VERSION = 1
STAGES = ("export", "check", "optimize", "build")


class InputSpec(Strict):
    """One model input. Symbolic dims (strings such as `batch`) become dynamic ONNX dims."""

    name: str
    shape: list[int | str] = Field(min_length=1)
    dtype: Literal["float32", "float16", "float64", "int64", "int32", "uint8", "bool"] = "float32"
    range: tuple[float, float] = (0.0, 1.0)  # value range of random samples when no data is given

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape):
        for d in shape:
            if isinstance(d, int) and d <= 0:
                raise ValueError(f"dimension {d} must be a positive integer or a symbolic name")
            if isinstance(d, str) and not d.isidentifier():
                raise ValueError(f"symbolic dimension {d!r} must be an identifier such as 'batch'")
        return shape

    @property
    def dynamic_dims(self) -> list[str]:
        return [d for d in self.shape if isinstance(d, str)]


class DimRange(Strict):
    """Range of a symbolic dim: used for sample shapes and TensorRT optimisation profiles."""

    min: int = Field(1, ge=1)
    opt: int | None = None
    max: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _order(self):
        opt = self.opt if self.opt is not None else self.min
        if not self.min <= opt <= self.max:
            raise ValueError(f"need min <= opt <= max, got {self.min}, {opt}, {self.max}")
        return self


class Samples(Strict):
    """Data every artifact is verified on: real images from a folder, or seeded random tensors."""

    images: Path | None = None
    input: str | None = None  # which input receives the images (default: the first)
    count: int = Field(8, ge=1, le=10000)
    seed: int = 0
    preprocess: ImagePreprocess = Field(default_factory=ImagePreprocess)


class Source(Strict):
    """Where the model comes from.

    pytorch: `factory` ("pkg.module:callable" or "path/to/file.py:callable") builds an nn.Module;
    with `path` as well, `path` is a state dict loaded into it; `path` alone is a TorchScript file.
    onnx: `path` is an ONNX file.
    paddle: `path` is a Paddle inference model (folder, .pdmodel or .json, with its .pdiparams).
    tensorflow: `path` is a SavedModel folder, a .keras file or an .h5 file.
    """

    framework: Literal["pytorch", "onnx", "paddle", "tensorflow"]
    path: Path | None = None
    # paddle/tensorflow: the on-disk format; auto = detected from the files (convertctl/frontends/formats.py)
    format: Literal["auto", "paddle_legacy", "paddle_pir", "saved_model", "keras", "h5"] = "auto"
    factory: str | None = None
    factory_args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("factory")
    @classmethod
    def _factory(cls, value):
        if value is not None and (":" not in value or value.endswith(":") or value.startswith(":")):
            raise ValueError("factory must look like 'package.module:callable' or 'path/to/file.py:callable'")
        return value

    @model_validator(mode="after")
    def _needs(self):
        if self.framework == "onnx" and self.path is None:
            raise ValueError("an onnx source needs 'path'")
        if self.framework == "onnx" and self.factory:
            raise ValueError("an onnx source takes 'path' only, not 'factory'")
        if self.framework == "pytorch" and self.path is None and self.factory is None:
            raise ValueError("a pytorch source needs 'factory', 'path' (TorchScript), or both (state dict)")
        if self.framework in ("paddle", "tensorflow"):
            if self.path is None or self.factory:
                raise ValueError(f"a {self.framework} source takes 'path' (the model's folder or file) only")
            wanted = {"paddle": ("paddle_legacy", "paddle_pir"), "tensorflow": ("saved_model", "keras", "h5")}
            if self.format not in ("auto", *wanted[self.framework]):
                raise ValueError(f"format {self.format!r} is not a {self.framework} format "
                                 f"({', '.join(wanted[self.framework])})")
        elif self.format != "auto":
            raise ValueError(f"'format' is for paddle and tensorflow sources, not {self.framework}")
        return self

    @property
    def kind(self) -> str:
        if self.framework in ("onnx", "paddle", "tensorflow"):
            return self.framework
        if self.factory and self.path:
            return "state_dict"
        return "factory" if self.factory else "torchscript"


class ExportOptions(Strict):
    # null = the front end's default: pytorch 18 (the dynamo exporter's minimum), paddle 13, tensorflow 17
    opset: int | None = Field(None, ge=7, le=25)
    # The interpreter that runs the framework's export child (another environment's bin/python); null = see
    # convertctl/frontends/interpreters.py (CONVERTCTL_<STACK>_PYTHON, `make frameworks` envs, this one)
    python: Path | None = None
    # auto: dynamo exporter first, the legacy TorchScript exporter if it fails (the reason is recorded)
    exporter: Literal["auto", "dynamo", "legacy"] = "auto"
    output_names: list[str] | None = None  # names for the ONNX outputs (default: the exporter's)
    # Weights in a separate `model.onnx.data` file: auto = only when protobuf's 2 GB limit requires it.
    external_data: Literal["auto", "always", "never"] = "auto"


class OptimizeOptions(Strict):
    simplifier: Literal["onnxslim", "onnxsim", "none"] = "onnxslim"


def _default_tolerances() -> dict[str, Tolerance]:
    return {
        "fp32": Tolerance(min_cosine=0.9999, max_abs=1e-2, min_top1_agreement=1.0),
        "fp16": Tolerance(min_cosine=0.999, min_top1_agreement=0.9),
        "int8": Tolerance(min_cosine=0.99, min_top1_agreement=0.9),
    }


class Latency(Strict):
    """Latency of every artifact (and of the FP32 ONNX in ONNX Runtime, the baseline), each timed in its own
    process on a fixed batch cut from the verification samples: `warmup` calls, then `runs` timed calls."""

    enabled: bool = True
    runs: int = Field(50, ge=5)
    warmup: int = Field(10, ge=0)
    batch: int = Field(1, ge=1)  # along dim 0 of every input; must fit `dims` of a symbolic first dim
    timeout_s: float = Field(120.0, gt=0)  # per measurement (one child process: load, warm-up, timed runs)


class CheckOptions(Strict):
    """The check stage: per-target operator support (`convertctl check`) right after export."""

    # true: a target runtime judged "unsupported" stops the whole run (exit 3) before optimize/calibration;
    # false: only that runtime's targets become "error" artifacts, the others are built
    fail_fast: bool = False


class Regression(Strict):
    """How much worse than a baseline run `convertctl diff` accepts (exit 4 for accuracy, 5 for latency)."""

    max_cosine_drop: float = Field(0.001, ge=0)  # per output, of the accuracy gate's comparison
    max_top1_agreement_drop: float = Field(0.01, ge=0, le=1)
    max_accuracy_drop: float = Field(0.005, ge=0, le=1)  # labelled top-1 accuracy, as a fraction
    # p50 latency increase, as a fraction, ON TOP OF the noise both runs' own measurements show ((p90-p50)/p50)
    max_latency_increase: float = Field(0.10, ge=0)


class Verify(Strict):
    tolerances: dict[Literal["fp32", "fp16", "int8"], Tolerance] = Field(default_factory=_default_tolerances)
    latency: Latency = Field(default_factory=Latency)
    regression: Regression = Field(default_factory=Regression)

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
    version: Literal[1] = RECIPE_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    source: Source
    inputs: list[InputSpec] = Field(default_factory=list)
    dims: dict[str, DimRange] = Field(default_factory=dict)
    samples: Samples = Field(default_factory=Samples)
    export: ExportOptions = Field(default_factory=ExportOptions)
    optimize: OptimizeOptions = Field(default_factory=OptimizeOptions)
    calibration: CalibrationSpec | None = None
    quantize: QuantizeSpec = Field(default_factory=QuantizeSpec)
    check: CheckOptions = Field(default_factory=CheckOptions)
    targets: list[TargetSpec] = Field(default_factory=list)
    stages: list[Literal["export", "check", "optimize", "build"]] = Field(default_factory=lambda: list(STAGES))
    verify: Verify = Field(default_factory=Verify)
    output: Path | None = None

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
            return None if p is None else (p if p.is_absolute() else (base / p)).resolve()

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
    """The (min, opt, max) of every symbolic dim the recipe gives a range for in `dims`.

    Dims filled in with the default range (a symbolic dim the recipe names but gives no range for,
    or one read from an ONNX source) are left out: for the check they have no range."""
    return {name: (r.min, r.opt if r.opt is not None else r.min, r.max)
            for name, r in recipe.dims.items() if r.model_fields_set}


def latency_batch_problem(inputs, dims, batch: int) -> str | None:
    """Why `verify.latency.batch` does not fit the range `dims` gives a symbolic first dim, else None.

    A fixed first dim is not checked here: the measurement uses that dim instead (and says so)."""
    for spec in inputs:
        first = spec.shape[0]
        if isinstance(first, str) and first in dims and not dims[first].min <= batch <= dims[first].max:
            return (f"verify.latency.batch {batch} does not fit input {spec.name!r}: dims.{first} allows "
                    f"{dims[first].min}..{dims[first].max}")
    return None


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
        lines.append(f"{path or '(top level)'}: {msg}")
    return "; ".join(lines)


def parse_recipe(data: Any, base: Path, origin: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(
            f"{origin}: {format_validation_error(err)}",
            hint="see docs/recipe.md, or write a commented template with `convertctl recipe init`",
        ) from None
    return recipe.resolve_paths(base)


def load_recipe(path: Path) -> tuple[Recipe, str]:
    """Load and validate a recipe file. Returns the recipe and the sha256 of the file's bytes."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}", hint="check the path, or create one with `convertctl recipe init`")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(f"{path}: not valid YAML{where}: {problem}") from None
    recipe = parse_recipe(data, path.resolve().parent, origin=str(path))
    return recipe, hashlib.sha256(raw).hexdigest()


def format_recipe_content(recipe: Recipe) -> dict:
    """The validated recipe, defaults filled in, as plain JSON data (recorded in the manifest)."""
    return recipe.model_dump(mode="json")
