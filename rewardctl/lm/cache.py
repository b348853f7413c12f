"""On-disk cache of model replies, keyed by model, prompt and sampling parameters.

Backed by diskcache (SQLite; safe across processes). Only replies are stored: a request that
failed (timeout, provider error) never is. Keys never include API keys.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CACHE_FORMAT = 1


def cache_key(payload: dict[str, Any]) -> str:
    canonical = json.dumps({"format": CACHE_FORMAT, **payload}, sort_keys=True,
                           ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, directory: str | Path, size_limit_bytes: int = 4 * 1024**3):
        # diskcache: only runs that cache responses need it (start-up time).
        import diskcache

        self.directory = Path(directory)
        self._cache = diskcache.Cache(str(self.directory), size_limit=size_limit_bytes)
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._cache.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        self._cache.set(key, value)

    def close(self) -> None:
        self._cache.close()
