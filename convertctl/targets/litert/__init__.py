"""LiteRT (TensorFlow Lite): `model.tflite` converted from the ONNX by onnx2tf in an environment of its own, or from
a TensorFlow source by TensorFlow's TFLiteConverter, run by ai-edge-litert's Interpreter (target.py)."""
