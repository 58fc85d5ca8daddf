"""The `tensorrt_rtx` target: NVIDIA TensorRT for RTX engines, built ahead of time on any machine (target.py)."""
