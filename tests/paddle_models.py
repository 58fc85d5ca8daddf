"""Write small real Paddle inference models with seeded random weights, for the Paddle worker's tests.

A script run with a Paddle environment's python (pytest does not import it):

    python tests/paddle_models.py OUT_DIR FORMAT

FORMAT: legacy | pir (a small CNN, input "x" [-1, 3, 32, 32] float32, 10 classes) or legacy2 | pir2 (inputs
"a" [-1, 6] and "b" [-1, 3], two outputs, to check output ordering). "legacy" writes inference.pdmodel +
inference.pdiparams (Paddle 2.x always does; Paddle 3 only with FLAGS_enable_pir_api=0, which must be set
before paddle is imported); "pir" writes Paddle 3's inference.json + inference.pdiparams. Prints the written
file paths, one a line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

FORMATS = ("legacy", "pir", "legacy2", "pir2")


def _parse_args() -> tuple[Path, str]:
    if len(sys.argv) != 3 or sys.argv[2] not in FORMATS:
        sys.exit(f"usage: python {sys.argv[0]} OUT_DIR {{{'|'.join(FORMATS)}}}")
    return Path(sys.argv[1]), sys.argv[2]


OUT_DIR, FORMAT = _parse_args()
LEGACY = FORMAT.startswith("legacy")
# The IR is chosen when paddle is imported: the flag must be in the environment first.
os.environ["FLAGS_enable_pir_api"] = "0" if LEGACY else "1"

import paddle  # noqa: E402
from paddle import nn  # noqa: E402

PADDLE3 = int(paddle.__version__.split(".")[0]) >= 3 or paddle.__version__.startswith("0.0.0")


class SmallCNN(nn.Layer):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2D(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2D(8)
        self.pool = nn.MaxPool2D(2)
        self.fc = nn.Linear(8 * 16 * 16, classes)

    def forward(self, x):
        y = self.pool(nn.functional.relu(self.bn(self.conv(x))))
        return self.fc(paddle.flatten(y, 1))


class TwoInOut(nn.Layer):
    """Two inputs, two outputs of different shapes: a wrong output order is caught by shape or by value."""

    def __init__(self):
        super().__init__()
        self.fa = nn.Linear(6, 4)
        self.fb = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, a, b):
        # relu, not tanh: Paddle 3.3's paddle.tanh cannot be traced into the old IR (legacy2)
        h = nn.functional.relu(self.fa(a) + self.fb(b))
        return h, self.head(h)


def _randomize(model: nn.Layer) -> None:
    """Non-trivial BatchNorm statistics so that a dropped or mis-folded BN shows up in the comparison."""
    for name, buf in model.named_buffers():
        if name.endswith("_mean"):
            buf.set_value(paddle.uniform(buf.shape, min=-0.5, max=0.5))
        elif name.endswith("_variance"):
            buf.set_value(paddle.uniform(buf.shape, min=0.5, max=1.5))


def build() -> tuple[nn.Layer, list]:
    from paddle.static import InputSpec

    paddle.seed(0)
    if FORMAT.endswith("2"):
        model = TwoInOut()
        specs = [InputSpec([-1, 6], "float32", name="a"), InputSpec([-1, 3], "float32", name="b")]
    else:
        model = SmallCNN()
        specs = [InputSpec([-1, 3, 32, 32], "float32", name="x")]
    _randomize(model)
    model.eval()
    return model, specs


def main() -> None:
    if not LEGACY and not PADDLE3:
        sys.exit(f"paddlepaddle {paddle.__version__} cannot write PIR models (inference.json): use Paddle 3")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    model, specs = build()
    prefix = OUT_DIR / "inference"
    paddle.jit.save(model, str(prefix), input_spec=specs)
    suffix = ".pdmodel" if LEGACY else ".json"
    written = [prefix.with_suffix(suffix), prefix.with_suffix(".pdiparams")]
    missing = [p for p in written if not p.is_file()]
    if missing:
        sys.exit(f"paddle {paddle.__version__} did not write {', '.join(map(str, missing))}")
    for p in written:
        print(p)


if __name__ == "__main__":
    main()
