"""The onnxruntime target: options.py (recipe options), check.py (its judge), target.py (build, runner, TARGET)."""
