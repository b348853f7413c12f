"""Datasets, streamed row by row (never loaded whole): JSON Lines here; CSV, TSV, Parquet, Arrow
and folders through rewardctl.datafiles.

Each line (or record) holds the input fields and the ground-truth output fields; any other keys
(columns) are kept as ``meta`` and carried into the predictions. A spec field may be read from a
column of another name (``DataOptions.fields``). A bad line raises an :class:`InputError` naming
``file:line``; with ``skip_invalid`` it is counted and skipped.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rewardctl.datafiles import (
    ColumnUse,
    DataFile,
    DataOptions,
    FieldMap,
    dataset_files,
    iter_arrow,
    iter_csv,
    iter_parquet,
)
from rewardctl.datamodel import DataModel, FieldSpec, ValueProblem, check_fields
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
    file: str | None = None  # a folder's row: its file, recorded in the predictions (with line)


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


def iter_json_objects(path: str, *, skip_invalid: bool = False, stats: ReadStats | None = None,
                      require_rows: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file (``-``: stdin).
    A file with none is an error, unless not ``require_rows`` (a shard of a folder)."""
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
        if not yielded and require_rows:  # at the end: nothing to evaluate is a mistake, not a 0-row report
            why = (f"every line was invalid ({stats.skipped} skipped)" if stats.skipped
                   else "the file holds no JSON lines" if line_no else "the file is empty")
            raise InputError(why, path=label)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_rows(path: str, inputs: DataModel, outputs: DataModel, *, skip_invalid: bool = False,
              limit: int | None = None, required_outputs: dict[str, str] | None = None,
              stats: ReadStats | None = None, data: DataOptions | None = None) -> Iterator[Row]:
    """Stream the dataset's rows, checked against the spec's input and output data models.

    ``path``: a JSON Lines, CSV, TSV, Parquet or Arrow file (by its extension, or
    ``data.format``), a folder (a Hugging Face ``save_to_disk`` folder, or shards read in
    order), or ``-`` (JSON Lines on stdin). ``data.fields`` reads spec fields from columns of
    other names; the other columns are the rows' meta.

    Ground truth may hold only some output fields (a chain-of-thought program's dataset usually
    has the answer but no reasoning), but at least one, and every field in ``required_outputs``
    (field -> the reward that reads it), so no reward silently compares against nothing.
    """
    stats = stats if stats is not None else ReadStats()
    required = required_outputs if required_outputs is not None else {name: "" for name in outputs}
    if limit is not None and limit <= 0:
        return
    data = data if data is not None else DataOptions()
    files, in_folder = dataset_files(path, data.format)
    fields = {**inputs, **outputs}
    columns = {name: mapping.column for name, mapping in data.fields.items()}
    consumed = frozenset(columns.get(name, name) for name in fields)
    rows_before, skipped_before = stats.rows, stats.skipped
    for part in files:
        label = "<stdin>" if part.path == "-" else part.path
        records = _records(part, fields, data.fields, consumed, in_folder, skip_invalid, stats)
        view = _view(part.format, fields, columns)
        file = label if in_folder else None
        for line_no, obj in records:
            try:
                values = obj if view is None else view(obj)
                row_inputs = _checked(values, inputs, "input")
                # An optional output field's reference is null when the row leaves it out.
                present = {name: spec for name, spec in outputs.items() if name in values or not spec.required}
                for name, reader in required.items():
                    if name not in present:
                        why = f" (read by '{reader}'; an in_mask can limit what it compares)" if reader else ""
                        raise ValueProblem(name, f"missing output field{why}")
                if not present:
                    raise ValueProblem("", "no ground-truth output field (expected "
                                           f"{', '.join(outputs)})")
                y_true = _checked(values, present, "output")
            except ValueProblem as problem:
                _bad_row(problem, label, line_no, columns, skip_invalid, stats)
                continue
            meta = {k: v for k, v in obj.items() if k not in consumed}
            yield Row(stats.rows, line_no, row_inputs, y_true, meta, label, file)
            stats.rows += 1
            if limit is not None and stats.rows >= limit:
                return
    if stats.rows == rows_before and (in_folder or files[0].format != "jsonl"):
        # JSON Lines files say so themselves (iter_json_objects); the other formats and folders here.
        skipped = stats.skipped - skipped_before
        raise InputError(f"every row was invalid ({skipped} skipped)" if skipped
                         else f"the {'folder' if in_folder else 'file'} holds no rows", path=path)


