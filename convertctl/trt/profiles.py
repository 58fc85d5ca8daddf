"""Optimization profiles (min/opt/max shape of every dynamic input) from the recipe's `dims`.

TensorRT needs one profile for a network with dynamic inputs; each symbolic dim takes its range from
`dims.NAME` {min, opt, max}. A dim the recipe does not give a range for takes the recipe default
(min 1, opt 1, max 8) and the profile says so, because an engine built for the wrong range fails at run
time with "shape outside the profile" on the deployment machine, far from the build.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from convertctl.errors import UsageError


@dataclass(frozen=True)
class InputProfile:
    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    dims: tuple[int | str, ...]  # the input's declared shape: ints, or the symbolic names behind the ranges

    @property
    def dynamic(self) -> bool:
        return any(isinstance(d, str) for d in self.dims)

    def to_dict(self) -> dict:
        return {"name": self.name, "dims": list(self.dims), "min": list(self.min), "opt": list(self.opt),
                "max": list(self.max)}


@dataclass
class Profiles:
    """The shapes of every input; `dynamic` ones need an optimization profile (static ones need none)."""

    inputs: list[InputProfile]
    notes: list[str] = field(default_factory=list)  # e.g. a dim whose range is the default, not the recipe's

    @property
    def dynamic(self) -> list[InputProfile]:
        return [p for p in self.inputs if p.dynamic]

    def to_dict(self) -> dict:
        return {"inputs": [p.to_dict() for p in self.inputs], "dynamic": [p.name for p in self.dynamic],
                "notes": list(self.notes)}


def compute_profiles(model_inputs, recipe_inputs, dims: dict[str, tuple[int, int, int]],
                     explicit: set[str] | None = None) -> Profiles:
    """Shapes per input of the ONNX to build.

    model_inputs: the ONNX graph's inputs (objects with `name` and `shape`: ints, dim names, "?" unnamed).
    recipe_inputs: the run's input specs (`name`, `shape`), which name the ONNX's unnamed dims.
    dims: (min, opt, max) per symbolic dim; explicit: the dims the recipe itself gave a range for."""
    by_name = {spec.name: list(spec.shape) for spec in recipe_inputs}
    explicit = set(dims) if explicit is None else explicit
    defaulted: list[str] = []
    profiles = []
    for tensor in model_inputs:
        declared = by_name.get(tensor.name)
        shape = list(tensor.shape)
        if declared is not None and len(declared) == len(shape):
            # the recipe's spec names unnamed dims and may fix a dim the ONNX leaves open
            shape = [r if isinstance(r, int) or not isinstance(m, int) else m for m, r in zip(shape, declared, strict=True)]
        lows, opts, highs, names = [], [], [], []
        for i, d in enumerate(shape):
            if isinstance(d, int):
                lows.append(d), opts.append(d), highs.append(d), names.append(d)
                continue
            if d == "?" or d not in dims:
                what = "unnamed" if d == "?" else repr(d)
                raise UsageError(
                    f"input {tensor.name!r} dim {i} is dynamic ({what}) and has no range",
                    hint=f"give the input's shape with a named dim (--input {tensor.name}:1x3x224x224 or recipe "
                         "inputs[].shape) and its range in the recipe's dims: {min, opt, max}")
            low, opt, high = dims[d]
            if d not in explicit and d not in defaulted:
                defaulted.append(d)
            lows.append(low), opts.append(opt), highs.append(high), names.append(d)
        profiles.append(InputProfile(tensor.name, tuple(lows), tuple(opts), tuple(highs), tuple(names)))
    notes = [f"dims.{d}: no range in the recipe, so the default min {dims[d][0]} opt {dims[d][1]} max {dims[d][2]} "
             f"is used; the engine rejects other sizes of {d}" for d in defaulted]
    return Profiles(profiles, notes)


def shape_text(shape) -> str:
    """trtexec's shape grammar: dims joined by 'x' (1x3x224x224)."""
    return "x".join(str(int(d)) for d in shape)
