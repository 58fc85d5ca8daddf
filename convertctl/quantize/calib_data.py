"""Calibration data: the recipe's `calibration:` section turned into a seeded, streamed, hashed sample source.

`data` is a folder of images (.jpg .jpeg .png .bmp, searched recursively), a folder of .npy/.npz tensor
files, or one .npy/.npz file. A tensor file holds one sample (the input shape without its batch dim, which is
at the input's `batch_axis`, or with a batch dim of 1 there) or a batch of such samples along axis 0; an .npz
holds the array named like the model input (else its first array) and may hold an integer `labels` array, one
label per sample.

Every sample is one feed per model input, each a batch of one along that input's batch axis (data/batching.stack
joins them along the same axes): the calibrated input from the data, every other input from its spec
(data/samples.one_sample: its `value`, else seeded random data in its `range`; a scalar or an unbatched input as
declared).

The split is by file: a seeded permutation of the files puts a `holdout` share aside for evaluation and
calibration takes up to `num_samples` samples from the rest. One .npy/.npz file given alone is split by
sample index instead (a single file cannot be split by file).

Construction reads every file it will use once (hash + checks, one file at a time), so a bad file is
reported before any model work starts; `calibration()` / `evaluation()` read the files again, lazily,
one sample at a time, so memory does not grow with the number of samples.
"""

from __future__ import annotations

import csv
import hashlib
import json
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from convertctl.data import limits
from convertctl.data.batching import stack
from convertctl.data.images import IMAGE_SUFFIXES, preprocess
from convertctl.data.samples import one_sample
from convertctl.errors import UsageError
from convertctl.recipe import feed_shape

TENSOR_SUFFIXES = {".npy", ".npz"}
HASH_VERSION = 1
_CHUNK = 1 << 18  # hashing reads
_SKIP_CHUNK = 1 << 16  # skipping unused samples of a compressed .npz member


@dataclass
class Sample:
    feeds: dict[str, np.ndarray]  # one sample for every model input: a batch dim of 1 at its batch axis
    label: int | None
    source: str  # file path relative to `data` (and `[index]` inside a batch file), for reports


@dataclass
class _File:
    """One data file: an image (one sample) or a tensor file (one sample or a batch)."""

    path: Path
    rel: str  # posix path relative to the data folder (the file name when data is one file)
    count: int = 1  # samples in the file
    batched: bool = False  # a tensor file whose axis 0 is the batch
    member: str | None = None  # .npz: the array used
    labels_member: str | None = None  # .npz: the `labels` array, if any
    shape: tuple[int, ...] = ()  # tensor files: the stored array's shape
    dtype: np.dtype | None = None
    fortran: bool = False
    label: int | None = None  # a label for every sample of the file (folders, labels file)
    sample_labels: list[int] | None = None  # .npz `labels`, one per sample (read for used files only)


@dataclass
class _Part:
    """Samples `indices` of one file, in one split."""

    file: _File
    indices: list[int]
    labels: list[int | None] = field(default_factory=list)


