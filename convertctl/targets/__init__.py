"""Deployment targets: each package here is one target (see registry.py and base.py)."""
