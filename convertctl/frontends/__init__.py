"""Front ends: framework -> ONNX. One package per framework (onnx/, pytorch/, paddle/, tensorflow/), each with
its record `FRONTEND` (base.py), found by registry.py. Framework code runs in a child process (child.py runs
it, worker.py helps inside it); formats.py, interpreters.py, converted.py and dims.py are shared."""