class CalibrationData:
    """Seeded calibration / evaluation splits of the `calibration:` data, streamed one sample at a time.

    spec: CalibrationSpec; inputs: the model's InputSpecs; dims: symbolic dim -> DimRange;
    preprocess_default: the ImagePreprocess used when spec.preprocess is not set (the recipe's samples one).
    """

    def __init__(self, spec, inputs, dims, preprocess_default):
        if not inputs:
            raise UsageError("the model has no inputs to feed calibration data to")
        names = [i.name for i in inputs]
        name = spec.input or names[0]
        if name not in names:
            raise UsageError(f"calibration.input {name!r} is not an input of the model; its inputs are {names}")
        if spec.seed < 0:
            raise UsageError(f"calibration.seed must be 0 or more, got {spec.seed}")
        self.spec = spec
        self.input = next(i for i in inputs if i.name == name)
        if self.input.batch_axis is None:
            what = "a scalar" if not self.input.shape else "batch_axis null"
            raise UsageError(f"calibration.input {name!r} is not batched ({what}): calibration samples are stacked "
                             "along the batch axis of the input they feed",
                             hint="point calibration.input at a batched input, or give this one a batch_axis")
        self.others = [i for i in inputs if i.name != name]
        self.axes = {i.name: i.batch_axis for i in inputs}  # how samples stack (data/batching.stack)
        self.dims = dims
        self.data = Path(spec.data)
        self.notes: list[str] = []
        files, self.kind = discover_files(self.data)
        self.single_file = self.data.is_file()
        self.pre = None
        if self.kind == "image":
            self.pre = spec.preprocess or preprocess_default
            if spec.preprocess is None:  # nobody chose a crop: a static square input says which
                self.pre = _fit_default_crop(self.input, self.pre, self.notes)
            self.channels = _image_channels(self.input, self.pre, dims)
        else:
            for f in files:
                read_header(f, self.input.name)
                _check_tensor(f, self.input, dims)
            _check_sample_count(files, self.data)
        self._npz_labels = False  # labels from the .npz `labels` arrays (read for the files used)
        self.labels, label_source = self._resolve_labels(files)
        self._calibration, self._evaluation = self._split(files)
        self.num_calibration = sum(len(p.indices) for p in self._calibration)
        self.num_evaluation = sum(len(p.indices) for p in self._evaluation)
        self._check_budget()
        self._check_and_hash()
        total = sum(f.count for f in files)
        what = f"{total} images" if self.kind == "image" else \
            f"{total} samples in {len(files)} tensor file{'s' if len(files) > 1 else ''}"
        parts = [f"{self.data} ({what}) -> input {self.input.name!r}: {self.num_calibration} "
                 f"calibration samples, {self.num_evaluation} held out (seed {spec.seed})",
                 f"labels: {label_source}"]
        parts += [_describe_other(o, dims, spec.seed) for o in self.others]
        self.description = "; ".join(parts)

    # ------------------------------------------------------------------ labels

    def _resolve_labels(self, files: list[_File]) -> tuple[list[str] | None, str]:
        mode = self.spec.labels
        if isinstance(mode, Path):
            return _labels_file(mode, files, self.data), f"from {mode}"
        if mode == "none":
            return None, "none"
        in_folders = not self.single_file and all("/" in f.rel for f in files)
        if mode == "folders":
            if self.single_file:
                raise UsageError(f"calibration.labels is 'folders' but {self.data} is a file, not a folder of "
                                 f"class folders")
            if not in_folders:
                outside = [f.rel for f in files if "/" not in f.rel]
                raise UsageError(f"calibration.labels is 'folders' but {len(outside)} file(s) sit directly in "
                                 f"{self.data}, outside a class folder, e.g. {self.data / outside[0]}")
        if mode == "auto" and self.kind == "tensor" and all(f.labels_member for f in files):
            self._npz_labels = True
            return None, "from the `labels` arrays of the .npz files"  # class names set in _check_and_hash
        if in_folders:
            classes = sorted({f.rel.split("/")[0] for f in files})
            index = {c: i for i, c in enumerate(classes)}
            for f in files:
                f.label = index[f.rel.split("/")[0]]
            return classes, f"{len(classes)} classes from the sub-folders of {self.data}"
        outside = [f.rel for f in files if "/" not in f.rel]
        if not self.single_file and len(outside) < len(files):
            self.notes.append(f"no labels: {len(outside)} of {len(files)} files sit directly in {self.data} "
                              f"(e.g. {outside[0]}), outside a class folder")
        return None, "none (no class folders, no labels file)"

    # ------------------------------------------------------------------ split

    def _split(self, files: list[_File]) -> tuple[list[_Part], list[_Part]]:
        spec = self.spec
        rng = np.random.default_rng(spec.seed)
        n = files[0].count if self.single_file else len(files)
        order = rng.permutation(n)
        n_eval = 0
        if spec.holdout > 0 and n >= 2:
            n_eval = min(max(1, int(np.floor(spec.holdout * n + 0.5))), n - 1)
        elif spec.holdout > 0:
            self.notes.append(f"holdout {spec.holdout}: {self.data} holds a single "
                              f"{'sample' if self.single_file else 'file'}, nothing is held out for evaluation")
        if self.single_file:
            return self._split_samples(files[0], order, n_eval)
        units = [(f, list(range(f.count))) for f in files]
        order = [int(k) for k in order]
        evaluation = [units[k] for k in order[:n_eval]]
        calibration, need = [], spec.num_samples
        for k in order[n_eval:]:
            if need <= 0:
                break
            f, idx = units[k]
            calibration.append((f, idx[:need]))
            need -= len(calibration[-1][1])
        available = sum(len(units[k][1]) for k in order[n_eval:])
        if available < spec.num_samples:
            total = sum(f.count for f in files)
            in_files = "" if total == len(files) else f" in {len(files)} files"
            self.notes.append(f"asked for {spec.num_samples} calibration samples, the folder {self.data} holds "
                              f"{total}{in_files}: "
                              f"using {available} for calibration, {total - available} held out for evaluation")
        return [_Part(f, idx) for f, idx in calibration], [_Part(f, idx) for f, idx in evaluation]

    def _split_samples(self, f: _File, order: np.ndarray, n_eval: int) -> tuple[list[_Part], list[_Part]]:
        """One file given alone, split by sample index: the same split as one unit per sample, without a list
        of them. One part per split, indices ascending (sequential reads)."""
        need = self.spec.num_samples
        available = f.count - n_eval
        if available < need:
            self.notes.append(f"asked for {need} calibration samples, the file {self.data} holds {f.count}: "
                              f"using {available} for calibration, {f.count - available} held out for evaluation")
        cal = sorted(int(i) for i in order[n_eval:n_eval + need])
        ev = sorted(int(i) for i in order[:n_eval])
        return ([_Part(f, cal)] if cal else []), ([_Part(f, ev)] if ev else [])

    # ------------------------------------------------------------------ budget

    def _sample_bytes(self, f: _File) -> int:
        """Bytes one sample of `f` takes in memory, every input together (others: seeded random data)."""
        if self.kind == "image":
            shape = (self.channels, self.pre.crop, self.pre.crop)
        else:
            shape = f.shape[1:] if f.batched else f.shape
        n = limits.nbytes(shape, limits.ITEMSIZE[self.input.dtype])
        for o in self.others:
            n += limits.nbytes(feed_shape(o, self.dims, 1), limits.ITEMSIZE[o.dtype])
        return n

    def _check_budget(self) -> None:
        """Before any sample is read: the held-out split is stacked in memory (it verifies every artifact), the
        calibration split may be (OpenVINO's NNCF takes a list), and so is every single sample."""
        budget = limits.tensor_budget()
        for key, parts in (("calibration.num_samples", self._calibration), ("calibration.holdout", self._evaluation)):
            total = sum(len(p.indices) * self._sample_bytes(p.file) for p in parts)
            count = sum(len(p.indices) for p in parts)
            if total > budget:
                value = getattr(self.spec, key.split(".")[1])
                raise UsageError(f"{key} {value}: the {count} samples it selects from {self.data} take "
                                 f"{limits.fmt_bytes(total)} in memory, more than the tensor budget of "
                                 f"{limits.fmt_bytes(budget)}: lower {key}", hint=limits.budget_hint())

    # ------------------------------------------------------------------ checks and hash

    def _check_and_hash(self) -> None:
        """One pass over every file used: its bytes feed the hash, its samples are decoded and checked."""
        spec = self.spec
        h = hashlib.sha256()
        header = {
            "version": HASH_VERSION,
            "kind": self.kind,
            "input": {"name": self.input.name, "shape": self.input.shape, "dtype": self.input.dtype,
                      **({"batch_axis": self.input.batch_axis} if self.input.batch_axis != 0 else {})},
            # the other inputs' samples (data/samples.one_sample): one sample's shape, how it is filled, its axis
            "others": [{"name": o.name, "shape": feed_shape(o, self.dims, 1), "dtype": o.dtype,
                        "range": list(o.range), "value": o.value, "batch_axis": o.batch_axis}
                       for o in self.others],
            "seed": spec.seed,
            "num_samples": spec.num_samples,
            "holdout": spec.holdout,
            "preprocess": self.pre.model_dump(mode="json") if self.pre is not None else None,
            "single_file": self.single_file,
        }
        h.update(json.dumps(header, sort_keys=True).encode())
        digests: dict[Path, str] = {}
        max_label = -1
        for split, parts in (("calibration", self._calibration), ("evaluation", self._evaluation)):
            for part in parts:
                f = part.file
                if f.path not in digests:
                    digests[f.path] = _file_digest(f.path)
                if self.kind == "image":
                    for _ in part.indices:
                        self._image(f)
                else:
                    _check_values(f, part.indices, self.input)
                if self._npz_labels:
                    if f.sample_labels is None:
                        f.sample_labels = _read_labels(f)
                    part.labels = [f.sample_labels[i] for i in part.indices]
                else:
                    part.labels = [f.label] * len(part.indices)
                max_label = max([max_label] + [lb for lb in part.labels if lb is not None])
                entry = {"split": split, "file": f.rel, "indices": part.indices, "labels": part.labels,
                         "member": f.member}
                h.update(json.dumps(entry, sort_keys=True).encode())
                h.update(digests[f.path].encode())
        if self._npz_labels:
            self.labels = [str(i) for i in range(max_label + 1)]
        h.update(json.dumps({"classes": self.labels}).encode())
        self.sha256 = h.hexdigest()

    # ------------------------------------------------------------------ reading

    def _image(self, f: _File) -> np.ndarray:
        return preprocess(f.path, self.pre, channels=self.channels)  # a bad image: UsageError naming it

    def _samples(self, parts: list[_Part], split: int) -> Iterator[Sample]:
        position = 0
        for part in parts:
            f = part.file
            reader = None if self.kind == "image" else _Reader(f)
            try:
                for i, label in zip(part.indices, part.labels, strict=True):
                    if reader is None:
                        x = self._image(f)
                        source = f.rel
                    else:
                        x = reader.sample(i)
                        source = f"{f.rel}[{i}]" if f.count > 1 else f.rel
                    # a batch of one along the input's batch axis
                    feeds = {self.input.name: np.ascontiguousarray(np.expand_dims(x, self.input.batch_axis),
                                                                   dtype=self.input.dtype)}
                    if self.others:  # each as its spec says (value, batch axis, scalar), seeded per sample
                        rng = np.random.default_rng([self.spec.seed, split, position])
                        for o in self.others:
                            feeds[o.name] = one_sample(o, self.dims, rng)
                    position += 1
                    yield Sample(feeds=feeds, label=label, source=source)
            finally:
                if reader is not None:
                    reader.close()

    def calibration(self) -> Iterator[Sample]:
        """The calibration samples, read lazily one at a time (same samples, same order, every call)."""
        return self._samples(self._calibration, 1)

    def evaluation(self) -> Iterator[Sample]:
        """The held-out samples (no file is in both splits; one file given alone is split by sample)."""
        return self._samples(self._evaluation, 2)

    def batches(self, which: str, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds of `batch_size` consecutive samples stacked along each input's batch axis (data/batching.stack;
        unbatched inputs as one sample has them). The last batch may be smaller; samples of a different shape
        (symbolic dims) start a new batch."""
        if which not in ("calibration", "evaluation"):
            raise ValueError(f"which must be 'calibration' or 'evaluation', got {which!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        pending: list[dict[str, np.ndarray]] = []
        for sample in getattr(self, which)():
            if pending and any(pending[0][k].shape != v.shape for k, v in sample.feeds.items()):
                yield stack(pending, self.axes)
                pending = []
            pending.append(sample.feeds)
            if len(pending) == batch_size:
                yield stack(pending, self.axes)
                pending = []
        if pending:
            yield stack(pending, self.axes)


# ---------------------------------------------------------------------- files


def discover_files(data: Path) -> tuple[list[_File], str]:
    """The calibration files under `data` (one .npy/.npz file, or a folder searched recursively, hidden entries
    skipped) sorted by relative path, and their kind: "image" or "tensor" (never both)."""
    if not data.exists():
        raise UsageError(f"calibration data not found: {data}", hint="fix calibration.data in the recipe")
    if data.is_file():
        if data.suffix.lower() not in TENSOR_SUFFIXES:
            raise UsageError(f"calibration data {data} is a {data.suffix or 'suffix-less'} file: give a folder of "
                             f"images, a folder of .npy/.npz files, or one .npy/.npz file")
        return [_File(path=data, rel=data.name)], "tensor"
    found = []
    for p in data.rglob("*"):
        rel = p.relative_to(data)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files and folders (.complete markers, ._resource forks, checkpoints)
        if p.suffix.lower() in IMAGE_SUFFIXES | TENSOR_SUFFIXES and p.is_file():
            found.append(_File(path=p, rel=PurePosixPath(rel).as_posix()))
    if not found:
        raise UsageError(f"no calibration files (.jpg .jpeg .png .bmp .npy .npz) in {data}")
    found.sort(key=lambda f: f.rel)
    images = [f for f in found if f.path.suffix.lower() in IMAGE_SUFFIXES]
    if images and len(images) != len(found):
        tensor = next(f for f in found if f.path.suffix.lower() in TENSOR_SUFFIXES)
        raise UsageError(f"{data} mixes images ({images[0].path}) and tensor files ({tensor.path}): "
                         f"calibration data must be one kind")
    return found, "image" if images else "tensor"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(shape), fortran, dtype


def read_header(f: _File, input_name: str) -> None:
    """Shape and dtype of the stored array, without reading its data. The header is checked against the bytes
    the file really holds, so a forged header (1e11 samples in a 2 KB file) is refused before anything is
    allocated; so are pickled object arrays and .npz members that would decompress beyond the budget."""
    try:
        if f.path.suffix.lower() == ".npy":
            with open(f.path, "rb") as fh:
                f.shape, f.fortran, f.dtype = _read_npy_header(fh)
                _check_declared(f.path, f.shape, f.dtype, f.path.stat().st_size - fh.tell())
            return
        with zipfile.ZipFile(f.path) as zf:
            members = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
            labels = "labels" if "labels" in members and input_name != "labels" else None
            arrays = [m for m in members if m != labels]
            if not arrays:
                raise UsageError(f"tensor file {f.path} holds no data array (only {members or 'nothing'})")
            f.member = input_name if input_name in arrays else arrays[0]
            f.labels_member = labels
            f.shape, f.fortran, f.dtype = _read_member_header(f.path, zf, f.member)
            if labels:
                _read_member_header(f.path, zf, labels)
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, struct.error) as exc:
        raise UsageError(f"cannot read tensor file {f.path}: {exc}") from None


def _read_member_header(path: Path, zf: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The header of one .npz member, checked against the member's size in the zip (what a read can return)."""
    info = zf.getinfo(member + ".npy")
    where = f"{path} (array {member!r})"
    budget = limits.tensor_budget()
    if info.compress_type == zipfile.ZIP_STORED and info.file_size > path.stat().st_size:
        raise UsageError(f"cannot read tensor file {where}: its zip directory claims "
                         f"{limits.fmt_bytes(info.file_size)}, more than the whole file: a damaged or forged .npz")
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > budget:
        raise UsageError(f"cannot read tensor file {where}: it decompresses to {limits.fmt_bytes(info.file_size)} "
                         f"(from {limits.fmt_bytes(info.compress_size)}), more than the tensor budget of "
                         f"{limits.fmt_bytes(budget)}",
                         hint="save it uncompressed (numpy.savez: memory-mapped, never decompressed) or in smaller "
                              "files; or " + limits.budget_hint())
    with zf.open(info) as fh:
        shape, fortran, dtype = _read_npy_header(fh)
        _check_declared(where, shape, dtype, info.file_size - fh.tell())
    return shape, fortran, dtype


