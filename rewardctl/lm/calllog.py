"""``eval --log-requests FILE``: one JSON line per model call (rewardctl.records.request.CallRecord),
written as the run goes: each request sent (a failed one and each retry included) with its reply
or error, and each reply replayed from the cache. Keys are never written: arguments named like
credentials read "<redacted>", and the client's keys and the environment's secrets are scrubbed
from every string, replies included.

The row a call belongs to comes from a context variable that the run sets in each row's task
(``set_row``), so the program and the client need not pass it along.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any

from rewardctl.errors import InputError, RunError
from rewardctl.lm.wire import env_secrets, redact, scrub
from rewardctl.records.request import CallRecord, CallReply, CallUsage

_ROW: ContextVar[dict[str, Any] | None] = ContextVar("rewardctl_logged_row", default=None)


def set_row(index: int, line: int | None, sample: int | None = None) -> None:
    """The row the calls made from here on (in this task) belong to."""
    _ROW.set({"index": index, "line": line, "sample": sample, "calls": 0})


class CallLog:
    """A JSONL file of calls; each line is written whole and flushed at once."""

    def __init__(self, path: str | Path, secrets: frozenset[str] | set[str] = frozenset(), append: bool = False):
        self.path = Path(path)
        self.secrets = set(secrets) | env_secrets()
        try:
            self._file = open(self.path, "ab" if append else "wb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror or exc}", path=str(path), field="--log-requests") from None
        self.lines = 0

    def _where(self) -> dict[str, Any]:
        row = _ROW.get()
        if row is None:
            return {}
        where = {"index": row["index"], "line": row["line"], "sample": row["sample"], "call": row["calls"]}
        row["calls"] += 1
        return where

    def sent(self, call: dict[str, Any], attempt: int, retry: int, latency_s: float, *,
             reply: tuple[str, str, int, int] | None = None, error: str | None = None,
             fault: str | None = None) -> None:
        """A request sent: ``attempt`` (0-based parse attempt), ``retry`` (0: first send),
        ``reply`` (text, finish_reason, prompt and completion tokens) or ``error``."""
        answer = usage = None
        if reply is not None:
            answer = CallReply(text=scrub(reply[0], self.secrets), finish_reason=reply[1])
            usage = CallUsage(prompt_tokens=reply[2], completion_tokens=reply[3])
        self._write(CallRecord(**self._where(), attempt=attempt + 1, retry=retry, request=redact(call, self.secrets),
                               reply=answer, usage=usage, latency_s=round(latency_s, 4),
                               error=None if error is None else scrub(error, self.secrets), fault=fault))

    def cached(self, call: dict[str, Any], completion: Any, attempt: int) -> None:
        """A reply replayed from the response cache (a rewardctl.lm.client.Completion)."""
        self._write(CallRecord(**self._where(), attempt=attempt + 1, cached=True, request=redact(call, self.secrets),
                               reply=CallReply(text=scrub(completion.text, self.secrets),
                                               finish_reason=completion.finish_reason),
                               usage=CallUsage(prompt_tokens=completion.prompt_tokens,
                                               completion_tokens=completion.completion_tokens)))

    def _write(self, record: CallRecord) -> None:
        try:
            self._file.write(record.to_line())
            self._file.flush()
        except OSError as exc:
            raise RunError(f"{self.path}: cannot write: {exc.strerror or exc}") from None
        self.lines += 1

    def close(self) -> None:
        self._file.close()
