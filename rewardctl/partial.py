"""What an interrupted eval keeps: the finished lines of predictions.jsonl.partial, read back by
--resume."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from rewardctl.errors import InputError
from rewardctl.records.prediction import PredictionRecord


def load_partial(out_dir: Path, repeat: int) -> list[PredictionRecord]:
    """The finished lines of an interrupted run's predictions.jsonl.partial. A last line cut short
    (kill -9 mid-write) is dropped, and so is an incomplete group of --repeat samples; the file is
    truncated to what is kept, so new lines append cleanly."""
    partial = out_dir / "predictions.jsonl.partial"
    if not partial.exists():
        if (out_dir / "predictions.jsonl").exists():
            raise InputError("this run already finished; nothing to resume", path=str(out_dir))
        raise InputError("nothing to resume: no predictions.jsonl.partial", path=str(out_dir))
    lines = partial.read_bytes().split(b"\n")
    complete = lines[:-1]  # whatever follows the last newline is a torn line
    records = []
    for number, raw in enumerate(complete, start=1):
        try:
            records.append(PredictionRecord.model_validate_json(raw))
        except ValidationError:
            raise InputError("an unreadable line in the middle of the file", path=str(partial), line=number) from None
    keep = len(records) - len(records) % repeat
    size = sum(len(raw) + 1 for raw in complete[:keep])
    with open(partial, "r+b") as handle:
        handle.truncate(size)
    return records[:keep]