def _bad_row(problem: ValueProblem, label: str, line_no: int, columns: dict[str, str],
             skip_invalid: bool, stats: ReadStats) -> None:
    """A row that does not fit the data models: an error, or counted as skipped. A field read from
    a column of another name names that column too."""
    message = problem.message
    head = re.split(r"[.\[]", problem.path, maxsplit=1)[0]
    if head in columns:
        message += f" (column '{columns[head]}')"
    if not skip_invalid:
        raise InputError(message, path=label, line=line_no, field=problem.path or None)
    stats.skip(f"{label}:{line_no}: {problem.path + ': ' if problem.path else ''}{message}")


def _records(part: DataFile, fields: DataModel, mapped: dict[str, FieldMap], consumed: frozenset[str],
             in_folder: bool, skip_invalid: bool, stats: ReadStats) -> Iterator[tuple[int, dict[str, Any]]]:
    """One file's records, by its format."""
    if part.format == "jsonl":
        return iter_json_objects(part.path, skip_invalid=skip_invalid, stats=stats, require_rows=not in_folder)

    def bad(line: int, problem: str) -> None:
        if not skip_invalid:
            raise InputError(problem, path=part.path, line=line)
        stats.skip(f"{part.path}:{line}: {problem}")

    columns = {name: mapping.column for name, mapping in mapped.items()}
    text = frozenset(columns.get(name, name) for name, spec in fields.items() if spec.type in ("string", "enum"))
    use = ColumnUse(mapped, consumed, text)
    if part.format in ("csv", "tsv"):
        return iter_csv(part.path, "\t" if part.format == "tsv" else ",", use, bad)
    if part.format == "parquet":
        return iter_parquet(part.path, use)
    return iter_arrow(part.path, use)


def _view(fmt: str, fields: DataModel, columns: dict[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """What turns a record into the spec's fields: CSV's cells parsed for their fields' types (an
    empty cell is a missing value), a column of another name read as its field; None: the record
    as it is (JSON Lines, Parquet and Arrow without a mapping)."""
    plan = [(name, columns.get(name, name), spec) for name, spec in fields.items()]
    if fmt in ("csv", "tsv"):
        def text_view(obj: dict[str, Any]) -> dict[str, Any]:
            values: dict[str, Any] = {}
            for name, column, spec in plan:
                cell = obj.get(column)
                if cell:
                    values[name] = cell if spec.type in ("string", "enum") else parse_cell(cell, spec, name)
                elif cell is not None and getattr(spec, "accepts_null", False):
                    values[name] = None  # an empty cell: null where null is valid, else missing
            return values
        return text_view
    if not columns:
        return None
    return lambda obj: {name: obj[column] for name, column, _ in plan if column in obj}


def parse_cell(cell: str, spec: FieldSpec, path: str) -> Any:
    """A CSV cell's text as a value of its field's type: a number, true or false (or 1 and 0), a
    list or an object written as JSON. The data model checks the value then, as any other."""
    kind, text = spec.type, cell.strip()
    shown = json.dumps(cell, ensure_ascii=False)[:80]
    if kind == "boolean":
        folded = text.casefold()
        if folded in ("true", "1", "false", "0"):
            return folded in ("true", "1")
        raise ValueProblem(path, f"expected a boolean (true or false), got {shown}")
    try:
        value = parse_json_line(text)
    except (ValueError, RecursionError) as exc:
        if kind in ("integer", "number"):
            raise ValueProblem(path, f"expected {'an integer' if kind == 'integer' else 'a number'}, "
                                     f"got {shown}") from None
        why = "nested too deeply" if isinstance(exc, RecursionError) else one_line(exc, 120)
        raise ValueProblem(path, f"expected {'a list' if kind == 'list' else 'an object'} written as JSON "
                                 f"(invalid JSON: {why})") from None
    if kind in ("integer", "number") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueProblem(path, f"expected {'an integer' if kind == 'integer' else 'a number'}, got {shown}")
    return value


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
