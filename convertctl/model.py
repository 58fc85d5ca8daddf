"""The ONNX model in flight (ModelInFlight, what every stage passes on) and reading ONNX files: where a model
is on disk, what its inputs and outputs look like."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from convertctl.errors import SourceModelError, require

if TYPE_CHECKING:
    import numpy as np

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}
TWO_GB = 2**31


@dataclass
class TensorInfo:
    name: str
    shape: list[int | str]  # symbolic dims by name; an unnamed dynamic dim becomes "?"
    dtype: str


@dataclass
class ModelIO:
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    opset: int
    ir_version: int
    node_count: int
    op_counts: dict[str, int]


@dataclass(frozen=True)
class ModelInFlight:
    """The ONNX the next stage starts from, and the numbers every later step is compared with."""

    onnx: Path  # inside the output folder
    label: str  # "exported", then "optimized" once a simplifier changed it
    outputs: tuple[np.ndarray, ...]  # ONNX Runtime's outputs of this model on the samples: the parity baseline
    output_names: tuple[str, ...]
    reference: tuple[np.ndarray, ...]  # the source framework's outputs: what every artifact's gate compares with
    reference_name: str



def require_regular_file(path: Path) -> None:
    """A model path must name a regular file: a folder, FIFO or device is refused before it is opened (reading
    a FIFO would hang)."""
    if not path.exists():
        raise SourceModelError(f"model file not found: {path}")
    if not path.is_file():
        raise SourceModelError(f"{path} is not a regular file (a folder, pipe or device), so not a model file",
                               hint="give the path of the model file itself")


def load_proto(path: Path, with_weights: bool = False):
    """Load an ONNX file; a missing, empty or corrupt file becomes one clear error. With `with_weights` the
    external data is read too, after external_data_files() has confined it to the model's folder."""
    onnx = require("onnx", "onnx")
    path = Path(path)
    require_regular_file(path)
    if path.stat().st_size == 0:  # protobuf parses b"" as an empty model: say what it is
        raise SourceModelError(f"{path} is an empty file (0 bytes), not an ONNX model",
                               hint="the file was not written completely: export or copy it again")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends: all mean "not an ONNX file"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceModelError(
            f"{path} is not a readable ONNX model ({first})",
            hint="check that the file is complete (not truncated) and really is an .onnx model",
        ) from None
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise SourceModelError(f"{path} is not an ONNX model (no graph and no IR version in it)",
                               hint="give an .onnx file (an onnx.ModelProto)")
    if with_weights:
        _load_external_data(path, proto)
    return proto


def _load_external_data(path: Path, proto) -> None:
    """Read every external tensor into the proto, from the files external_data_files() checked (not through
    onnx's loader: it refuses a symlink even inside the folder, and would resolve the location again)."""
    files = {ext.relative: ext.file for ext in external_data_files(path, proto)}  # raises before any read
    for tensor in _external_tensors(proto):
        info = {e.key: e.value for e in tensor.external_data}
        offset, length = int(info.get("offset") or 0), int(info["length"]) if info.get("length") else -1
        with open(files[Path(os.path.normpath(info["location"]))], "rb") as f:
            f.seek(offset)
            tensor.raw_data = f.read(length)
        del tensor.external_data[:]
        tensor.data_location = 0  # onnx.TensorProto.DEFAULT


def tensor_info(value) -> TensorInfo:
    """Name, shape (a dim_param name, or "?" for an unnamed dynamic dim) and dtype of an ONNX ValueInfoProto."""
    t = value.type.tensor_type
    shape: list[int | str] = []
    for d in t.shape.dim:
        shape.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return TensorInfo(value.name, shape, _ONNX_DTYPES.get(t.elem_type, f"onnx-type-{t.elem_type}"))


def describe(path: Path) -> ModelIO:
    proto = load_proto(path)
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}
    ops: dict[str, int] = {}
    for node in graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        ops[key] = ops.get(key, 0) + 1
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelIO(
        inputs=[tensor_info(i) for i in graph.input if i.name not in initializers],
        outputs=[tensor_info(o) for o in graph.output],
        opset=opset,
        ir_version=proto.ir_version,
        node_count=len(graph.node),
        op_counts=dict(sorted(ops.items())),
    )


def copy_model(path: Path, out_dir: Path, name: str = "model.onnx") -> list[Path]:
    """Copy an ONNX model and its external-data files into out_dir as `name` (the data files keep the locations
    the model references, sub-folders included); return the copies' paths relative to out_dir."""
    import shutil

    files = external_data_files(path)  # validated before anything is copied
    out_dir = Path(out_dir)
    shutil.copyfile(path, out_dir / name)
    copied = [Path(name)]
    for ext in files:
        target = out_dir / ext.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ext.file, target)  # the resolved file: a symlink swapped since the check is not followed
        copied.append(ext.relative)
    return copied


def companion_files(path: Path) -> list[Path]:
    """The model file plus the external-data files it references, as the model names them (each one checked by
    external_data_files: inside the model's folder, a regular file, large enough)."""
    return [Path(path)] + [Path(path).parent / ext.relative for ext in external_data_files(path)]


# ------------------------------------------------------------------------------------------ external data
# DESIGN: "external data stays inside the model's folder". Every reader of a user's ONNX (copying, hashing,
# onnx.load with weights, ONNX Runtime, OpenVINO, the checker) goes through external_data_files() first, so a
# location such as ../../etc/passwd, /etc/passwd or a symlink out of the folder is refused before a byte of
# it is read, and a FIFO (reading it would hang) or a device is never opened.

