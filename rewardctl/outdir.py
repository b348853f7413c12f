"""The output folder a command writes (--out): checked before any work, and held by one run.

``claim_out_dir`` refuses, as a usage error naming the path, an --out that is a file or a folder
that cannot be written, then takes an exclusive ``flock`` on ``<out>/.rewardctl.lock``; a second
run on the same folder is refused with the pid, command line and start time of the first. The
kernel drops a flock when its process ends, however it ends, so a killed run never leaves a lock
that blocks: its stale file is simply taken over. The file is removed when the run finishes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rewardctl.errors import InputError

try:
    import fcntl
except ImportError:  # Windows: no flock; the folder checks still apply, the lock does not.
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".rewardctl.lock"


def check_out_dir(path: str | Path) -> list[Path]:
    """Raise a one-line InputError when ``path`` cannot be an output folder (a file, a folder
    that is not writable, under a file); create it. Returns the folders created here, the
    deepest last (none when it existed)."""
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise InputError("is a file, not a folder; --out names the folder to write to", path=str(out))
        if not os.access(out, os.W_OK | os.X_OK):
            raise InputError("the folder is not writable", path=str(out))
        return []
    missing = [out, *(p for p in out.parents if not p.exists())][::-1]
    existing = missing[0].parent
    if existing.exists() and not existing.is_dir():
        raise InputError(f"cannot create the folder: {existing.absolute()} is a file", path=str(out))
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"cannot create the folder: {existing.absolute()} is not writable", path=str(out))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}", path=str(out)) from None
    return missing


def check_out_file(path: str | Path) -> None:
    """An --out that names a file to write: not a folder, in a folder that can be written."""
    out = Path(path)
    if out.is_dir():
        raise InputError("is a folder; --out names the file to write", path=str(out))
    folder = out.absolute().parent
    if folder.exists() and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise InputError(f"cannot write here: {folder} is not a writable folder", path=str(out))


def _holder(fd: int) -> str:
    """Who holds the lock, from what they wrote in it (possibly nothing yet)."""
    try:
        info: dict[str, Any] = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another run (starting)"
    host = f" on {info['host']}" if info.get("host") else ""
    command = str(info.get("command", "?"))
    command = command if len(command) <= 120 else command[:117] + "..."
    return f"pid {info['pid']}{host}, `{command}`, since {info.get('since', '?')}"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _lock(out: Path) -> int | None:
    """An fd holding the exclusive flock on the folder's lock file, its holder's details written
    in it; None where there is no flock. Retries when the file it locked was removed meanwhile
    (its previous holder finishing), so that two runs never hold two different files."""
    if fcntl is None:
        return None
    path = out / LOCK_NAME
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"cannot write in the folder: {exc.strerror or exc}", path=str(out)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise InputError(f"in use by another run ({holder}); wait for it to finish or choose "
                             "another --out", path=str(out)) from None
        if _same_file(fd, path):
            break
        os.close(fd)
    else:  # pragma: no cover - only a folder whose lock file keeps being replaced
        raise InputError("could not take the folder's lock file", path=str(out))
    info = {"pid": os.getpid(), "host": os.uname().nodename,
            "command": shlex.join(["rewardctl", *sys.argv[1:]]),
            "since": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return fd


def _unlock(out: Path, fd: int | None, created: list[Path]) -> None:
    """Remove the lock file (only if it is still ours), release the lock, and remove the folders
    this run created again when it wrote nothing in them."""
    if fd is not None:
        path = out / LOCK_NAME
        if _same_file(fd, path):
            with contextlib.suppress(OSError):
                path.unlink()
        os.close(fd)
    for folder in reversed(created):
        try:
            folder.rmdir()  # fails, as it should, unless the folder is empty
        except OSError:
            break


@contextlib.contextmanager
def claim_out_dir(path: str | Path | None) -> Iterator[Path | None]:
    """Check ``path`` as an output folder (``check_out_dir``) and hold it for the duration: a
    second run on it meanwhile gets a usage error naming this one. ``None`` (no --out) claims
    nothing."""
    if path is None:
        yield None
        return
    out = Path(path)
    created = check_out_dir(out)
    try:
        fd = _lock(out)
    except BaseException:
        _unlock(out, None, created)
        raise
    try:
        yield out
    finally:
        _unlock(out, fd, created)
