"""Quantization: calibration data, one calibration table, per-target Q/DQ / NNCF / FP16 emission."""
