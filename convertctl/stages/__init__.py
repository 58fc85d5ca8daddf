"""The pipeline's stages, one module each (pipeline.py orders them): export, check, optimize, quantize, build (with
kit), latency, manifest. Each takes the run's context (context.RunContext) and the model in flight
(context.ModelInFlight) and returns its output and records; cache.py runs or restores any of them."""
