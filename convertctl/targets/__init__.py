"""Deployment targets. Each file here defines one target and registers itself (see registry.py)."""
