"""On-disk cache of model replies, keyed by model, prompt and sampling parameters.

Backed by diskcache (SQLite; safe across processes). Only replies are stored: a request that
failed (timeout, provider error) never is. Keys never include API keys.

The cache never fails a run. A corrupt one (SQLite: "file is not a database", "database disk
image is malformed"), found when it is opened or later, is set aside as
``<dir>.corrupt-<time>`` and started afresh; one that cannot be opened, read or written (a
read-only folder, a full disk, a lock held too long) is dropped for the rest of the run: the
run goes on uncached. Either way one warning (rewardctl.errors.warn) says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import sqlite3
import time
from pathlib import Path
from typing import Any

from rewardctl.errors import one_line, warn

CACHE_FORMAT = 1
DB_NAME = "cache.db"  # diskcache's SQLite file in the folder

# (folder, what) already warned about in this process: several caches on one folder (the run's,
# an LM judge's) warn once.
_WARNED: set[tuple[str, str]] = set()


def cache_key(payload: dict[str, Any]) -> str:
    canonical = json.dumps({"format": CACHE_FORMAT, **payload}, sort_keys=True,
                           ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _warn_once(directory: Path, what: str, message: str) -> None:
    if (str(directory), what) not in _WARNED:
        _WARNED.add((str(directory), what))
        warn(message)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _reason(exc: BaseException) -> str:
    """What went wrong, in a few words (diskcache's Timeout hides the SQLite error behind it)."""
    cause = exc.__context__ if not str(exc) and exc.__context__ is not None else exc
    return one_line(str(cause) or type(cause).__name__, 160)


def _is_corrupt(exc: BaseException) -> bool:
    """SQLite's verdict on the file itself; OperationalError (read-only, full, locked) is not."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


class ResponseCache:
    def __init__(self, directory: str | Path, size_limit_bytes: int = 4 * 1024**3):
        # diskcache: only runs that cache responses need it (start-up time).
        import diskcache

        self.directory = Path(directory)
        self.size_limit = size_limit_bytes
        self.hits = 0
        self.misses = 0
        self._diskcache = diskcache
        # What the cache may raise besides corruption: the run then goes on without it.
        self._unusable = (sqlite3.Error, OSError, diskcache.Timeout)
        self._cache: Any = None
        self._opened: tuple[int, int] | None = None  # the SQLite file this instance opened
        self._set_aside_once = False
        self._open()

    @property
    def enabled(self) -> bool:
        return self._cache is not None

    def _open(self) -> None:
        before = _identity(self.directory / DB_NAME)
        try:
            self._cache = self._diskcache.Cache(str(self.directory), size_limit=self.size_limit)
        except self._unusable as exc:
            self._cache = None
            self._opened = before
            self._failed(exc, "cannot be opened")
            return
        self._opened = _identity(self.directory / DB_NAME)

    def _failed(self, exc: BaseException, doing: str) -> None:
        """Set a corrupt cache aside and start afresh, or go on without a cache."""
        self._close_quietly()
        if _is_corrupt(exc) and not self._set_aside_once:
            self._set_aside_once = True
            if self._set_aside(exc):
                self._open()
            return
        _warn_once(self.directory, "unusable", f"response cache {self.directory} {doing} "
                   f"({_reason(exc)}); continuing without a cache")

    def _set_aside(self, exc: BaseException) -> bool:
        """Rename the corrupt folder out of the way, unless another run (or another cache in this
        one) already replaced it; False, after a warning, when it cannot be moved."""
        if self._opened is not None and _identity(self.directory / DB_NAME) != self._opened:
            return True  # already set aside and rebuilt by someone else: open the new one
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.directory.with_name(f"{self.directory.name}.corrupt-{stamp}")
        if aside.exists():
            aside = aside.with_name(f"{aside.name}-{os.getpid()}")
        try:
            os.rename(self.directory, aside)
        except OSError as move:
            _warn_once(self.directory, "unusable", f"response cache {self.directory} is corrupt "
                       f"({_reason(exc)}) and cannot be set aside ({_reason(move)}); continuing "
                       "without a cache")
            return False
        _warn_once(self.directory, "corrupt", f"response cache {self.directory} was corrupt "
                   f"({_reason(exc)}); set it aside as {aside} and started an empty one")
        return True

    def get(self, key: str) -> dict[str, Any] | None:
        value = None
        if self._cache is not None:
            try:
                value = self._cache.get(key)
            except (pickle.UnpicklingError, EOFError):
                value = None  # one unreadable entry: a miss, and the reply overwrites it
            except self._unusable as exc:
                self._failed(exc, "cannot be read")
                value = None
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        if self._cache is None:
            return
        try:
            self._cache.set(key, value)
        except self._unusable as exc:
            self._failed(exc, "cannot be written")

    def _close_quietly(self) -> None:
        if self._cache is not None:
            with contextlib.suppress(*self._unusable):
                self._cache.close()
            self._cache = None

    def close(self) -> None:
        self._close_quietly()
