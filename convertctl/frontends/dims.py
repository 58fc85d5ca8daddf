"""The recipe's names on an exported ONNX's dynamic dims (tf2onnx writes `unk__N`, paddle2onnx
`p2o.DynamicDimension.N`; an ONNX source keeps whatever it had unless the recipe names its inputs' dims)."""

from __future__ import annotations

import re
from pathlib import Path


def name_dynamic_dims(onnx_path: Path, inputs) -> dict[str, str]:
    """Give the ONNX's dynamic dims the recipe's names; returns {old dim_param: new name}.

    Inputs are renamed by position; an output dim that had one of the inputs' old names gets the new one,
    and an unnamed dynamic first dim of an output takes the inputs' common batch name."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)  # external weights stay where they are
    declared = {spec.name: list(spec.shape) for spec in inputs}
    renamed: dict[str, str] = {}
    changed = False
    for value in model.graph.input:
        shape = declared.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if shape is None or len(shape) != len(dims):
            continue
        for dim, want in zip(dims, shape, strict=True):
            if isinstance(want, str) and not (dim.HasField("dim_value") and dim.dim_value > 0):
                if dim.dim_param and dim.dim_param != want:
                    renamed[dim.dim_param] = want
                changed = changed or dim.dim_param != want
                dim.dim_param = want  # also replaces a -1 / 0 dim_value (a oneof): unnamed dynamic
    firsts = {s[0] for s in declared.values() if s and isinstance(s[0], str)}
    batch = next(iter(firsts)) if len(firsts) == 1 else None
    outputs = {value.name for value in model.graph.output}
    for value in [*model.graph.output, *model.graph.value_info]:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                continue
            if dim.dim_param in renamed:
                dim.dim_param = renamed[dim.dim_param]
                changed = True
            elif axis == 0 and batch and value.name in outputs and _converter_dim(dim.dim_param):
                changed = changed or dim.dim_param != batch
                dim.dim_param = batch  # unnamed, or a converter's DynamicDimension.N / unk__N
    if changed:
        onnx.save(model, str(onnx_path))
    return renamed


def _converter_dim(name: str) -> bool:
    """A dim name no user chose: empty, paddle2onnx's DynamicDimension.N, tf2onnx's unk__N."""
    return not name or not name.isidentifier() or re.fullmatch(r"unk__\d+", name) is not None
