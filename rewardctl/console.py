"""What people see on stderr: progress and summaries (rich). Data goes to stdout only via --json."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rewardctl.progress import Progress, ProgressCallback

if TYPE_CHECKING:
    from rich.console import Console


def stderr_console() -> Console:
    # rich costs start-up time that `validate` and `--json` output never need.
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=False)


class DataChannel:
    """Keeps stdout for data alone.

    While a command runs, Python's ``sys.stdout`` and file descriptor 1 both point at stderr, so
    nothing a library prints (litellm's notices, llama.cpp's C-level logs) can corrupt ``--json``
    output. ``write()`` reaches the real stdout.
    """

    def __enter__(self) -> DataChannel:
        self._py_stdout = sys.stdout
        self._saved_fd: int | None = None
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            fd = None
        if fd == 1:
            sys.stdout.flush()
            self._saved_fd = os.dup(1)
            os.dup2(2, 1)
        sys.stdout = sys.stderr
        return self

    def write(self, text: str) -> None:
        if self._saved_fd is not None:
            data = text.encode("utf-8")
            while data:
                written = os.write(self._saved_fd, data)
                data = data[written:]
        else:
            self._py_stdout.write(text)
            self._py_stdout.flush()

    def __exit__(self, *exc: Any) -> None:
        sys.stdout = self._py_stdout
        if self._saved_fd is not None:
            sys.stderr.flush()
            os.dup2(self._saved_fd, 1)
            os.close(self._saved_fd)
            self._saved_fd = None


@contextlib.contextmanager
def progress_bar(console: Console, quiet: bool) -> Iterator[ProgressCallback | None]:
    """A live bar on stderr fed by the library's Progress events (eval, score, optimize,
    train-reward); None, so that no event is even made, in a pipe or CI log, where a live bar is
    only noise."""
    if quiet or not console.is_terminal:
        yield None
        return
    # rich.progress costs start-up time that only a terminal needs.
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
             TextColumn("{task.fields[label]} {task.fields[value]}{task.fields[detail]}"), TimeElapsedColumn(),
             console=console, transient=True) as bar:
        task = bar.add_task("", total=None, label="", value="-", detail="")

        def update(event: Progress) -> None:
            bar.update(task, description=event.phase, completed=event.done, total=event.total,
                       label=event.label, value="-" if event.value is None else f"{event.value:.3f}",
                       detail=f" · {event.detail}" if event.detail else "")

        yield update
