"""Front ends: framework -> ONNX. Framework code runs in a child process (see child.py)."""
