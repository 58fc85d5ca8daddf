"""Optimization profiles (min/opt/max shape of every dynamic input) from the recipe's `dims`.

TensorRT needs one profile for a network with dynamic inputs; each symbolic dim takes its range from
`dims.NAME` {min, opt, max}. A dim the recipe does not give a range for takes the recipe default
(min 1, opt 1, max 8) and the profile says so, because an engine built for the wrong range fails at run
time with "shape outside the profile" on the deployment machine, far from the build.

The ONNX's open dims (a name, "?", "", or a -1/0 dim value) are named as everywhere else in convertctl
(data/dims.py: the recipe's name for it, else `batch` at axis 0 and `<input>_<axis>`), and an input the ONNX
leaves open needs shapes in the profile even when the recipe fixes every one of its dims (min = opt = max).
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
    open: bool = False  # the ONNX leaves a dim of this input open (the recipe may still fix it)
    dtype: str | None = None  # the ONNX's element type (model.describe's name), when known

    @property
    def dynamic(self) -> bool:
        """A dim of it has a range (a symbolic name)."""
        return any(isinstance(d, str) for d in self.dims)

    @property
    def shaped(self) -> bool:
        """The engine needs its shapes in the profile (trtexec --minShapes/--optShapes/--maxShapes): a dim has a
        range, or the ONNX leaves one open that the recipe fixes."""
        return self.open or self.dynamic

    def to_dict(self) -> dict:
        return {"name": self.name, "dims": list(self.dims), "min": list(self.min), "opt": list(self.opt),
                "max": list(self.max)}


@dataclass
class Profiles:
    """The shapes of every input; `shaped` ones (a range, or a dim the ONNX leaves open) go into the optimization
    profile, static ones need none."""

    inputs: list[InputProfile]
    notes: list[str] = field(default_factory=list)  # e.g. a dim whose range is the default, not the recipe's

    @property
    def dynamic(self) -> list[InputProfile]:
        return [p for p in self.inputs if p.dynamic]

    @property
    def shaped(self) -> list[InputProfile]:
        """Every input the optimization profile (and trtexec's shape flags) must name."""
        return [p for p in self.inputs if p.shaped]

    def to_dict(self) -> dict:
        return {"inputs": [p.to_dict() for p in self.inputs], "dynamic": [p.name for p in self.dynamic],
                "shaped": [p.name for p in self.shaped], "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: dict) -> Profiles:
        """The profiles a kit was written with (its kit.json `profiles`, to_dict's form)."""
        shaped = set(data.get("shaped", data.get("dynamic", [])))
        inputs = []
        for p in data["inputs"]:
            dims = tuple(p["dims"])
            dynamic = any(isinstance(d, str) for d in dims)
            inputs.append(InputProfile(p["name"], tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]), dims,
                                       open=p["name"] in shaped and not dynamic))
        return cls(inputs, list(data.get("notes", [])))


def _fixed(d) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and d > 0


def compute_profiles(model_inputs, recipe_inputs, dims: dict[str, tuple[int, int, int]],
                     explicit: set[str] | None = None) -> Profiles:
    """Shapes per input of the ONNX to build.

    model_inputs: the ONNX graph's inputs (objects with `name` and `shape`: ints, dim names, "?" or -1 for unnamed
    ones; `dtype` when they have one). recipe_inputs: the run's input specs (`name`, `shape`), which name the
    ONNX's open dims and may fix them. dims: (min, opt, max) per symbolic dim; explicit: the dims the recipe
    itself gave a range for."""
    from convertctl.data.dims import dim_name

    by_name = {spec.name: list(spec.shape) for spec in recipe_inputs}
    explicit = set(dims) if explicit is None else explicit
    defaulted: list[str] = []
    profiles = []
    for tensor in model_inputs:
        declared = by_name.get(tensor.name)
        raw = list(tensor.shape)
        open_dims = [i for i, d in enumerate(raw) if not _fixed(d)]
        # convertctl's name of every open dim (data/dims.py): a -1 is as open as a "?"
        shape = [d if _fixed(d) else dim_name(tensor.name, i, d) for i, d in enumerate(raw)]
        if declared is not None and len(declared) == len(shape):
            # the recipe's spec names the open dims and may fix one the ONNX leaves open
            shape = [r if isinstance(r, int) or not _fixed(m) else m for m, r in zip(raw, declared, strict=True)]
        lows, opts, highs, names = [], [], [], []
        for i, d in enumerate(shape):
            if isinstance(d, int):
                lows.append(d), opts.append(d), highs.append(d), names.append(d)
                continue
            if d not in dims:
                unnamed = raw[i] in ("?", "", None) or isinstance(raw[i], int)
                what = "unnamed" if unnamed else repr(raw[i])
                raise UsageError(
                    f"input {tensor.name!r} dim {i} is dynamic ({what}) and has no range",
                    hint=f"give its range as {d!r} in the recipe's dims ({{min, opt, max}}) or with --dim {d}=MIN:OPT:MAX, "
                         f"or the input's shape in the recipe's inputs[].shape")
            low, opt, high = dims[d]
            if d not in explicit and d not in defaulted:
                defaulted.append(d)
            lows.append(low), opts.append(opt), highs.append(high), names.append(d)
        profiles.append(InputProfile(tensor.name, tuple(lows), tuple(opts), tuple(highs), tuple(names),
                                     open=bool(open_dims), dtype=getattr(tensor, "dtype", None)))
    notes = [f"dims.{d}: no range in the recipe, so the default min {dims[d][0]} opt {dims[d][1]} max {dims[d][2]} "
             f"is used; the engine rejects other sizes of {d}" for d in defaulted]
    return Profiles(profiles, notes)


def shape_text(shape) -> str:
    """trtexec's shape grammar: dims joined by 'x' (1x3x224x224)."""
    return "x".join(str(int(d)) for d in shape)
