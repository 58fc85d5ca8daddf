"""The mnn target: options.py (recipe options), tool.py (MNN's native converter and quantizer in a child process),
worker.py (that child), quant.py (INT8 from convertctl's calibration samples), check.py (its judge), runner.py (MNN's
Python runtime), target.py (build, TARGET)."""
