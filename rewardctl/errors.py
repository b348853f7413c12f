"""Errors that map to rewardctl's exit codes.

The exit code is a contract (see README, "Exit codes"):
  0 done, 1 a threshold not met, 2 bad usage or bad input, 3 the run could not complete.
"""

from __future__ import annotations

import warnings

EXIT_OK = 0
EXIT_THRESHOLD = 1
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3


class RewardctlError(Exception):
    """Base class: an error the CLI reports as one line, without a traceback."""

    exit_code = EXIT_RUN_FAILED


class InputError(RewardctlError):
    """Bad input from the user: a spec, a dataset, a predictions file, an option.

    The message names where the problem is, compiler style: ``file:line: field: what``.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.path = path
        self.line = line
        self.field = field
        self.detail = message
        # The spec entry being built when it was raised, (section, name): the spec layer turns
        # it into the entry's file and line.
        self.entry: tuple[str, str] | None = None
        super().__init__(format_location(path, line, field) + message)


class RunError(RewardctlError):
    """The run could not complete (model failed to load, every row failed, ...)."""

    exit_code = EXIT_RUN_FAILED


def format_location(path: str | None, line: int | None, field: str | None) -> str:
    where = ""
    if path:
        where = f"{path}:{line}: " if line is not None else f"{path}: "
    if field:
        where += f"{field}: "
    return where


def one_line(text: str, limit: int = 300) -> str:
    """Collapse a message to one line (error messages from libraries can span many)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class RewardctlWarning(UserWarning):
    """Something the user should know while a run goes on (a model route that will not parse, a
    cache set aside). The command line prints each one once on stderr, as one line."""


def warn(message: str) -> None:
    warnings.warn(message, RewardctlWarning, stacklevel=2)