def _check_declared(where, shape, dtype: np.dtype, available: int) -> None:
    if dtype.hasobject:
        raise UsageError(f"cannot read tensor file {where}: it holds Python objects ({dtype}), which only a pickle "
                         f"can load; convertctl reads numeric arrays and never unpickles")
    if any(d < 0 for d in shape):  # numpy's header reader lets a negative dim through
        raise UsageError(f"cannot read tensor file {where}: its header declares shape {_fmt(shape)}, with a negative "
                         f"dim: a forged or damaged header")
    need = limits.nbytes(shape, dtype.itemsize)
    if need > available:
        raise UsageError(f"cannot read tensor file {where}: its header declares shape {_fmt(shape)} {dtype} "
                         f"({limits.fmt_bytes(need)}), but the file holds only {limits.fmt_bytes(max(available, 0))} "
                         f"of data: truncated, or a forged header")


def _check_sample_count(files: list[_File], data: Path) -> None:
    total = sum(f.count for f in files)
    if total > limits.MAX_DATA_SAMPLES:
        raise UsageError(f"calibration data {data} holds {total:,} samples, more than the {limits.MAX_DATA_SAMPLES:,} "
                         f"convertctl indexes", hint="point calibration.data at a subset: calibration uses "
                                                     "calibration.num_samples of them (default 100)")


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _sample_dims(spec) -> list:
    """One sample of an input: its shape without the batch axis."""
    return [d for k, d in enumerate(spec.shape) if k != spec.batch_axis]


