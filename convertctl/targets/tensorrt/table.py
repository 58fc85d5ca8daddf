"""The TensorRT support table (data/tensorrt_support.yaml): its schema, loading, and the table
section and release a requested TensorRT version selects. The judge is check.py."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

TABLE_FILE = "tensorrt_support.yaml"
TABLE_PATH = Path(__file__).with_name("data") / TABLE_FILE

# ---------------------------------------------------------------------------------------------------------
# The table's schema

TrtType = Literal["FP32", "FP16", "BF16", "INT32", "INT64", "INT8", "INT4", "FP8", "FP4", "UINT8", "BOOL"]
ConditionKind = Literal[
    "constant_input",  # input `input` must be an initializer (`level: initializer`) or foldable to a constant
    "constant_value",  # input `input`, when present, must be a constant equal to `equals`
    "zero_input",  # input `input`, when present, must be a constant of zeros
    "max_value",  # input `input`, when constant, must be <= `max`
    "rank",  # inputs `inputs` must have one of `ranks`
    "static_shape",  # inputs `inputs` must have fully static shapes
    "static_axis_dim",  # the dim of input `input` at attribute `attr` must be static
    "input_dtype",  # input `input`, when present, must have one of `types`
    "absent_input",  # inputs `inputs` must be absent (unsupported)
    "absent_output",  # outputs `outputs` must be absent (unsupported)
    "attr_absent",  # attributes `attrs` must not be set (unsupported)
    "attr_in",  # attribute `attr` (default `default`) must be one of `values`
    "attr_all_ones",  # attribute `attr` must be empty or all ones
    "pads_symmetric",  # attribute `attr` (pads): begin == end on every axis
    "rnn_activations",  # bidirectional: the same activations both ways (`per_direction` per direction)
    "if_branches",  # If: branch outputs differ in name and agree in rank
    "resize_axes",  # Resize: a tensor `scales` needs `axes` = 0..rank-1 (or absent)
    "last_dim",  # the last dim of input `input` must equal `equals`
    "manual",  # not checkable statically: reported as a note
]
Handling = Literal["native", "cast", "io_only", "quantized"]
_VERSION_RE = r"^\d+\.\d+$"


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ConditionKind
    text: str
    input: int | None = None
    inputs: list[int] | None = None
    outputs: list[int] | None = None
    attr: str | None = None
    attrs: list[str] | None = None
    values: list[Any] | None = None
    default: Any = None
    ranks: list[int] | None = None
    level: Literal["initializer", "foldable"] | None = None
    equals: Any = None
    max: float | None = None
    per_direction: int | None = None
    types: list[TrtType] | None = None
    since: str | None = Field(default=None, pattern=_VERSION_RE)
    until: str | None = Field(default=None, pattern=_VERSION_RE)
    source: list[str] | None = None
    suggestion: str | None = None

    @model_validator(mode="after")
    def _parameters(self) -> Condition:
        need = {
            "constant_input": ("input", "level"),
            "constant_value": ("input", "equals", "level"),
            "zero_input": ("input",),
            "max_value": ("input", "max"),
            "rank": ("inputs", "ranks"),
            "static_shape": ("inputs",),
            "static_axis_dim": ("input", "attr"),
            "input_dtype": ("input", "types"),
            "absent_input": ("inputs",),
            "absent_output": ("outputs",),
            "attr_absent": ("attrs",),
            "attr_in": ("attr", "values"),
            "attr_all_ones": ("attr",),
            "pads_symmetric": ("attr",),
            "rnn_activations": ("per_direction",),
            "last_dim": ("input", "equals"),
        }.get(self.kind, ())
        missing = [name for name in need if getattr(self, name) is None]
        if missing:
            raise ValueError(f"condition kind {self.kind!r} needs {', '.join(missing)}")
        return self


class OpOverride(BaseModel):
    """The fields of an operator entry that differ in another version section (e.g. "11")."""

    model_config = ConfigDict(extra="forbid")

    supported: bool | None = None
    types: list[TrtType] | None = None
    types_since: dict[TrtType, str] | None = None
    typed_inputs: list[int] | None = None
    typed_outputs: list[int] | None = None
    since: str | None = Field(default=None, pattern=_VERSION_RE)
    conditions: list[Condition] | None = None
    notes: list[str] | None = None
    reason: str | None = None
    suggestion: str | None = None
    source: list[str] | None = None


class OpEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    supported: bool
    types: list[TrtType] | None = None  # None: not documented (dtypes are not checked)
    types_since: dict[TrtType, str] = Field(default_factory=dict)
    typed_inputs: list[int] | None = None  # None: input 0 and the inputs of input 0's ONNX type
    typed_outputs: list[int] = Field(default_factory=list)
    since: str | None = Field(default=None, pattern=_VERSION_RE)
    conditions: list[Condition] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    reason: str | None = None
    suggestion: str | None = None
    source: list[str] = Field(min_length=1)
    overrides: dict[str, OpOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> OpEntry:
        for value in self.types_since.values():
            if not re.match(_VERSION_RE, value):
                raise ValueError(f"types_since needs release numbers like '10.12', got {value!r}")
        if not self.supported and (self.types or self.conditions):
            raise ValueError("an unsupported operator has no types or conditions")
        return self


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    url: str = Field(pattern=r"^https://")
    revision: str
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    used_for: str


class VersionSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str
    releases: str
    inherits: str | None = None
    matrix_release: str = Field(pattern=_VERSION_RE)
    opset_min: int
    opset_max: int
    opset_confirmed: bool
    opset_max_by_release: dict[str, int] = Field(default_factory=dict)
    source: list[str]
    notes: list[str] = Field(default_factory=list)


class DtypeRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trt: TrtType
    handling: Handling
    since: str | None = Field(default=None, pattern=_VERSION_RE)
    note: str | None = None
    source: list[str]


class SupportTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1]
    name: Literal["tensorrt_support"]
    taken_on: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    covers: list[str]
    taken_from: str
    sources: dict[str, Source]
    versions: dict[str, VersionSection]
    dtypes: dict[str, DtypeRule]
    operators: dict[str, OpEntry]
    _resolved: dict[tuple[str, str], OpEntry | None] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> SupportTable:
        problems = []
        if sorted(self.covers) != sorted(self.versions):
            problems.append(f"covers {self.covers} but versions has {sorted(self.versions)}")
        for key, section in self.versions.items():
            if section.inherits is not None and section.inherits not in self.versions:
                problems.append(f"versions.{key} inherits unknown section {section.inherits!r}")
            problems += [f"versions.{key}: unknown source {s!r}" for s in section.source if s not in self.sources]
        for name, rule in self.dtypes.items():
            problems += [f"dtypes.{name}: unknown source {s!r}" for s in rule.source if s not in self.sources]
        for op, entry in self.operators.items():
            refs = list(entry.source)
            refs += [s for c in entry.conditions for s in (c.source or [])]
            for key, override in entry.overrides.items():
                if key not in self.versions:
                    problems.append(f"operators.{op}: override for unknown version section {key!r}")
                refs += list(override.source or [])
            problems += [f"operators.{op}: unknown source {s!r}" for s in refs if s not in self.sources]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def entry(self, op_type: str, section: str) -> OpEntry | None:
        """The operator's entry as it holds for one version section (overrides applied)."""
        key = (op_type, section)
        if key not in self._resolved:
            self._resolved[key] = self._entry(op_type, section)
        return self._resolved[key]

    def _entry(self, op_type: str, section: str) -> OpEntry | None:
        base = self.operators.get(op_type)
        if base is None:
            return None
        override = base.overrides.get(section)
        if override is None:
            return base
        merged = base.model_dump()
        merged.update(override.model_dump(exclude_unset=True))
        merged["overrides"] = {}
        return OpEntry.model_validate(merged)


