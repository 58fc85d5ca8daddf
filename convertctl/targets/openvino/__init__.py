"""The openvino target: options.py (recipe options), check.py (its judge), target.py (build with NNCF, runner,
TARGET)."""
