"""What an interrupted or failing eval keeps: the finished lines of predictions.jsonl.partial
(read back by --resume), and the error budget that stops a run whose rows keep failing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from rewardctl.errors import InputError
from rewardctl.records.prediction import PredictionRecord


@dataclass(frozen=True)
class ErrorBudget:
    """``--max-errors``: a number of failed rows, or a share of the rows."""

    kind: str  # "count" or "share"
    limit: float

    @classmethod
    def parse(cls, value: str | None) -> ErrorBudget | None:
        """'25' -> 25 rows; '10%' -> a share of 0.10."""
        if value is None:
            return None
        text = str(value).strip()
        try:
            if text.endswith("%"):
                share = float(text[:-1]) / 100
                if not 0 <= share <= 1:
                    raise ValueError
                return cls("share", share)
            count = int(text)
            if count < 0:
                raise ValueError
            return cls("count", float(count))
        except ValueError:
            raise InputError("expected a number of rows (25) or a percentage (10%)", field="--max-errors") from None

    def exceeded(self, failures: int, rows: int, total: int | None) -> bool:
        if self.kind == "count":
            return failures > self.limit
        if total:  # a share of the whole dataset, when its size is known
            return failures > self.limit * total
        return rows >= 20 and failures / rows > self.limit


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
