"""LiteRT (TensorFlow Lite): `model.tflite` converted from the ONNX by onnx2tf in an environment of its own, run by
ai-edge-litert's Interpreter (target.py)."""