def _fits(sample_shape, spec, dims) -> bool:
    want = _sample_dims(spec)
    if len(sample_shape) != len(want):
        return False
    for got, w in zip(sample_shape, want, strict=True):
        if isinstance(w, int) and got != w:
            return False
        if isinstance(w, str) and w in dims and not dims[w].min <= got <= dims[w].max:
            return False
    return True


def _check_tensor(f: _File, spec, dims) -> None:
    """Decide one sample vs a batch from the stored shape; refuse shapes and dtypes the input cannot take."""
    rank = len(spec.shape)
    if len(f.shape) == rank - 1 and _fits(f.shape, spec, dims):
        f.batched, f.count = False, 1
    elif len(f.shape) == rank and _fits(f.shape[1:], spec, dims):
        f.batched, f.count = True, f.shape[0]
    else:
        what = f"array {f.member!r} of shape" if f.member else "array of shape"
        axis = "" if spec.batch_axis == 0 else f", batch axis {spec.batch_axis}"
        raise UsageError(f"tensor file {f.path} holds an {what} {_fmt(f.shape)}; input {spec.name!r} "
                         f"({_fmt(spec.shape)}{axis}) takes one sample {_fmt(_sample_dims(spec))} or a batch "
                         f"{_fmt(['N', *_sample_dims(spec)])} per file")
    if f.count == 0:
        raise UsageError(f"tensor file {f.path} holds an empty batch (shape {_fmt(f.shape)})")
    kind, want = f.dtype.kind, np.dtype(spec.dtype).kind
    if kind not in "biuf" or (kind == "f" and want in "biu"):
        raise UsageError(f"tensor file {f.path} holds {f.dtype} values, input {spec.name!r} takes {spec.dtype}")


