"""Sample data: real-image preprocessing arithmetic, seeded random tensors, batch handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convertctl.data.images import preprocess
from convertctl.data.samples import build_samples
from convertctl.errors import UsageError
from convertctl.recipe import DimRange, ImagePreprocess, InputSpec, Samples

from .conftest import IMAGES


def test_preprocess_arithmetic(tmp_path):
    # 40x20 image: left half red (200,0,0), right half blue (0,0,100)
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (200, 0, 0)
    arr[:, 20:] = (0, 0, 100)
    path = tmp_path / "two.png"
    Image.fromarray(arr).save(path)
    pre = ImagePreprocess(resize=10, crop=10, mean=[100, 0, 50], std=[50, 1, 25])
    x = preprocess(path, pre)
    assert x.shape == (3, 10, 10) and x.dtype == np.float32
    # resize short side 20 -> 10 gives 20x10; centre crop keeps columns 5..14: 5 red then 5 blue
    assert x[0, 5, 0] == pytest.approx((200 - 100) / 50)
    assert x[2, 5, 9] == pytest.approx((100 - 50) / 25)
    bgr = preprocess(path, ImagePreprocess(resize=10, crop=10, color="BGR", layout="NHWC"))
    assert bgr.shape == (10, 10, 3) and bgr[5, 0, 2] == pytest.approx(200)  # red lands in channel 2


def test_real_images_feed_and_hash_is_stable():
    inputs = [InputSpec(name="img", shape=["batch", 3, 224, 224])]
    samples = Samples(images=IMAGES, count=5, seed=1,
                      preprocess=ImagePreprocess(mean=[127] * 3, std=[128] * 3))
    a = build_samples(inputs, {"batch": DimRange()}, samples)
    b = build_samples(inputs, {"batch": DimRange()}, samples)
    assert a.feeds["img"].shape == (5, 3, 224, 224)
    assert -1.0 <= a.feeds["img"].min() and a.feeds["img"].max() <= 128 / 128
    assert a.feeds["img"].std() > 0.2  # real photographs, not a constant
    assert a.sha256 == b.sha256
    c = build_samples(inputs, {"batch": DimRange()}, samples.model_copy(update={"seed": 2}))
    assert c.sha256 != a.sha256  # the seed picks different images


def test_random_inputs_respect_dtype_range_and_fixed_batch():
    inputs = [InputSpec(name="x", shape=[2, "seq"], dtype="float32", range=(-3, -2)),
              InputSpec(name="ids", shape=[2, "seq"], dtype="int64", range=(0, 9))]
    s = build_samples(inputs, {"seq": DimRange(min=4, opt=7, max=9)}, Samples(count=8))
    assert s.feeds["x"].shape == (8, 7) and s.feeds["ids"].shape == (8, 7)  # opt of the symbolic dim
    assert s.feeds["x"].min() >= -3 and s.feeds["x"].max() <= -2
    assert s.feeds["ids"].dtype == np.int64 and s.feeds["ids"].max() <= 9
    assert s.notes == []  # 8 samples run as 4 batches of the fixed batch 2


def test_fixed_batch_needs_a_multiple_and_chunks_follow_the_model():
    from convertctl.data.batching import chunk_size, run_in_chunks

    s = build_samples([InputSpec(name="x", shape=[4, 3])], {}, Samples(count=2))
    assert s.feeds["x"].shape == (4, 3) and "changed to 4" in s.notes[0]
    s = build_samples([InputSpec(name="x", shape=[4, 3])], {}, Samples(count=10))
    assert s.feeds["x"].shape == (8, 3) and "changed to 8" in s.notes[0]
    dims = {"b": DimRange(max=3)}
    s = build_samples([InputSpec(name="x", shape=["b", 3])], dims, Samples(count=8))
    assert s.feeds["x"].shape == (8, 3) and s.notes == []
    chunk = chunk_size([InputSpec(name="x", shape=["b", 3])], dims)
    seen = []
    out = run_in_chunks(lambda f: (seen.append(len(f["x"])), [f["x"] * 2])[1], s.feeds, chunk)
    assert chunk == 3 and seen == [3, 3, 2]  # the model never sees more than its max batch
    assert np.array_equal(out[0], s.feeds["x"] * 2)


def test_unknown_samples_input():
    with pytest.raises(UsageError, match="samples.input 'y' is not an input"):
        build_samples([InputSpec(name="x", shape=[1, 3])], {}, Samples(input="y"))


def test_image_shape_mismatch_is_clear():
    inputs = [InputSpec(name="img", shape=["batch", 3, 32, 32])]
    with pytest.raises(UsageError, match=r"image preprocessing gives \[3, 224, 224\]"):
        build_samples(inputs, {"batch": DimRange()}, Samples(images=IMAGES, count=2))


def test_empty_image_folder(tmp_path):
    inputs = [InputSpec(name="img", shape=["batch", 3, 224, 224])]
    with pytest.raises(UsageError, match="no images"):
        build_samples(inputs, {"batch": DimRange()}, Samples(images=Path(tmp_path), count=2))


def test_too_few_images(tmp_path):
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(tmp_path / "a.png")
    inputs = [InputSpec(name="img", shape=["batch", 3, 224, 224])]
    with pytest.raises(UsageError, match="holds only 1 images"):
        build_samples(inputs, {"batch": DimRange()}, Samples(images=tmp_path, count=3))
