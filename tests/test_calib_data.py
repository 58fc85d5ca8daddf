"""Calibration data: splits, labels, tensor files, content hash, streaming, bad input, the real digits set."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convertctl.errors import EXIT_USAGE, UsageError
from convertctl.quantize.calib_data import CalibrationData
from convertctl.quantize.spec import CalibrationSpec
from convertctl.recipe import DimRange, ImagePreprocess, InputSpec

from .conftest import REPO

IMAGE_INPUT = [InputSpec(name="image", shape=["batch", 3, 16, 16])]
DIMS = {"batch": DimRange()}
PRE = ImagePreprocess(resize=16, crop=16)


def make(data, inputs=IMAGE_INPUT, pre=PRE, dims=DIMS, **kw) -> CalibrationData:
    return CalibrationData(CalibrationSpec(data=data, **kw), inputs, dims, pre)


def write_images(folder: Path, names, size=(20, 18), seed=0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def sources(it) -> list[str]:
    return [s.source for s in it]


def usage_error(fn, *args, **kw) -> str:
    with pytest.raises(UsageError) as info:
        fn(*args, **kw)
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in info.value.message  # one clear line
    return info.value.message


# ---------------------------------------------------------------- splits


def test_split_is_disjoint_by_file_and_deterministic_by_seed(tmp_path):
    write_images(tmp_path, [f"img_{i:02d}.png" for i in range(30)])
    a = make(tmp_path, num_samples=100, holdout=0.2, seed=7)
    cal, ev = sources(a.calibration()), sources(a.evaluation())
    assert (a.num_calibration, a.num_evaluation) == (24, 6) == (len(cal), len(ev))
    assert not set(cal) & set(ev) and len(set(cal) | set(ev)) == 30
    assert cal == sources(a.calibration())  # every pass yields the same samples, same order
    b = make(tmp_path, num_samples=100, holdout=0.2, seed=7)
    assert (sources(b.calibration()), sources(b.evaluation())) == (cal, ev)
    for x, y in zip(a.calibration(), b.calibration(), strict=True):
        assert np.array_equal(x.feeds["image"], y.feeds["image"])
        assert x.feeds["image"].shape == (1, 3, 16, 16) and x.feeds["image"].dtype == np.float32
    c = make(tmp_path, num_samples=100, holdout=0.2, seed=8)
    assert set(sources(c.evaluation())) != set(ev)
    # fewer calibration samples: the held-out files stay the same (they depend on seed and holdout only)
    d = make(tmp_path, num_samples=5, holdout=0.2, seed=7)
    assert sources(d.evaluation()) == ev and sources(d.calibration()) == cal[:5] and d.notes == []


def test_holdout_edges(tmp_path):
    write_images(tmp_path / "two", ["a.png", "b.png"])
    two = make(tmp_path / "two", holdout=0.01)
    assert (two.num_calibration, two.num_evaluation) == (1, 1)  # at least one file held out
    none = make(tmp_path / "two", holdout=0.0)
    assert (none.num_calibration, none.num_evaluation) == (2, 0) and list(none.evaluation()) == []
    big = make(tmp_path / "two", holdout=0.9)
    assert (big.num_calibration, big.num_evaluation) == (1, 1)  # at least one file left to calibrate
    np.save(tmp_path / "one.npy", np.zeros((3, 16, 16), np.float32))
    one = make(tmp_path / "one.npy", holdout=0.2)
    assert (one.num_calibration, one.num_evaluation) == (1, 0)
    assert any("nothing is held out" in n for n in one.notes)


def test_fewer_samples_than_asked_is_a_note(tmp_path):
    write_images(tmp_path, [f"p{i:02d}.png" for i in range(72)], size=(8, 8))
    data = make(tmp_path, num_samples=300, holdout=0.2)
    assert (data.num_calibration, data.num_evaluation) == (58, 14)
    assert data.notes == [f"asked for 300 calibration samples, the folder {tmp_path} holds 72: "
                          f"using 58 for calibration, 14 held out for evaluation"]
    assert len(list(data.calibration())) == 58
    exact = make(tmp_path, num_samples=58, holdout=0.2)
    assert exact.notes == [] and exact.num_calibration == 58


# ---------------------------------------------------------------- labels


def test_labels_from_class_folders(tmp_path):
    write_images(tmp_path, [f"dog/{i}.png" for i in range(4)] + [f"cat/{i}.jpg" for i in range(3)]
                 + ["cat/deeper/x.bmp"])
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    (tmp_path / ".complete").write_text("hidden files are ignored")
    data = make(tmp_path, holdout=0.25)
    assert data.labels == ["cat", "dog"]
    samples = list(data.calibration()) + list(data.evaluation())
    assert len(samples) == 8
    for s in samples:
        assert data.labels[s.label] == s.source.split("/")[0]
    assert make(tmp_path, labels="folders").labels == ["cat", "dog"]
    off = make(tmp_path, labels="none")
    assert off.labels is None and all(s.label is None for s in off.calibration())
    assert off.sha256 != data.sha256  # labels are part of the data used


def test_labels_auto_without_folders_and_folders_required(tmp_path):
    write_images(tmp_path, ["a/1.png", "a/2.png", "b/1.png", "stray.png"])
    auto = make(tmp_path)
    assert auto.labels is None and all(s.label is None for s in auto.calibration())
    assert auto.notes[0] == f"no labels: 1 of 4 files sit directly in {tmp_path} (e.g. stray.png), outside a class folder"
    msg = usage_error(make, tmp_path, labels="folders")
    assert "'folders'" in msg and str(tmp_path / "stray.png") in msg
    np.save(tmp_path / "one.npy", np.zeros((3, 16, 16), np.float32))
    assert "is a file, not a folder of class folders" in usage_error(make, tmp_path / "one.npy", labels="folders")


def test_labels_from_csv_file(tmp_path):
    data = tmp_path / "data"
    write_images(data, ["x1.png", "x2.png", "sub/x3.png", "sub/x4.png"])
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nx1.png,zebra\nx2.png,ant\n./sub/x3.png,zebra\nsub\\x4.png,bee\n")
    named = make(data, labels=csv, holdout=0.0)
    assert named.labels == ["ant", "bee", "zebra"]
    got = {s.source: named.labels[s.label] for s in named.calibration()}
    assert got == {"x1.png": "zebra", "x2.png": "ant", "sub/x3.png": "zebra", "sub/x4.png": "bee"}

    csv.write_text("x1.png,3\nx2.png,0\nsub/x3.png,1\nsub/x4.png,1\n")
    numbered = make(data, labels=csv, holdout=0.0)
    assert numbered.labels == ["0", "1", "2", "3"]
    assert {s.source: s.label for s in numbered.calibration()}["x1.png"] == 3

    csv.write_text("x1.png,1\nx2.png,0\nsub/x3.png,1\nsub/x4.png,1\nmissing.png,0\n")
    msg = usage_error(make, data, labels=csv)
    assert str(csv) in msg and "'missing.png'" in msg and "not in" in msg
    csv.write_text("x1.png,1\nx2.png,0\n")
    assert "no label for 2 file(s)" in usage_error(make, data, labels=csv)
    csv.write_text("x1.png,1\nx2.png,cat\nsub/x3.png,1\nsub/x4.png,1\n")
    assert "mixes class numbers and class names (line 2)" in usage_error(make, data, labels=csv)
    assert "labels file not found" in usage_error(make, data, labels=tmp_path / "nope.csv")


# ---------------------------------------------------------------- tensor files

TENSOR_INPUT = [InputSpec(name="x", shape=["batch", 3, 4, 4])]


def test_tensor_folder_single_samples_and_batches(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in
              [("a", (3, 4, 4)), ("b", (1, 3, 4, 4)), ("c", (5, 3, 4, 4)), ("d", (4, 3, 4, 4)), ("e", (2, 3, 4, 4))]}
    np.save(tmp_path / "a.npy", arrays["a"])  # one sample, no batch dim
    np.save(tmp_path / "b.npy", arrays["b"])  # one sample, batch dim 1
    # named like the input: that array is used, whatever comes first
    np.savez(tmp_path / "c.npz", other=np.zeros(3), x=arrays["c"])
    np.savez_compressed(tmp_path / "d.npz", arrays["d"])  # compressed, unnamed: the first array
    np.save(tmp_path / "e.npy", arrays["e"].astype(np.float64))  # cast to the input dtype
    data = make(tmp_path, inputs=TENSOR_INPUT, num_samples=100, holdout=0.4)
    assert data.num_calibration + data.num_evaluation == 13 and data.labels is None
    cal, ev = list(data.calibration()), list(data.evaluation())
    files = lambda samples: {s.source.split("[")[0] for s in samples}  # noqa: E731
    assert not files(cal) & files(ev)  # split by file: a batch file is never in both
    assert (len(files(cal)), len(files(ev))) == (3, 2)
    expected = {"a.npy": arrays["a"], "b.npy": arrays["b"][0]}
    expected.update({f"c.npz[{i}]": arrays["c"][i] for i in range(5)})
    expected.update({f"d.npz[{i}]": arrays["d"][i] for i in range(4)})
    expected.update({f"e.npy[{i}]": arrays["e"][i] for i in range(2)})
    got = {s.source: s.feeds["x"] for s in cal + ev}
    assert got.keys() == expected.keys()
    for key, x in got.items():
        assert x.shape == (1, 3, 4, 4) and x.dtype == np.float32
        assert np.array_equal(x[0], expected[key].astype(np.float32)), key


def test_npz_labels_and_batched_feeds(tmp_path):
    rng = np.random.default_rng(1)
    for k in range(4):
        x = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
        np.savez(tmp_path / f"part{k}.npz", x=x, labels=np.arange(5) + k)
    data = make(tmp_path, inputs=TENSOR_INPUT, holdout=0.25)
    assert data.labels == [str(i) for i in range(8)]
    for s in list(data.calibration()) + list(data.evaluation()):
        name, index = s.source[:-1].split("[")
        assert s.label == int(index) + int(name[4])
    sizes = [b["x"].shape[0] for b in data.batches("calibration", 4)]
    assert sizes == [4, 4, 4, 3] and data.num_calibration == 15
    assert np.array_equal(np.concatenate([b["x"] for b in data.batches("calibration", 4)]),
                          np.concatenate([s.feeds["x"] for s in data.calibration()]))
    assert [b["x"].shape[0] for b in data.batches("evaluation", 100)] == [5]


@pytest.mark.parametrize("compressed", [False, True])
def test_one_npz_file_is_split_by_sample(tmp_path, compressed):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 3, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    (np.savez_compressed if compressed else np.savez)(tmp_path / "set.npz", x=x, labels=labels)
    data = make(tmp_path / "set.npz", inputs=TENSOR_INPUT, num_samples=30, holdout=0.2)
    assert (data.num_calibration, data.num_evaluation) == (30, 10) and data.notes == []
    cal, ev = list(data.calibration()), list(data.evaluation())
    index = lambda s: int(s.source.removeprefix("set.npz[")[:-1])  # noqa: E731
    assert not {index(s) for s in cal} & {index(s) for s in ev}
    for s in cal + ev:
        assert np.array_equal(s.feeds["x"][0], x[index(s)]) and s.label == labels[index(s)]
    more = make(tmp_path / "set.npz", inputs=TENSOR_INPUT, num_samples=100, holdout=0.2)
    assert more.notes == [f"asked for 100 calibration samples, the file {tmp_path / 'set.npz'} holds 50: "
                          f"using 40 for calibration, 10 held out for evaluation"]


def test_other_inputs_get_seeded_random_data(tmp_path):
    write_images(tmp_path, [f"{i}.png" for i in range(6)])
    inputs = [InputSpec(name="aux", shape=["batch", "seq"], range=(-2.0, -1.0)),
              InputSpec(name="ids", shape=[1, 3], dtype="int64", range=(0, 9)),
              InputSpec(name="image", shape=["batch", 3, 16, 16])]
    dims = {"batch": DimRange(), "seq": DimRange(min=2, opt=5, max=9)}
    data = make(tmp_path, inputs=inputs, dims=dims, input="image", holdout=0.0)
    first, again = list(data.calibration()), list(data.calibration())
    for s, t in zip(first, again, strict=True):
        assert s.feeds["aux"].shape == (1, 5) and -2 <= s.feeds["aux"].min() and s.feeds["aux"].max() <= -1
        assert s.feeds["ids"].dtype == np.int64 and s.feeds["ids"].shape == (1, 3)
        assert all(np.array_equal(s.feeds[k], t.feeds[k]) for k in s.feeds)
    assert not np.array_equal(first[0].feeds["aux"], first[1].feeds["aux"])


def test_grayscale_images_for_rgb_and_one_channel_inputs(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(gray).save(tmp_path / "g.png")
    pre = ImagePreprocess(resize=8, crop=8, scale=1 / 255)
    rgb = next(make(tmp_path, inputs=[InputSpec(name="x", shape=["batch", 3, 8, 8])], pre=pre).calibration())
    assert rgb.feeds["x"].shape == (1, 3, 8, 8)
    assert np.allclose(rgb.feeds["x"][0], gray / 255, atol=1e-6)  # converted to RGB: three equal channels
    one = next(make(tmp_path, inputs=[InputSpec(name="x", shape=["batch", 8, 8, 1])],
                    pre=pre.model_copy(update={"layout": "NHWC"})).calibration())
    assert one.feeds["x"].shape == (1, 8, 8, 1) and np.allclose(one.feeds["x"][0, ..., 0], gray / 255, atol=1e-6)


# ---------------------------------------------------------------- content hash


def test_sha256_follows_the_data_used(tmp_path):
    write_images(tmp_path, [f"{i:02d}.png" for i in range(12)])
    base = make(tmp_path, num_samples=4, holdout=0.25)
    assert len(base.sha256) == 64
    assert make(tmp_path, num_samples=4, holdout=0.25).sha256 == base.sha256
    # the calibration method and its settings are not data
    assert make(tmp_path, num_samples=4, holdout=0.25, method="percentile", percentile=99.9).sha256 == base.sha256
    # preprocessing, seed, num_samples, holdout are
    assert make(tmp_path, num_samples=4, holdout=0.25, pre=PRE.model_copy(update={"mean": [1.0]})).sha256 != base.sha256
    assert make(tmp_path, num_samples=4, holdout=0.25,
                preprocess=PRE.model_copy(update={"color": "BGR"})).sha256 != base.sha256
    assert make(tmp_path, num_samples=4, holdout=0.25, seed=1).sha256 != base.sha256
    assert make(tmp_path, num_samples=3, holdout=0.25).sha256 != base.sha256
    assert make(tmp_path, num_samples=4, holdout=0.5).sha256 != base.sha256
    used = {s.source for s in base.calibration()} | {s.source for s in base.evaluation()}
    unused = sorted({p.name for p in tmp_path.glob("*.png")} - used)
    assert len(used) == 7 and len(unused) == 5
    # a file that is not used: same hash; one byte-changed file that is used: another hash
    write_images(tmp_path, [unused[0]], seed=99)
    assert make(tmp_path, num_samples=4, holdout=0.25).sha256 == base.sha256
    victim = tmp_path / sorted(used)[0]
    write_images(tmp_path, [victim.name], seed=99)
    changed = make(tmp_path, num_samples=4, holdout=0.25)
    assert changed.sha256 != base.sha256
    assert sources(changed.calibration()) == sources(base.calibration())  # same files, new bytes


def test_sha256_of_tensor_bytes(tmp_path):
    x = np.ones((4, 3, 4, 4), np.float32)
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", x)
    before = make(tmp_path, inputs=TENSOR_INPUT).sha256
    # preprocessing does not apply to tensors: it does not change their hash
    assert make(tmp_path, inputs=TENSOR_INPUT, pre=PRE.model_copy(update={"mean": [5.0]})).sha256 == before
    x[1, 2, 3, 3] = 2.0
    np.save(tmp_path / "b.npy", x)
    assert make(tmp_path, inputs=TENSOR_INPUT).sha256 != before


# ---------------------------------------------------------------- streaming


def test_iteration_memory_does_not_grow_with_the_sample_count(tmp_path):
    inputs = [InputSpec(name="x", shape=["batch", 3, 64, 64])]
    rng = np.random.default_rng(3)
    for i in range(300):
        np.save(tmp_path / f"s{i:03d}.npy", rng.standard_normal((3, 64, 64)).astype(np.float32))
    one = 3 * 64 * 64 * 4
    tracemalloc.start()
    try:
        data = make(tmp_path, inputs=inputs, num_samples=300, holdout=0.1)
        _, build_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        count = total = 0
        for sample in data.calibration():
            count += 1
            total += float(sample.feeds["x"].sum())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 270
    assert peak - base < 10 * one, f"iterating peaked at {(peak - base) / one:.1f} samples"
    assert build_peak < 0.1 * 300 * one, f"building peaked at {build_peak / one:.1f} samples"


def test_compressed_batch_file_streams(tmp_path):
    rng = np.random.default_rng(4)
    np.savez_compressed(tmp_path / "big.npz", x=rng.standard_normal((200, 3, 64, 64)).astype(np.float32))
    data = make(tmp_path / "big.npz", inputs=[InputSpec(name="x", shape=["batch", 3, 64, 64])],
                num_samples=150, holdout=0.2)
    one = 3 * 64 * 64 * 4
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        count = sum(1 for _ in data.calibration())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 150
    assert peak - base < 10 * one, f"iterating peaked at {(peak - base) / one:.1f} samples"


# ---------------------------------------------------------------- bad input


def test_missing_and_empty_data(tmp_path):
    assert f"calibration data not found: {tmp_path / 'nope'}" == usage_error(make, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert str(tmp_path / "empty") in usage_error(make, tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "readme.txt").write_text("hi")
    assert f"no calibration files (.jpg .jpeg .png .bmp .npy .npz) in {tmp_path / 'text'}" == \
        usage_error(make, tmp_path / "text")
    assert "is a .txt file" in usage_error(make, tmp_path / "text" / "readme.txt")
    write_images(tmp_path / "mixed", ["a.png"])
    np.save(tmp_path / "mixed" / "b.npy", np.zeros((3, 16, 16), np.float32))
    assert "mixes images" in usage_error(make, tmp_path / "mixed")


def test_corrupt_images(tmp_path):
    write_images(tmp_path / "a", ["good.png"])
    (tmp_path / "a" / "bad.png").write_bytes(b"this is not a png")
    msg = usage_error(make, tmp_path / "a", holdout=0.0)
    assert msg.startswith(f"cannot read image {tmp_path / 'a' / 'bad.png'}")
    (good,) = write_images(tmp_path / "b", ["good.png"], size=(64, 64))
    cut = tmp_path / "b" / "truncated.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert usage_error(make, tmp_path / "b", holdout=0.0).startswith(f"cannot read image {cut}")


def test_shapes_the_input_cannot_take(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((5, 5), np.float32))
    msg = usage_error(make, tmp_path / "bad.npy", inputs=[InputSpec(name="image", shape=["batch", 3, 224, 224])])
    assert msg == (f"tensor file {tmp_path / 'bad.npy'} holds an array of shape [5, 5]; input 'image' "
                   f"([batch, 3, 224, 224]) takes one sample [3, 224, 224] or a batch [N, 3, 224, 224] per file")
    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 3, 4, 5), np.float32))
    assert "array 'x' of shape [2, 3, 4, 5]" in usage_error(make, tmp_path / "wrong.npz", inputs=TENSOR_INPUT)
    write_images(tmp_path / "img", ["a.png", "b.png"])
    four = usage_error(make, tmp_path / "img", inputs=[InputSpec(name="image", shape=["batch", 4, 16, 16])])
    assert "has 4 channels" in four and "[3, 16, 16]" not in four
    size = usage_error(make, tmp_path / "img", inputs=[InputSpec(name="image", shape=["batch", 3, 32, 32])])
    assert "spatial size 32, the preprocessing crops 16" in size  # a preprocessing someone chose is kept
    fitted = make(tmp_path / "img", holdout=0.0, pre=ImagePreprocess(),  # the default one fits a static input
                  inputs=[InputSpec(name="image", shape=["batch", 3, 320, 320])])
    assert (fitted.pre.crop, fitted.pre.resize) == (320, 366)
    assert any("centre-cropped to 320: the input's static size" in n for n in fitted.notes)
    assert next(fitted.calibration()).feeds["image"].shape == (1, 3, 320, 320)
    nhwc = usage_error(make, tmp_path / "img", inputs=[InputSpec(name="image", shape=["batch", 16, 16, 3])])
    assert "has 16 channels" in nhwc and "layout NCHW" in nhwc
    flat = usage_error(make, tmp_path / "img", inputs=[InputSpec(name="image", shape=["batch", 768])])
    assert "images need a 4-D input" in flat
    np.save(tmp_path / "floats.npy", np.zeros((2, 3), np.float32))
    ids = usage_error(make, tmp_path / "floats.npy", inputs=[InputSpec(name="ids", shape=["batch", 3], dtype="int64")])
    assert ids == f"tensor file {tmp_path / 'floats.npy'} holds float32 values, input 'ids' takes int64"


def test_nan_inf_and_unreadable_tensors(tmp_path):
    x = np.zeros((3, 4, 4), np.float32)
    x[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", x)
    assert usage_error(make, tmp_path / "nan.npy", inputs=TENSOR_INPUT) == \
        f"tensor file {tmp_path / 'nan.npy'} holds NaN values; input 'x' needs finite data"
    batch = np.zeros((4, 3, 4, 4), np.float32)
    batch[2, 0, 0, 0] = -np.inf
    np.savez_compressed(tmp_path / "inf.npz", x=batch)
    assert f"tensor file {tmp_path / 'inf.npz'} (sample 2) holds Inf values" in \
        usage_error(make, tmp_path / "inf.npz", inputs=TENSOR_INPUT, holdout=0.0)
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    assert usage_error(make, tmp_path / "junk.npy", inputs=TENSOR_INPUT).startswith(
        f"cannot read tensor file {tmp_path / 'junk.npy'}")
    np.save(tmp_path / "short.npy", np.zeros((8, 3, 4, 4), np.float32))
    raw = (tmp_path / "short.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(raw[: len(raw) - 100])
    assert usage_error(make, tmp_path / "short.npy", inputs=TENSOR_INPUT).startswith(
        f"cannot read tensor file {tmp_path / 'short.npy'}")
    np.savez(tmp_path / "labels.npz", x=np.zeros((4, 3, 4, 4), np.float32), labels=np.arange(3))
    assert f"the `labels` array of {tmp_path / 'labels.npz'} must hold 4 integer(s)" in \
        usage_error(make, tmp_path / "labels.npz", inputs=TENSOR_INPUT)


# ---------------------------------------------------------------- the real digits set


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calib")
    proc = subprocess.run([sys.executable, str(REPO / "calib_data" / "materialise_digits.py"), str(out)],
                          capture_output=True, text=True, check=True)
    assert "1797 real handwritten digits" in proc.stdout and "digits.npz" in proc.stdout
    return out


@pytest.mark.slow
def test_digits_materialised_deterministically(digits, tmp_path):
    pngs = sorted(p.relative_to(digits).as_posix() for p in (digits / "digits").rglob("*.png"))
    assert len(pngs) == 1797 and (digits / "digits" / ".complete").is_file()
    assert sorted({p.split("/")[1] for p in pngs}) == [str(i) for i in range(10)]
    subprocess.run([sys.executable, str(REPO / "calib_data" / "materialise_digits.py"), str(tmp_path)],
                   capture_output=True, check=True)
    for rel in [*pngs[::97], "digits.npz"]:
        assert (digits / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel
    from sklearn.datasets import load_digits

    ref = load_digits()
    with np.load(digits / "digits.npz") as z:
        assert z["input"].shape == (1797, 1, 8, 8) and z["input"].dtype == np.float32
        assert np.array_equal(z["input"][:, 0], (ref.images / 16).astype(np.float32))
        assert z["labels"].dtype == np.int64 and np.array_equal(z["labels"], ref.target)
    index = 1234
    png = np.asarray(Image.open(digits / "digits" / str(ref.target[index]) / f"{index:04d}.png"))
    assert png.dtype == np.uint8 and np.array_equal(png, np.floor(ref.images[index] * 255 / 16 + 0.5))


def test_digits_as_calibration_data(digits):
    inputs = [InputSpec(name="x", shape=["batch", 1, 8, 8])]
    pre = ImagePreprocess(resize=8, crop=8, scale=1 / 255)
    folder = make(digits / "digits", inputs=inputs, pre=pre, num_samples=256, holdout=0.2, seed=5)
    assert folder.labels == [str(i) for i in range(10)] and folder.notes == []
    assert (folder.num_calibration, folder.num_evaluation) == (256, 359)
    with np.load(digits / "digits.npz") as z:
        ref, ref_labels = z["input"], z["labels"]
    for s in folder.evaluation():
        label, name = s.source.split("/")
        i = int(name.removesuffix(".png"))
        assert s.label == int(label) == ref_labels[i]
        assert np.abs(s.feeds["x"] - ref[i]).max() <= 0.5 / 255 + 1e-6  # the PNG rounding, nothing else
    packed = make(digits / "digits.npz", inputs=inputs, pre=pre, num_samples=256, holdout=0.2, seed=5)
    assert packed.labels == folder.labels and (packed.num_calibration, packed.num_evaluation) == (256, 359)
    ev = list(packed.evaluation())
    assert {s.source.split("[")[0] for s in ev} == {"digits.npz"}
    assert (np.bincount([s.label for s in ev], minlength=10) > 20).all()  # every class held out
    batch = next(packed.batches("calibration", 64))
    assert batch["x"].shape == (64, 1, 8, 8) and 0 <= batch["x"].min() and batch["x"].max() <= 1
