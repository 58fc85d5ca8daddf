"""Where convertctl keeps what outlives a run: the cache folder and the stage cache inside it.

The cache folder (`default_cache_dir`) holds `stages/` (the stage cache, stage_cache.py), `calibration/`
(calibration tables, unless the recipe names `calibration.cache`), `envs/<stack>/` (the framework environments
`make frameworks` creates, frontends/interpreters.py) and `tensorrt/` (TensorRT timing caches, trt/builder.py).
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$CONVERTCTL_CACHE, else $XDG_CACHE_HOME/convertctl, else ~/.cache/convertctl."""
    if os.environ.get("CONVERTCTL_CACHE"):
        return Path(os.environ["CONVERTCTL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convertctl"


def stage_cache_dir() -> Path | None:
    """The stage cache's folder: $CONVERTCTL_STAGE_CACHE, else <cache dir>/stages; None when caching is off
    ($CONVERTCTL_STAGE_CACHE set to off, 0, false or no)."""
    value = os.environ.get("CONVERTCTL_STAGE_CACHE")
    if value and value.lower() in ("off", "0", "false", "no"):
        return None
    if value:
        return Path(value)
    return default_cache_dir() / "stages"
