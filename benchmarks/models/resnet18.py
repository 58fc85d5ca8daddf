"""ResNet-18 (the standard BasicBlock layout of He et al. 2015 / torchvision's `resnet18`), 1000 classes,
in plain torch: no torchvision exists for this CPU stack.

The weights are NOT trained: no pretrained ResNet-18 can be obtained here (no network beyond package
registries, and no wheel carries them). They are seeded random, initialised as torchvision does (Kaiming
normal, fan_out, for the convolutions; BatchNorm weight 1, bias 0; PyTorch's default for the classifier).
The BatchNorm running statistics are then set once from real images, so that the activations have the
ranges of real inputs rather than the ones at init time: the model runs in train mode, without gradients,
over 4 batches of 16 images of `calib_data/images` (a seeded choice of the sorted files) with the demo
recipe's preprocessing (short side 256, centre crop 224, (pixel - 127) / 128), and every BatchNorm keeps
the plain average of the batch statistics (`momentum=None`). Nothing else is learned.

So this model is good for latency (the compute is exactly ResNet-18's) and for a numerical-fidelity check
of INT8 (cosine / SQNR against FP32), not for any claim about model quality or top-1 accuracy.

`build()` is deterministic: the same bytes of weights in every process (its own seed, independent of the
global RNG; BatchNorm statistics computed with 1 thread), which the latency benchmark relies on when it
builds the PyTorch baseline in its own process. The statistics pass takes a few seconds, so its result is
cached in `benchmarks/_work/cache/` under a key of everything it depends on (this file, the chosen images'
bytes, the torch version); a cached build and a fresh one are bit-identical. `build(cache=False)` skips it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

SEED = 0
IMAGES = Path(__file__).resolve().parents[2] / "calib_data" / "images"  # `make data`
CACHE = Path(__file__).resolve().parents[1] / "_work" / "cache"  # git-ignored
BN_BATCHES, BN_BATCH_SIZE = 4, 16
RESIZE, CROP, MEAN, STD = 256, 224, 127.0, 128.0  # the demo recipe's preprocessing (EfficientNet-Lite's)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths, cin, layers = (64, 128, 256, 512), 64, []
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's initialisation (zero_init_residual=False)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _load(path: Path) -> torch.Tensor:
    """One image, preprocessed like the demo recipe: RGB, short side RESIZE (bilinear), centre crop CROP,
    (pixel - MEAN) / STD, [3, CROP, CROP] float32 (the same steps as convertctl.data.images.preprocess)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
    w, h = img.size
    s = RESIZE / min(w, h)
    img = img.resize((max(CROP, round(w * s)), max(CROP, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - CROP) // 2, (h - CROP) // 2
    x = np.asarray(img.crop((left, top, left + CROP, top + CROP)), dtype=np.float32)
    return torch.from_numpy(((x - MEAN) / STD).transpose(2, 0, 1).copy())


def bn_images() -> list[Path]:
    """The images the BatchNorm statistics come from: a seeded choice of BN_BATCHES * BN_BATCH_SIZE files."""
    files = sorted(p for p in IMAGES.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    need = BN_BATCHES * BN_BATCH_SIZE
    if len(files) < need:
        raise FileNotFoundError(
            f"ResNet-18 BatchNorm statistics need {need} images in {IMAGES}, found "
            f"{len(files)}: run `make data`"
        )
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(SEED)).tolist()
    return [files[i] for i in order[:need]]


@torch.no_grad()
def _set_batchnorm_stats(model: nn.Module) -> None:
    files = bn_images()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches, not an exponential one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same reduction order in every process, whatever its thread setting
    try:
        model.train()
        for b in range(BN_BATCHES):
            batch = files[b * BN_BATCH_SIZE : (b + 1) * BN_BATCH_SIZE]
            model(torch.stack([_load(p) for p in batch]))
    finally:
        torch.set_num_threads(threads)
        model.eval()
    for bn in bns:
        bn.momentum = 0.1  # back to the default (only matters if someone trains it)


def _cache_file() -> Path:
    import hashlib

    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(torch.__version__.encode())
    for p in bn_images():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return CACHE / f"resnet18.{h.hexdigest()[:16]}.pt"


def build(cache: bool = True) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # own seed; the caller's RNG state is left alone
        torch.manual_seed(SEED)
        model = ResNet18()
    file = _cache_file() if cache else None
    if file is not None and file.exists():
        model.load_state_dict(torch.load(file, weights_only=True))
    else:
        _set_batchnorm_stats(model)
        if file is not None:
            import os

            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".{os.getpid()}.tmp")
            torch.save(model.state_dict(), tmp)
            tmp.replace(file)  # atomic: a reader never sees half a file
    return model.eval()
