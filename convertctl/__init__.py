"""convertctl: trained models to verified, deployable artifacts (ONNX, OpenVINO IR, ONNX Runtime, TensorRT engines)."""

__version__ = "0.1.0"
