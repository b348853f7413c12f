"""File output: atomic writes, and JSONL streams that are only published when complete.

A crash (even kill -9) leaves every output either in its old or its new state: content goes to
a temporary file in the same folder, is fsynced, then renamed over the target. A write that
fails (a full disk, a folder made read-only meanwhile) is a one-line RunError naming the file.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import IO, Any

import orjson

from rewardctl.errors import InputError, RunError


def open_input(path: str | Path, kind: str) -> IO[bytes]:
    """Open a file the user named; failures become one-line InputErrors naming it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise InputError(f"is a directory, not {kind}", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None


def write_failed(path: str | Path, exc: OSError) -> RunError:
    return RunError(f"{path}: cannot write: {exc.strerror or exc}")


def dumps_line(obj: Any) -> bytes:
    """One compact JSON line. orjson (5x faster than the stdlib), which refuses rather than
    rounds what it cannot write exactly (integers beyond 64 bits): those lines go through the
    stdlib. Scores are finite by the time they are written (rewards refuse NaN), so orjson's
    NaN-as-null never applies."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _create_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new file next to ``name``, created like any other file (mode 0o666 less the umask, as
    predictions.jsonl is), unlike tempfile.mkstemp's owner-only 0o600."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name in {folder}")


def atomic_write_bytes(path: str | Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsynced, then
    renamed over ``path``; the temporary file is removed if anything fails. The file gets the
    permissions of a normally created one (the umask applies). ``sync=False`` skips the fsync: the
    rename still never shows a half-written file to a process, only a crash of the whole machine
    may lose it (for a file rewritten many times a second)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(path.parent, path.name)
    except OSError as exc:
        raise write_failed(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_failed(path, exc) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False) + "\n")


class JsonlWriter:
    """Appends JSON lines to ``<path>.partial``, flushed per batch; ``commit()`` renames it to
    ``path``. An interrupted run leaves whole lines in the .partial file and ``path`` untouched."""

    def __init__(self, path: str | Path, append: bool = False):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.lines = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if append and self.partial.exists():
                with open(self.partial, "rb") as existing:
                    self.lines = sum(1 for _ in existing)
            self._handle: IO[bytes] | None = open(self.partial, "ab" if append else "wb")  # noqa: SIM115 (lives across calls; closed by commit/close)
        except OSError as exc:
            raise write_failed(self.partial, exc) from None

    def write(self, obj: Any) -> None:
        self.write_line(dumps_line(obj))

    def write_line(self, line: bytes) -> None:
        """One line, already encoded and ending in a newline."""
        assert self._handle is not None
        try:
            self._handle.write(line)
        except OSError as exc:
            raise write_failed(self.partial, exc) from None
        self.lines += 1

    def flush(self) -> None:
        if self._handle is not None:
            try:
                self._handle.flush()
            except OSError as exc:
                raise write_failed(self.partial, exc) from None

    def commit(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
            os.replace(self.partial, self.path)
        except OSError as exc:
            raise write_failed(self.path, exc) from None

    def close(self) -> None:
        """Close without publishing (the .partial file stays for inspection or resume)."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.close()  # flushes first
            except OSError as exc:
                raise write_failed(self.partial, exc) from None
