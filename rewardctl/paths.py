"""Where rewardctl keeps its caches: ``$REWARDCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/rewardctl``,
else ``~/.cache/rewardctl``. Models (the assembled GGUF) and LM responses live in sub-folders."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    explicit = os.environ.get("REWARDCTL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rewardctl"


def models_dir() -> Path:
    return Path(os.environ.get("REWARDCTL_MODELS_DIR") or cache_root() / "models").expanduser()


def responses_dir() -> Path:
    return cache_root() / "responses"
