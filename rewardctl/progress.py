"""One progress event for every long command (eval, score, optimize, train-reward): the library
reports it through a callback; the command line draws it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    # What is running, named for a person: "eval", "score", "train-reward"; optimize's
    # "baseline: validation split", "search: epoch 2/5, steps", "final: test split, best",
    # "final: KL to the reference on 32 rows"...
    phase: str
    done: int  # units finished in this phase (rows, steps, epochs)
    total: int | None  # units in the phase; None when unknown (stdin)
    value: float | None = None  # the number to watch (running reward, best validation reward...)
    label: str = "reward"  # what ``value`` is
    detail: str = ""  # anything else worth a glance ("loss 0.1234")


ProgressCallback = Callable[[Progress], None]
