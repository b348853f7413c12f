"""JSONL datasets, streamed line by line (never loaded whole).

Each line is a JSON object holding the input fields and the ground-truth output fields; any
other keys are kept as ``meta`` and carried into the predictions. A bad line raises an
:class:`InputError` naming ``file:line``; with ``skip_invalid`` it is counted and skipped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rewardctl.datamodel import DataModel, ValueProblem, check_fields
from rewardctl.errors import InputError, one_line
from rewardctl.io import open_input

MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class Row:
    index: int  # 0-based position among the rows that were read
    line: int  # 1-based line in the file
    inputs: dict[str, Any]
    y_true: dict[str, Any] | None
    meta: dict[str, Any]
    path: str | None = None  # the file it was read from ('<stdin>' for stdin)


@dataclass
class ReadStats:
    rows: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)  # the first few messages

    def skip(self, message: str) -> None:
        self.skipped += 1
        if len(self.skipped_examples) < 10:
            self.skipped_examples.append(message)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # JSON allows it, but one of the values would be silently lost
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key '{key}'")
            seen.add(key)
    return obj


_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def parse_json_line(data: bytes | str) -> Any:
    """Parse one JSON value; NaN and Infinity are refused (not JSON, and they poison every mean),
    and so are duplicated keys.

    The stdlib's C decoder, built once (json.loads with options builds one per call). Not
    orjson: it reads integers beyond 64 bits as floats, silently changing the user's data.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return _STRICT_DECODER.decode(text)


def open_binary(path: str) -> IO[bytes]:
    return sys.stdin.buffer if path == "-" else open_input(path, "a JSONL file")


def iter_json_objects(path: str, *, skip_invalid: bool = False,
                      stats: ReadStats | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file (``-``: stdin)."""
    stats = stats if stats is not None else ReadStats()
    label = "<stdin>" if path == "-" else path
    stream = open_binary(path)
    try:
        line_no = 0
        yielded = 0
        while True:
            raw = stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            line_no += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                # Skip the rest of the oversized line before reporting it.
                while raw and not raw.endswith(b"\n"):
                    raw = stream.readline(MAX_LINE_BYTES + 1)
                problem = f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB"
                if not skip_invalid:
                    raise InputError(problem, path=label, line=line_no)
                stats.skip(f"{label}:{line_no}: {problem}")
                continue
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                obj = parse_json_line(raw.rstrip(b"\r\n"))
                if not isinstance(obj, dict):
                    raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            except UnicodeDecodeError:
                problem = "not valid UTF-8"
                if not skip_invalid:
                    raise InputError(problem, path=label, line=line_no) from None
                stats.skip(f"{label}:{line_no}: {problem}")
                continue
            except (ValueError, RecursionError) as exc:
                why = "nested too deeply" if isinstance(exc, RecursionError) else one_line(exc, 200)
                problem = f"invalid JSON: {why}"
                if not skip_invalid:
                    raise InputError(problem, path=label, line=line_no) from None
                stats.skip(f"{label}:{line_no}: {problem}")
                continue
            yielded += 1
            yield line_no, obj
        if not yielded:  # reached the end: nothing to evaluate is a mistake, not a 0-row report
            why = (f"every line was invalid ({stats.skipped} skipped)" if stats.skipped
                   else "the file holds no JSON lines" if line_no else "the file is empty")
            raise InputError(why, path=label)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_rows(path: str, inputs: DataModel, outputs: DataModel, *, skip_invalid: bool = False,
              limit: int | None = None, required_outputs: dict[str, str] | None = None,
              stats: ReadStats | None = None) -> Iterator[Row]:
    """Stream the dataset's rows, checked against the spec's input and output data models.

    Ground truth may hold only some output fields (a chain-of-thought program's dataset usually
    has the answer but no reasoning), but at least one, and every field in ``required_outputs``
    (field -> the reward that reads it), so no reward silently compares against nothing.
    """
    stats = stats if stats is not None else ReadStats()
    label = "<stdin>" if path == "-" else path
    required = required_outputs if required_outputs is not None else {name: "" for name in outputs}
    if limit is not None and limit <= 0:
        return
    for line_no, obj in iter_json_objects(path, skip_invalid=skip_invalid, stats=stats):
        try:
            row_inputs = _checked(obj, inputs, "input")
            present = {name: spec for name, spec in outputs.items() if name in obj}
            for name, reader in required.items():
                if name not in obj:
                    why = f" (read by '{reader}'; an in_mask can limit what it compares)" if reader else ""
                    raise ValueProblem(name, f"missing output field{why}")
            if not present:
                raise ValueProblem("", "no ground-truth output field (expected "
                                       f"{', '.join(outputs)})")
            y_true = _checked(obj, present, "output")
        except ValueProblem as problem:
            message = problem.message
            if not skip_invalid:
                raise InputError(message, path=label, line=line_no, field=problem.path or None) from None
            stats.skip(f"{label}:{line_no}: {problem.path + ': ' if problem.path else ''}{message}")
            continue
        meta = {k: v for k, v in obj.items() if k not in inputs and k not in outputs}
        yield Row(stats.rows, line_no, row_inputs, y_true, meta, label)
        stats.rows += 1
        if limit is not None and stats.rows >= limit:
            return


def _checked(obj: dict[str, Any], fields: DataModel, kind: str) -> dict[str, Any]:
    """``check_fields`` on a row's input or output fields; a missing field, at any depth (an
    object's property too), is called a missing ``kind`` field."""
    try:
        return check_fields(obj, fields, lax=False)
    except ValueProblem as problem:
        if problem.message == "missing":
            raise ValueProblem(problem.path, f"missing {kind} field") from None
        raise


def count_lines(path: str, limit: int | None = None) -> int | None:
    """Quick count of non-blank lines (for a progress total); None for stdin or on error."""
    if path == "-" or not Path(path).is_file():
        return None
    try:
        count = 0
        with open(path, "rb") as stream:
            for raw in stream:
                if raw.strip():
                    count += 1
    except OSError:
        return None
    return min(count, limit) if limit is not None else count