def _check_values(f: _File, indices: list[int], spec) -> None:
    """Read every sample used (a truncated file fails here) and refuse NaN / Inf."""
    reader = _Reader(f)
    try:
        for i in indices:
            x = reader.sample(i)
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                bad = "NaN" if np.isnan(x).any() else "Inf"
                where = f" (sample {i})" if f.batched else ""
                raise UsageError(f"tensor file {f.path}{where} holds {bad} values; input {spec.name!r} needs finite data")
    finally:
        reader.close()


def _read_labels(f: _File) -> list[int]:
    try:
        with zipfile.ZipFile(f.path) as zf:
            shape, _, dtype = _read_member_header(f.path, zf, f.labels_member)
            if limits.nbytes(shape, 1) != f.count:  # before it is read: one label per sample, no more
                raise UsageError(f"the `labels` array of {f.path} must hold {f.count} integer(s), one per sample; "
                                 f"it has shape {_fmt(shape)} and dtype {dtype}")
            with zf.open(f.labels_member + ".npy") as fh:
                labels = np.lib.format.read_array(fh, allow_pickle=False)
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, struct.error) as exc:
        raise UsageError(f"cannot read the labels array of {f.path}: {exc}") from None
    if labels.dtype.kind not in "iu" or labels.reshape(-1).shape[0] != f.count or labels.ndim > 1:
        raise UsageError(f"the `labels` array of {f.path} must hold {f.count} integer(s), one per sample; "
                         f"it has shape {_fmt(labels.shape)} and dtype {labels.dtype}")
    values = [int(v) for v in labels.reshape(-1)]
    if min(values) < 0:
        raise UsageError(f"the `labels` array of {f.path} holds a negative label ({min(values)})")
    return values


