"""pnnx, ONNX -> ncnn `.param`/`.bin`, in a child process, in a scratch folder of the artifact's folder.

pnnx is a native binary inside the `pnnx` wheel (`pnnx/pnnx`); its Python wrapper (`pnnx.convert`) imports torch
and only builds the same command line, so the binary is called directly. Three facts measured on pnnx 20261020
shape this module:
- it writes everything beside its input (`.pnnx.param`, `.pnnx.onnx`, `.pnnxsim.onnx`, `_pnnx.py`, `_ncnn.py`, the
  ncnn files), so the ONNX is copied into a scratch folder first and only the ncnn files leave it;
- it exits 0 even when it fails (a missing file, an operator it cannot convert): success is the two files, and
  an operator it cannot convert is a `todo <op>` line in its log, written into the `.param` as a layer type ncnn
  does not have;
- `fp16=1` (its default) writes FP16 weights into the `.bin`, flushing every weight below 2^-14 to zero: convertctl
  always runs `fp16=0` and writes FP16 weights itself (fp16.py).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from convertctl.errors import ConvertctlError, MissingDependencyError

PARAM, BIN = "model.ncnn.param", "model.ncnn.bin"
# pnnx's element-type suffixes for inputshape=
_PNNX_TYPES = {1: "f32", 10: "f16", 11: "f64", 6: "i32", 7: "i64", 5: "i16", 3: "i8", 2: "u8", 16: "bf16"}


@dataclass
class Conversion:
    """What one pnnx run produced (in `folder`) and the command that reproduces it."""

    folder: Path
    command: list[str]  # as run in the scratch folder, the model named model.onnx
    seconds: float
    log: str
    todo: list[str] = field(default_factory=list)  # the operators pnnx has no ncnn conversion for
    layer_types: list[str] = field(default_factory=list)  # the layer types of the written .param

    @property
    def ok(self) -> bool:
        return (self.folder / PARAM).is_file() and (self.folder / BIN).is_file()


def pnnx_binary() -> Path:
    """The pnnx executable of the installed wheel, found without importing `pnnx` (its __init__ imports torch)."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("pnnx", "ncnn")
    exe = Path(next(iter(spec.submodule_search_locations))) / "pnnx"
    if not exe.is_file():
        raise ConvertctlError(f"the installed pnnx wheel has no converter binary at {exe}",
                              hint="reinstall it: pip install 'convertctl[ncnn]'")
    return exe


def shape_arg(shapes: list[tuple[list[int], int]]) -> str:
    """`[1,3,224,224]f32,[1,8]i64` from (shape, ONNX element type) per input."""
    return ",".join(f"[{','.join(str(d) for d in shape)}]{_PNNX_TYPES.get(elem, 'f32')}" for shape, elem in shapes)


def input_shapes(graph_inputs: list[tuple[str, int, list]], specs: list[dict], dims: dict[str, tuple]
                 ) -> tuple[list[tuple[list[int], int]], list[tuple[list[int], int]] | None, list[str]]:
    """The shapes pnnx traces with: (inputshape, inputshape2 or None, notes).

    `graph_inputs`: (name, ONNX element type, dims: int or a symbolic name or None) per graph input; `specs`: the
    run's input specs ({name, shape, batch_axis}); `dims`: (min, opt, max) per symbolic dim. The batch axis is 1
    (ncnn has no batch: a Mat is one sample). Every other dynamic dim traces at its opt value, and at its max
    (else its min) in `inputshape2`, which tells pnnx the dim is dynamic: ncnn then runs any size the graph allows.
    """
    by_name = {s["name"]: s for s in specs}
    first, second, notes, dynamic = [], [], [], False
    for name, elem, shape in graph_inputs:
        spec = by_name.get(name, {})
        spec_shape = list(spec.get("shape") or shape)
        axis = spec.get("batch_axis", 0) if spec else 0
        a, b = [], []
        for i, d in enumerate(shape):
            sd = spec_shape[i] if i < len(spec_shape) else d
            if isinstance(sd, int) and sd > 0:
                a.append(sd)
                b.append(sd)
            elif i == axis:
                a.append(1)
                b.append(1)
            elif isinstance(sd, str) and sd in dims:
                lo, opt, hi = dims[sd]
                a.append(opt)
                b.append(hi if hi != opt else lo)
                dynamic |= b[-1] != a[-1]
            else:
                raise ConvertctlError(f"ncnn: input {name!r} has a dynamic dim {sd or '?'} (axis {i}) without a "
                                      "size to convert at", hint="give it in the recipe's inputs/dims or with --dim")
        if isinstance(shape[axis] if axis is not None and axis < len(shape) else None, int) and shape[axis] != 1:
            notes.append(f"input {name!r} has a fixed batch of {shape[axis]}: ncnn runs one sample at a time")
        first.append((a, elem))
        second.append((b, elem))
    return first, (second if dynamic else None), notes


def command(shapes, shapes2, fp16: bool, optlevel: int) -> list[str]:
    """The pnnx arguments after the binary, relative to the folder holding model.onnx."""
    cmd = ["model.onnx", f"inputshape={shape_arg(shapes)}"]
    if shapes2:
        cmd.append(f"inputshape2={shape_arg(shapes2)}")
    return cmd + [f"fp16={int(fp16)}", f"optlevel={optlevel}", "device=cpu",
                  f"ncnnparam={PARAM}", f"ncnnbin={BIN}"]