_EXTERNAL = 1  # onnx.TensorProto.EXTERNAL
_SAVE_HINT = ("keep the external data file(s) inside the model's folder and name them there with a relative "
              "location, e.g. onnx.save_model(model, 'model.onnx', save_as_external_data=True, "
              "location='model.onnx.data')")


@dataclass(frozen=True)
class ExternalFile:
    location: str  # as the model writes it
    relative: Path  # the same, normalised, relative to the model's folder
    file: Path  # the regular file it resolves to (symlinks followed), inside the model's folder
    size: int


def external_data_files(path: Path, proto=None) -> list[ExternalFile]:
    """The external-data files of the ONNX model at `path`, each checked before anything reads it.

    The rule: every tensor stored outside the .onnx names a relative `location` without `..`, which resolves
    (every symlink on the way followed) to a regular file inside the folder the model is in, and its
    `offset` + `length` lie within that file. Anything else is a SourceModelError (exit 2) naming the tensor."""
    path = Path(path)
    if proto is None:
        proto = load_proto(path)
    folder = Path(os.path.realpath(path.absolute().parent))
    found: dict[str, ExternalFile] = {}
    for tensor in _external_tensors(proto):
        entries = [(e.key, e.value) for e in tensor.external_data]
        locations = [v for k, v in entries if k == "location"] or [""]
        for loc in locations:
            if loc not in found:
                found[loc] = _confined(path, folder, tensor.name, loc)
        info = dict(entries)
        _check_range(path, tensor.name, found[info.get("location", "")], info)
    unique: dict[Path, ExternalFile] = {}
    for ext in found.values():  # "w.data" and "./w.data" are one file
        unique.setdefault(ext.relative, ext)
    return list(unique.values())


def _external_tensors(proto):
    """Every tensor whose data is stored outside the file: initializers (sparse too) and node attributes, in
    the main graph, its subgraphs and the model's functions (the places onnx and ONNX Runtime read from)."""

    def of_graph(g):
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in g.node:
            yield from of_node(node)

    def of_node(node):
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("sparse_tensor"):
                yield from (a.sparse_tensor.values, a.sparse_tensor.indices)
            if a.HasField("g"):
                yield from of_graph(a.g)
            for g in a.graphs:
                yield from of_graph(g)

    def all_tensors():
        yield from of_graph(proto.graph)
        for function in proto.functions:
            for node in function.node:
                yield from of_node(node)

    return [t for t in all_tensors() if t.HasField("data_location") and t.data_location == _EXTERNAL]


def _confined(path: Path, folder: Path, tensor: str, loc: str) -> ExternalFile:
    """The file `loc` names, once it is known to be a regular file inside `folder`."""
    import stat
    from pathlib import PurePosixPath, PureWindowsPath

    def refuse(why: str, hint: str = _SAVE_HINT):
        return SourceModelError(f"{path.name}: the external data of tensor {tensor!r} is at {loc!r}, {why}", hint=hint)

    if not loc:
        raise refuse("which names no file (the tensor has no `location`)")
    if "\x00" in loc:
        raise refuse("which is not a valid file name")
    posix, windows = PurePosixPath(loc), PureWindowsPath(loc)
    if posix.is_absolute() or windows.drive or windows.root:
        raise refuse("an absolute path: only files inside the model's folder are read")
    if ".." in posix.parts or ".." in windows.parts:
        raise refuse("a path with '..': only files inside the model's folder are read")
    resolved = Path(os.path.realpath(path.absolute().parent / posix))
    if not resolved.is_relative_to(folder):  # no '..', not absolute: only a symlink on the way leads out
        raise refuse(f"which is a symlink to {resolved}, outside the model's folder: only files inside it are read",
                     hint="copy the data file into the model's folder instead of linking to it")
    try:
        st = os.stat(resolved)  # stat, never open: opening a FIFO would block
    except OSError as exc:
        raise refuse(f"which is missing ({exc.strerror or exc})",
                     hint=f"keep it next to the model, in {path.parent}") from None
    if stat.S_ISDIR(st.st_mode):
        raise refuse("which is a folder, not a data file")
    if not stat.S_ISREG(st.st_mode):
        raise refuse("which is not a regular file (a FIFO, socket or device): only data files are read",
                     hint="write the weights to a regular file beside the model")
    relative = Path(os.path.normpath(posix))
    return ExternalFile(location=loc, relative=relative, file=resolved, size=st.st_size)


def _plain_int(text: str) -> int:
    """Digits only, as the runtimes parse them: Python's int() also takes " 0", "+0" and "1_0"."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    return int(text)


def _check_range(path: Path, tensor: str, ext: ExternalFile, info: dict[str, str]) -> None:
    """The tensor's bytes (`offset`, `length`) must lie within its data file."""
    try:
        offset = _plain_int(info.get("offset") or "0")
        length = _plain_int(info["length"]) if info.get("length") else None
    except ValueError:
        raise SourceModelError(f"{path.name}: tensor {tensor!r} has a non-numeric offset/length in its external "
                               f"data ({info.get('offset')!r}, {info.get('length')!r})", hint=_SAVE_HINT) from None
    end = offset + (length or 0)
    if offset < 0 or (length is not None and length < 0) or end > ext.size:
        raise SourceModelError(
            f"{path.name}: tensor {tensor!r} needs bytes {offset}..{end} of its external data file {ext.location!r}, "
            f"which has {ext.size} bytes (truncated, or a wrong offset/length)",
            hint="copy or write the weights file again, next to the model it belongs to")
