"""The ncnn target: options.py (recipe options), convert.py (pnnx in a child process), runner.py (ncnn.Net, one
sample at a time), layers.py (blob-by-blob comparison), check.py (its judge), target.py (build, TARGET)."""