def run_pnnx(onnx_path: Path, scratch: Path, args: list[str], timeout: float,
             shapes: list[tuple[list[int], int]] | None = None) -> Conversion:
    """Copy the ONNX (and its external data) into `scratch` as model.onnx and run pnnx there, its output to a log.
    A timeout or a native abort raises ConvertctlError naming the operators pnnx reported, or for a crash (given the
    traced `shapes`) the operators whose one-node conversion crashes it too (isolate.py)."""
    from convertctl.model import copy_model
    from convertctl.processes import run

    exe = pnnx_binary()
    scratch.mkdir(parents=True, exist_ok=True)
    copy_model(onnx_path, scratch)
    log_path = scratch / "pnnx.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        try:
            done = run([str(exe), *args], timeout=timeout, cwd=scratch, stdout=log, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            text = log_path.read_text(errors="replace")
            raise ConvertctlError(f"pnnx did not finish converting in {timeout:g} s" + _where(text),
                                  hint="raise convert_timeout_s for this target") from None
    seconds = time.perf_counter() - t0
    text = _clean(log_path.read_text(errors="replace"))
    conv = Conversion(scratch, [exe.name, *args], round(seconds, 3), text, todo=todo_ops(text))
    if done.returncode != 0:
        how = (f"was killed by signal {-done.returncode}" if done.returncode < 0 else
               f"exited with code {done.returncode}")
        culprits = []
        if shapes is not None and not conv.todo:
            from convertctl.targets.ncnn.isolate import crashing_operators

            culprits = crashing_operators(onnx_path, shapes, scratch / "isolate")
        where = (f"; converted alone, {', '.join(culprits)} crash{'es' if len(culprits) == 1 else ''} it too"
                 if culprits else "")
        raise ConvertctlError(f"pnnx {how} while converting the model" + _where(text) + where,
                              hint=_todo_hint(conv.todo) or ("replace that operator before export, or convert "
                                                             "with another ncnn toolchain" if culprits else None))
    if conv.ok:
        conv.layer_types = param_layer_types((scratch / PARAM).read_text())
    return conv


def todo_ops(log: str) -> list[str]:
    """The operators pnnx reports it has no ncnn conversion for (`todo <op>` lines), in order, once each."""
    return list(dict.fromkeys(re.findall(r"^todo (\S+)", log, re.M)))


def param_layer_types(param: str) -> list[str]:
    """The layer types of an ncnn .param text (magic, counts, then one layer per line)."""
    lines = [ln.split() for ln in param.splitlines()[2:] if ln.strip()]
    return [ln[0] for ln in lines]


def blob_graph(param: str) -> list[tuple[str, str, list[str], list[str]]]:
    """(type, name, input blobs, output blobs) per layer of an ncnn .param text."""
    layers = []
    for line in param.splitlines()[2:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        layers.append((kind, name, parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]))
    return layers


def _clean(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _where(log: str) -> str:
    """Where in the conversion pnnx stopped: the operators it reported, else its last pass and step."""
    todo = todo_ops(_clean(log))
    if todo:
        return f"; it could not convert {', '.join(todo)}"
    steps = [ln.strip() for ln in _clean(log).splitlines() if ln.startswith("#####") or "..." in ln]
    return f" (last step: {steps[-1].strip('# ').split('...')[0].strip()})" if steps else ""


def _todo_hint(todo: list[str]) -> str | None:
    return (f"replace {', '.join(todo)} before export, or register a custom ncnn layer for it" if todo else None)


def discard(scratch: Path) -> None:
    """The scratch folder goes once the ncnn files are out (it holds pnnx's intermediates and the ONNX copy)."""
    shutil.rmtree(scratch, ignore_errors=True)


def onnx_nodes_of(op: str, nodes: list[tuple[str, str]]) -> list[str]:
    """The ONNX nodes ((name, op_type) pairs) a pnnx operator name stands for: the same op type (pnnx keeps an
    ONNX op it cannot map under its own name), or the op type its torch-style name spells (`F.grid_sample` ->
    GridSample, `torch.cumsum` -> CumSum)."""
    def norm(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    plain = op.split(".")[-1]
    return [name for name, kind in nodes if kind == op or norm(kind) == norm(plain)]


def unknown_layers(layer_types: list[str]) -> list[str]:
    """The layer types of a .param that the installed ncnn has no layer for (pnnx leaves an operator it could not
    convert under its own name: `Det`, `pnnx.Expression`)."""
    ncnn = __import__("ncnn")
    return [t for t in dict.fromkeys(layer_types) if ncnn.create_layer(t) is None]


def failure(conv: Conversion, onnx_nodes: list[tuple[str, str]]) -> str | None:
    """One line naming what pnnx could not convert, with the ONNX nodes it maps to; None when it converted all."""
    if not conv.ok:
        return "pnnx wrote no ncnn model" + (_where(conv.log) or "")
    bad = conv.todo or unknown_layers(conv.layer_types)
    if not bad:
        return None
    parts = []
    for op in bad:
        named = onnx_nodes_of(op, onnx_nodes)
        parts.append(f"{op} (ONNX node{'s' if len(named) > 1 else ''} {', '.join(named[:5])}"
                     f"{' ...' if len(named) > 5 else ''})" if named else op)
    return (f"pnnx has no ncnn conversion for {'; '.join(parts)}: it leaves "
            f"{'them' if len(bad) > 1 else 'it'} as a layer type ncnn does not have")
