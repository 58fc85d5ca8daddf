"""MTCNN's proposal network (P-Net) in plain torch, for the state dict `pnet.pt` of facenet-pytorch 2.6.0 (MIT).

The layer names and shapes are facenet-pytorch's (`facenet_pytorch/models/mtcnn.py`), so its state dict loads
strictly. Input: RGB, (pixel - 127.5) / 128, NCHW, any height and width >= 12. Outputs: box regression
[N, 4, h, w] and face probability [N, 2, h, w] (softmax over the channel axis).
"""

import torch
from torch import nn


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


def build() -> nn.Module:
    """The network without weights: the recipe's `source.path` (pnet.pt) is loaded into it strictly."""
    return PNet().eval()
