"""What an unfinished eval keeps: the finished lines of predictions.jsonl.partial (and the usage so
far), read back by --resume; a finished run reopened by --retry-errors, or by --resume when its
reports were never written."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from rewardctl.errors import InputError
from rewardctl.io import atomic_write_bytes
from rewardctl.records.eval import Usage
from rewardctl.records.prediction import PredictionRecord


def load_partial(out_dir: Path, repeat: int, reopen: bool = False) -> list[PredictionRecord]:
    """The finished lines of an interrupted run's predictions.jsonl.partial, one per row (a row
    asked again has a later line, which wins). A last line cut short (kill -9 mid-write) is
    dropped, and so is an incomplete group of --repeat samples; the file is truncated to what is
    kept, so new lines append cleanly. A finished run (predictions.jsonl) is reopened when
    ``reopen`` (--retry-errors), when its report.json is missing (the run died between the two),
    or when it has rows to ask again (it stopped on an outage, or rows hit transient errors)."""
    partial = out_dir / "predictions.jsonl.partial"
    if not partial.exists():
        finished = out_dir / "predictions.jsonl"
        if not finished.exists():
            raise InputError("nothing to resume: no predictions.jsonl.partial", path=str(out_dir))
        if not reopen and (out_dir / "report.json").exists() and not _any_redo(finished):
            raise InputError("this run already finished; nothing to resume (eval --retry-errors asks "
                             "its failed rows again)", path=str(out_dir))
        finished.rename(partial)
    lines = partial.read_bytes().split(b"\n")
    complete = lines[:-1]  # whatever follows the last newline is a torn line
    records: dict[tuple[int | None, int | None], PredictionRecord] = {}
    for number, raw in enumerate(complete, start=1):
        try:
            record = PredictionRecord.model_validate_json(raw)
        except ValidationError:
            raise InputError("an unreadable line in the middle of the file", path=str(partial), line=number) from None
        key = (record.index, record.sample)
        records[key] = record  # a dict keeps first-seen order; the later line replaces the earlier
    kept = list(records.values())
    keep = len(kept) - len(kept) % repeat
    if keep < len(kept):
        dropped = {(r.index, r.sample) for r in kept[keep:]}
        if len(complete) == len(kept):  # no row asked twice: the dropped lines are the last ones
            size = sum(len(raw) + 1 for raw in complete[:keep])
            with open(partial, "r+b") as handle:
                handle.truncate(size)
        else:
            compact_partial(partial, drop=dropped)
    return kept[:keep]


def _any_redo(predictions: Path) -> bool:
    """Whether a finished run has rows --resume would ask again (it stopped on an outage or a
    budget, or rows failed on a transient error)."""
    with open(predictions, "rb") as lines:
        return any(PredictionRecord.model_validate_json(line).redo_on_resume for line in lines if line.strip())


def compact_partial(partial: Path, drop: set[tuple[int | None, int | None]] | None = None) -> None:
    """Rewrite predictions.jsonl.partial with one line per row, in row order, the last line of a
    row asked again winning (atomically: a crash leaves the old file)."""
    lines: dict[tuple[int | None, int | None], bytes] = {}
    for raw in partial.read_bytes().split(b"\n")[:-1]:
        record = PredictionRecord.model_validate_json(raw)
        key = (record.index, record.sample)
        if drop is None or key not in drop:
            lines[key] = raw
    atomic_write_bytes(partial, b"".join(raw + b"\n" for raw in lines.values()))


def read_usage(path: Path, key: str | None = None) -> Usage | None:
    """Usage saved by an earlier run: the unfinished run's usage file, or report.json's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Usage.model_validate(data[key] if key else data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