@lru_cache(maxsize=4)
def load_table(path: str | None = None) -> SupportTable:
    """Read and validate the support table (the packaged one unless `path` is given)."""
    import yaml

    if path is None:
        from importlib import resources

        text = resources.files(__package__).joinpath("data", TABLE_FILE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return SupportTable.model_validate(yaml.safe_load(text))


# ---------------------------------------------------------------------------------------------------------
# Version selection


@dataclass(frozen=True)
class Selection:
    section: str  # "10" | "11": the table section used
    release: tuple[int, int] | None  # the exact release when known (given as "10.8", or installed)
    installed: str | None  # the installed TensorRT's version string, if any
    parser: bool  # run TensorRT's ONNX parser (installed and of the judged major version)

    @property
    def label(self) -> str:
        """The judged TensorRT, short: "10.x", "10.8", "10.8.0.43"."""
        if self.installed and self.parser:
            return self.installed
        if self.release is not None:
            return f"{self.release[0]}.{self.release[1]}"
        return f"{self.section}.x"

    @property
    def description(self) -> str:
        """TargetReport.version: the release judged and the table section used."""
        if self.installed and self.parser:
            return f"{self.installed} (installed; table section {self.section}.x)"
        if self.release is not None:
            return f"{self.release[0]}.{self.release[1]} (table section {self.section}.x)"
        return f"{self.section}.x"


def release_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def installed_tensorrt_version() -> str | None:
    """The installed TensorRT's version, without importing it; None when it is not installed."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    from importlib import metadata

    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt_cu13_bindings",
                 "tensorrt_cu12_bindings"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:  # a module without distribution metadata (e.g. from a tar install on PYTHONPATH)
        import tensorrt  # noqa: PLC0415  (only reached when find_spec found it)

        return str(tensorrt.__version__)
    except Exception:  # noqa: BLE001 - a broken installation: judged from the table alone
        return None


def select_version(version: str, table: SupportTable, installed: str | None) -> Selection:
    text = str(version).strip().lower().removesuffix(".x")
    if text == "auto":
        text = ".".join(installed.split(".")[:2]) if installed else "10"
    if re.fullmatch(r"\d+", text):
        release = None
        section = text
    elif re.fullmatch(r"\d+\.\d+(\.\d+)*", text):
        release = release_tuple(text)
        section = str(release[0])
    else:
        raise ValueError(f"TensorRT version {version!r}: give 10, 11, a release such as 10.8, or auto")
    if section not in table.versions:
        raise ValueError(f"TensorRT {version}: the support table covers {', '.join(sorted(table.versions))}")
    parser = installed is not None and installed.split(".")[0] == section
    if parser and release is None:
        release = release_tuple(installed)
    return Selection(section=section, release=release, installed=installed, parser=parser)


def judged_by(table: SupportTable) -> str:
    return f"support table {TABLE_FILE} (taken from {table.taken_from} on {table.taken_on})"