class _Reader:
    """Sample-by-sample access to a tensor file's array with bounded memory: .npy files and uncompressed
    .npz members are memory-mapped; compressed .npz members are decompressed as a stream (in order)."""

    def __init__(self, f: _File):
        self.f = f
        self.array = None
        self.stream = None
        self.zip = None
        self.position = 0
        try:
            if f.member is None:
                self.array = np.load(f.path, mmap_mode="r", allow_pickle=False)
            else:
                self.zip = zipfile.ZipFile(f.path)
                info = self.zip.getinfo(f.member + ".npy")
                if info.compress_type == zipfile.ZIP_STORED:
                    self.array = self._memmap(info)
                elif f.fortran:  # rare: no sample-contiguous layout to stream, load the array (within budget:
                    # _read_member_header bounds the member's size)
                    with self.zip.open(info) as fh:
                        self.array = np.lib.format.read_array(fh, allow_pickle=False)
                else:
                    self._open_stream()
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, struct.error) as exc:
            self.close()
            raise UsageError(f"cannot read tensor file {f.path}: {exc}") from None

    def _memmap(self, info: zipfile.ZipInfo) -> np.ndarray:
        with open(self.f.path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError("bad zip local header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            _read_npy_header(fh)
            offset = fh.tell()
        shape = self.f.shape
        if int(np.prod(shape)) == 0:
            return np.empty(shape, self.f.dtype)
        return np.memmap(self.f.path, dtype=self.f.dtype, mode="r", offset=offset, shape=shape,
                         order="F" if self.f.fortran else "C")

    def _open_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = self.zip.open(self.f.member + ".npy")
        _read_npy_header(self.stream)
        self.position = 0

    def sample(self, i: int) -> np.ndarray:
        f = self.f
        try:
            if self.array is not None:
                x = self.array[i] if f.batched else self.array
                return np.array(x, copy=True)
            shape = f.shape[1:] if f.batched else f.shape
            size = int(np.prod(shape, dtype=np.int64)) * f.dtype.itemsize
            if i < self.position:
                self._open_stream()
            skip = (i - self.position) * size
            while skip > 0:
                got = len(self.stream.read(min(skip, _SKIP_CHUNK)))
                if got == 0:
                    raise EOFError("unexpected end of data")
                skip -= got
            buf = self.stream.read(size)
            if len(buf) != size:
                raise EOFError("unexpected end of data")
            self.position = i + 1
            return np.frombuffer(buf, dtype=f.dtype).reshape(shape).copy()
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise UsageError(f"cannot read tensor file {f.path}: {exc}") from None

    def close(self) -> None:
        for thing in (self.stream, self.zip):
            if thing is not None:
                thing.close()
        self.stream = self.zip = None
        self.array = None  # samples are copies: the memory map closes with this last reference


# ---------------------------------------------------------------------- images


def _fit_default_crop(spec, pre, notes: list[str]):
    """The default preprocessing (ImageNet's resize 256, crop 224) fitted to an input of a static square size: crop
    that size, resize in the same 256:224 ratio. Any preprocessing someone wrote is left as it is."""
    from convertctl.schema import ImagePreprocess

    if pre != ImagePreprocess() or len(spec.shape) != 4:
        return pre
    spatial = spec.shape[2:4] if pre.layout == "NCHW" else spec.shape[1:3]
    side = spatial[0]
    if not isinstance(side, int) or spatial[1] != side or side == pre.crop:
        return pre
    fitted = pre.model_copy(update={"crop": side, "resize": max(side, round(side * 256 / 224))})
    notes.append(f"images resized to {fitted.resize} and centre-cropped to {side}: the input's static size (the "
                 "default preprocessing crops 224; set calibration.preprocess to choose)")
    return fitted


def _image_channels(spec, pre, dims) -> int:
    """Channel count (1 or 3) the images are converted to; refuse inputs that images preprocessed this way
    cannot feed."""
    shape = spec.shape
    per_image = "[C, crop, crop]" if pre.layout == "NCHW" else "[crop, crop, C]"
    if len(shape) != 4:
        raise UsageError(f"input {spec.name!r} has shape {_fmt(shape)}: images need a 4-D input "
                         f"([batch, C, H, W] or [batch, H, W, C])")
    c = shape[1] if pre.layout == "NCHW" else shape[3]
    spatial = shape[2:4] if pre.layout == "NCHW" else shape[1:3]
    channels = 3 if isinstance(c, str) else c
    expected = (channels, pre.crop, pre.crop) if pre.layout == "NCHW" else (pre.crop, pre.crop, channels)
    problem = None
    if channels not in (1, 3):
        problem = f"{channels} channels, images give 1 (grayscale) or 3 ({pre.color})"
    for d in spatial:
        if isinstance(d, int) and d != pre.crop:
            problem = problem or f"spatial size {d}, the preprocessing crops {pre.crop}"
        if isinstance(d, str) and d in dims and not dims[d].min <= pre.crop <= dims[d].max:
            problem = problem or f"dim {d!r} in {dims[d].min}..{dims[d].max}, the preprocessing crops {pre.crop}"
    if problem:
        raise UsageError(f"input {spec.name!r} ({_fmt(shape)}) has {problem}: images preprocessed with crop "
                         f"{pre.crop}, layout {pre.layout} give {_fmt(expected)} per image {per_image}",
                         hint="set calibration.preprocess (crop, layout) to match the input")
    if channels == 1 and (len(set(pre.mean)) > 1 or len(set(pre.std)) > 1):
        raise UsageError(f"input {spec.name!r} takes 1 channel (grayscale) but the preprocessing has per-channel "
                         f"mean {pre.mean} / std {pre.std}: give one value each")
    return channels


# ---------------------------------------------------------------------- labels file


def _labels_file(path: Path, files: list[_File], data: Path) -> list[str]:
    """CSV lines `relative/path,label` (label: a class number or a class name; a header line is allowed).
    Sets each file's label; returns the class names (sorted names, or "0".."max" for numbers)."""
    if not path.is_file():
        raise UsageError(f"labels file not found: {path}", hint="fix calibration.labels in the recipe")
    by_rel = {f.rel: f for f in files}
    rows: list[tuple[int, str, str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                if len(row) != 2:
                    raise UsageError(f"labels file {path} line {lineno}: expected `relative/path,label`, "
                                     f"got {len(row)} field(s)")
                rows.append((lineno, _norm(row[0]), row[1].strip()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read labels file {path}: {exc}") from None
    first = rows[0] if rows else None
    if first and first[1] not in by_rel and not _is_int(first[2]) and \
            PurePosixPath(first[1]).suffix.lower() not in IMAGE_SUFFIXES | TENSOR_SUFFIXES:
        rows = rows[1:]  # a header line such as `path,label`
    if not rows:
        raise UsageError(f"labels file {path} has no `relative/path,label` lines")
    unknown = [(n, r) for n, r, _ in rows if r not in by_rel]
    if unknown:
        n, r = unknown[0]
        raise UsageError(f"labels file {path} names {len(unknown)} file(s) not in {data}, e.g. {r!r} (line {n})")
    numbers = [_is_int(v) for _, _, v in rows]
    if any(numbers) and not all(numbers):
        n = rows[numbers.index(False) if numbers[0] else numbers.index(True)][0]
        raise UsageError(f"labels file {path} mixes class numbers and class names (line {n}): use one kind")
    if all(numbers):
        values = {r: int(v) for _, r, v in rows}
        if min(values.values()) < 0:
            raise UsageError(f"labels file {path} has a negative class number")
        classes = [str(i) for i in range(max(values.values()) + 1)]
    else:
        classes = sorted({v for _, _, v in rows})
        index = {c: i for i, c in enumerate(classes)}
        values = {r: index[v] for _, r, v in rows}
    missing = [f.rel for f in files if f.rel not in values]
    if missing:
        raise UsageError(f"labels file {path} has no label for {len(missing)} file(s) of {data}, "
                         f"e.g. {missing[0]!r}")
    for f in files:
        f.label = values[f.rel]
    return classes


def _norm(rel: str) -> str:
    rel = rel.strip().replace("\\", "/")
    return PurePosixPath(rel).as_posix().removeprefix("./")


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------- misc


def _describe_other(spec, dims, seed: int) -> str:
    """How an input the calibration data does not feed gets its samples (data/samples.one_sample)."""
    how = "" if spec.batch_axis == 0 else (" (not batched: the same for every run)" if spec.batch_axis is None
                                           else f" (batched along axis {spec.batch_axis})")
    if spec.value is not None:
        return f"{spec.name}: {feed_shape(spec, dims, 1)} per sample filled with {spec.value!r}{how}"
    span = [int(v) for v in spec.range] if spec.dtype.startswith(("int", "uint")) else list(spec.range)
    return f"{spec.name}: seeded random {spec.dtype} in {span} (seed {seed}){how}"
