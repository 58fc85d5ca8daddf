"""Budgets every user input is held to before it is read or allocated (docs/recipe.md#limits).

A small hostile file must never hang a command or fill the memory: whatever would exceed a budget is
refused with exit 2 and one line naming the key to change. Stdlib only: the recipe schema imports this.
"""

from __future__ import annotations

import math
import os

from convertctl.errors import UsageError

# A recipe file: the largest shipped one is 2.5 KB. PyYAML (pure Python, for the node count below) reads
# 256 KiB of the slowest kind of YAML in about a second on a busy 2-core machine, 1 MiB in four.
MAX_RECIPE_BYTES = 256 << 10
# YAML nodes once aliases are expanded (a "billion laughs" file of 450 bytes expands to 10**9). The shipped
# recipes have 54 to 158; 10,000 leaves room for long factory_args lists and composes in about a second.
MAX_YAML_NODES = 10_000
# Nesting of YAML collections (a recipe nests 5 deep); PyYAML composes recursively, [[[[...]]]] would
# otherwise end in a RecursionError.
MAX_YAML_DEPTH = 64
# One dimension of a shape or a `dims` range: what a 32-bit dim holds (runtimes and TensorRT profiles).
MAX_DIM = 2**31 - 1
# Tensor samples (.npy/.npz) in calibration data: the split keeps index lists per sample; calibration
# needs hundreds.
MAX_DATA_SAMPLES = 1_000_000
# Pixels of an image as decoded or resized (Pillow's own warning threshold: 89.5 megapixels, ~256 MiB RGB).
MAX_IMAGE_PIXELS = 89_478_485

# Bytes one batch held in memory may take: the sample batch of all inputs, the held-out calibration split,
# the latency batch, one tensor sample, a compressed .npz member. Raised with the environment variable.
TENSOR_BUDGET_ENV = "CONVERTCTL_MAX_TENSOR_BYTES"
DEFAULT_TENSOR_BYTES = 2 << 30

ITEMSIZE = {"float32": 4, "float16": 2, "float64": 8, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1,
            "bool": 1}


def tensor_budget() -> int:
    """The tensor budget in bytes: $CONVERTCTL_MAX_TENSOR_BYTES if set (an integer), else 2 GiB."""
    text = os.environ.get(TENSOR_BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_TENSOR_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{TENSOR_BUDGET_ENV}={text!r}: expected a number of bytes, e.g. {DEFAULT_TENSOR_BYTES}")
    return value


def budget_hint() -> str:
    return f"if the machine has the memory, raise the budget with {TENSOR_BUDGET_ENV}=BYTES (see docs/recipe.md#limits)"


def nbytes(shape, itemsize: int) -> int:
    """Bytes of an array; Python ints, so an absurd shape cannot overflow into a small number."""
    return math.prod(int(d) for d in shape) * int(itemsize)


def fmt_bytes(n: int) -> str:
    """`1.9 TiB`, `2.0 GiB`, `12.3 MiB`; exact below 1 MiB (`1,436 bytes`), where a difference is a few bytes."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:,} bytes"
