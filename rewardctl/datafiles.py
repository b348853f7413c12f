"""The files a dataset can be: JSON Lines (read by rewardctl.dataset), CSV and TSV, Parquet, Arrow
(a Hugging Face ``save_to_disk`` folder), or a folder of shards.

Each reader streams, record by record or batch by batch, so memory stays flat whatever the size,
and yields ``(row, object)``: the row a ``file:row`` error names (CSV: the record's first line,
the header being line 1; Parquet and Arrow: the 1-based row of the file) and the record as a
mapping of column -> value (CSV's values are the cells' text). A bad record goes to ``bad(row,
problem)``, which raises or counts it (``--skip-invalid``). rewardctl.dataset turns the records
into checked rows. pyarrow is imported only when a Parquet or Arrow file is read.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rewardctl.errors import InputError, one_line
from rewardctl.io import open_input

Record = tuple[int, dict[str, Any]]
BadRecord = Callable[[int, str], None]  # (row, problem): raises, or counts the record as skipped

# By extension; any other file (or none) is read as JSON Lines, as every file was before.
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv",
              ".parquet": "parquet", ".arrow": "arrow"}
# The shards a folder may hold (not .json: a folder's .json files are usually its metadata).
SHARD_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
                    ".parquet": "parquet"}
BATCH_ROWS = 1024  # rows turned into Python objects at a time (Parquet, Arrow)
MAX_CELL_CHARS = 16 * 1024 * 1024  # as JSON Lines' longest line
READ_BUFFER = 1024 * 1024  # Parquet: bytes read at a time within a column chunk


@dataclass(frozen=True)
class FieldMap:
    """A spec field read from a column of another name, and where that was said: the spec's
    ``data.fields`` (its file and line) or the command line's ``--field``."""

    column: str
    path: str | None = None
    line: int | None = None
    flag: bool = False  # given as --field FIELD=COLUMN

    def error(self, name: str, message: str) -> InputError:
        if self.flag:
            return InputError(f"{name}={self.column}: {message}", field="--field")
        return InputError(message, path=self.path, line=self.line, field=f"data.fields.{name}")


@dataclass(frozen=True)
class DataOptions:
    """How a dataset is read: its format (None: by the extension, or what a folder holds) and
    the spec fields read from columns of other names."""

    format: str | None = None
    fields: dict[str, FieldMap] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnUse:
    """What a reader needs to know of the spec: the mapped columns (each must exist), the columns
    the spec's fields read, and those read as text (a Hugging Face class label becomes its name)."""

    mapped: dict[str, FieldMap]
    consumed: frozenset[str]
    text: frozenset[str]


@dataclass(frozen=True)
class DataFile:
    path: str
    format: str


# --- which files ------------------------------------------------------------------------------

def dataset_files(path: str, fmt: str | None) -> tuple[list[DataFile], bool]:
    """The files of the dataset at ``path`` in reading order, and whether it is a folder."""
    if path == "-":
        if fmt not in (None, "jsonl"):
            raise InputError(f"stdin ('-') is read as JSON Lines only, not {fmt} (--data-format, or the spec's "
                             "data.format)")
        return [DataFile(path, "jsonl")], False
    location = Path(path)
    if not location.is_dir():
        return [DataFile(path, fmt or EXTENSIONS.get(location.suffix.lower(), "jsonl"))], False
    if (location / "state.json").is_file():
        return saved_dataset_files(location), True
    if (location / "dataset_dict.json").is_file():
        raise InputError(f"a Hugging Face DatasetDict folder: choose a split ({_splits(location)})", path=path)
    arrow = sorted((f for f in location.iterdir() if f.suffix == ".arrow" and f.is_file()), key=natural_key)
    if arrow and fmt in (None, "arrow"):
        return [DataFile(str(f), "arrow") for f in arrow], True
    return _shards(location, fmt), True


def natural_key(path: Path) -> list[Any]:
    """part-2 before part-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _splits(folder: Path) -> str:
    try:
        names = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        names = sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file())
    return ", ".join(str(folder / str(name)) for name in names) or "it lists none"


def saved_dataset_files(folder: Path) -> list[DataFile]:
    """A ``Dataset.save_to_disk`` folder: the Arrow files its state.json lists, in order."""
    state_path = folder / "state.json"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        names = [str(entry["filename"]) for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"no {exc}" if isinstance(exc, KeyError) else one_line(exc, 200)
        raise InputError(f"not a Hugging Face save_to_disk state ({why})", path=str(state_path)) from None
    for name in names:
        if Path(name).name != name or name in ("", ".", ".."):
            raise InputError(f"'{name}' is not a file name in this folder", path=str(state_path), field="_data_files")
    if not names:
        raise InputError("lists no data files", path=str(state_path), field="_data_files")
    return [DataFile(str(folder / name), "arrow") for name in names]


def _shards(folder: Path, fmt: str | None) -> list[DataFile]:
    files = [f for f in folder.iterdir() if f.suffix.lower() in SHARD_EXTENSIONS and f.is_file()
             and not f.name.startswith(".") and (fmt is None or SHARD_EXTENSIONS[f.suffix.lower()] == fmt)]
    if not files:
        wanted = f"{fmt} files" if fmt else ".jsonl, .csv, .tsv or .parquet shards"
        raise InputError(f"a folder without {wanted} (nor a Hugging Face save_to_disk folder)", path=str(folder))
    formats = sorted({SHARD_EXTENSIONS[f.suffix.lower()] for f in files})
    if len(formats) > 1:
        raise InputError(f"a folder with shards of several formats ({', '.join(formats)}): choose one "
                         "with --data-format", path=str(folder))
    return [DataFile(str(f), formats[0]) for f in sorted(files, key=natural_key)]


def check_columns(names: Iterable[str], use: ColumnUse, path: str) -> None:
    """Every mapped column exists, and no column is named twice (one would be lost)."""
    names = list(names)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"the column '{name}' appears twice", path=path)
        seen.add(name)
    for spec_field, mapping in use.mapped.items():
        if mapping.column not in seen:
            shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
            raise mapping.error(spec_field, f"no column '{mapping.column}' in {path} (its columns: {shown})")


# --- CSV and TSV ------------------------------------------------------------------------------

def iter_csv(path: str, delimiter: str, use: ColumnUse, bad: BadRecord) -> Iterator[Record]:
    """The records of a CSV (or TSV) file with a header line, as text cells; quoted cells may
    span lines. Blank lines are skipped."""
    if csv.field_size_limit() < MAX_CELL_CHARS:
        csv.field_size_limit(MAX_CELL_CHARS)
    stream = open_input(path, "a CSV file")
    try:
        undecodable: set[int] = set()
        reader = csv.reader(_text_lines(stream, undecodable), delimiter=delimiter)
        header = _header(reader, path, undecodable)
        check_columns(header, use, path)
        width, end = len(header), reader.line_num
        while True:
            try:
                for cells in reader:
                    start, end = end + 1, reader.line_num
                    if not cells:
                        continue
                    if undecodable and not undecodable.isdisjoint(range(start, end + 1)):
                        bad(start, "not valid UTF-8")
                    elif len(cells) != width:
                        bad(start, f"{len(cells)} cells, but the header has {width}")
                    else:
                        yield start, dict(zip(header, cells, strict=True))
                return
            except csv.Error as exc:
                start, end = end + 1, reader.line_num
                bad(start, f"not valid {'TSV' if delimiter == chr(9) else 'CSV'}: {one_line(exc, 200)}")
    finally:
        stream.close()


def _text_lines(stream: IO[bytes], undecodable: set[int]) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 is noted (its record is then bad)."""
    first = stream.readline().removeprefix(b"\xef\xbb\xbf")
    if not first:
        return
    for number, raw in enumerate(itertools.chain((first,), stream), 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            undecodable.add(number)
            yield raw.decode("utf-8", "replace")


def _header(reader: Any, path: str, undecodable: set[int]) -> list[str]:
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"not a valid header line: {one_line(exc, 200)}", path=path, line=1) from None
    if header is None:
        raise InputError("the file is empty (expected a header line)", path=path)
    if undecodable:
        raise InputError("not valid UTF-8", path=path, line=1)
    if not header:
        raise InputError("the header line is blank", path=path, line=1)
    return header


# --- Parquet and Arrow ------------------------------------------------------------------------

def iter_parquet(path: str, use: ColumnUse) -> Iterator[Record]:
    """A Parquet file's rows, one batch at a time. Pages are read through a small buffer on one
    thread (not whole column chunks, nor row groups decoded ahead in parallel), so that memory
    stays flat even when a file is a single row group of millions of rows."""
    # pyarrow takes ~150 ms to import: only when a Parquet file is read.
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = open_input(path, "a Parquet file")
    try:
        try:
            parquet = pq.ParquetFile(handle, buffer_size=READ_BUFFER, pre_buffer=False)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise InputError(f"not a Parquet file ({one_line(exc, 200)})", path=path) from None
        convert = _converter(parquet.schema_arrow, use, path)
        batches = parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False)
        yield from _table_rows(batches, convert, path)
    finally:
        handle.close()


def iter_arrow(path: str, use: ColumnUse) -> Iterator[Record]:
    """An Arrow IPC file's rows, one record batch at a time: the stream format (what
    ``datasets`` writes) or the file format (``ARROW1``). Read, not memory-mapped, so that
    resident memory does not grow with the file."""
    # pyarrow takes ~150 ms to import: only when an Arrow file is read.
    import pyarrow as pa

    handle = open_input(path, "an Arrow file")
    try:
        try:
            if handle.read(6) == b"ARROW1":
                handle.seek(0)
                reader = pa.ipc.open_file(handle)
                batches: Iterable[Any] = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                handle.seek(0)
                reader = pa.ipc.open_stream(handle)
                batches = reader
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise InputError(f"not an Arrow IPC file ({one_line(exc, 200)})", path=path) from None
        convert = _converter(reader.schema, use, path)
        yield from _table_rows(batches, convert, path)
    finally:
        handle.close()


def _table_rows(batches: Iterable[Any], convert: Callable[[Any], Any], path: str) -> Iterator[Record]:
    # pyarrow's errors, imported with it (the caller has imported it already).
    import pyarrow as pa

    row = 0
    batch_iter = iter(batches)
    while True:
        try:
            batch = next(batch_iter, None)
            if batch is None:
                return
            batch = convert(batch)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise InputError(f"cannot read past row {row}: {one_line(exc, 200)}", path=path) from None
        names = batch.schema.names
        for start in range(0, batch.num_rows, BATCH_ROWS):
            columns = [column.to_pylist() for column in batch.slice(start, BATCH_ROWS).columns]
            for values in zip(*columns, strict=True):
                row += 1
                yield row, dict(zip(names, values, strict=True))


def _class_labels(schema: Any) -> dict[str, list[str]]:
    """The Hugging Face ClassLabel columns (stored as integers) and their names, from the
    schema's ``huggingface`` metadata."""
    try:
        info = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))
        features = info.get("info", {}).get("features", {})
        return {name: [str(n) for n in feature["names"]] for name, feature in features.items()
                if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names")}
    except (ValueError, AttributeError, TypeError):
        return {}


def _holds_binary(pa: Any, tp: Any) -> bool:
    types = pa.types
    if types.is_binary(tp) or types.is_large_binary(tp) or types.is_fixed_size_binary(tp) or \
            getattr(types, "is_binary_view", lambda _: False)(tp):
        return True
    if types.is_list(tp) or types.is_large_list(tp) or types.is_fixed_size_list(tp):
        return _holds_binary(pa, tp.value_type)
    if types.is_struct(tp):
        return any(_holds_binary(pa, tp.field(i).type) for i in range(tp.num_fields))
    if types.is_map(tp):
        return _holds_binary(pa, tp.key_type) or _holds_binary(pa, tp.item_type)
    return False


def _converter(schema: Any, use: ColumnUse, path: str) -> Callable[[Any], Any]:
    """What each batch needs to become JSON values, decided once from the schema: a class label
    read as text becomes its name; dates and times become ISO text, decimals numbers; a column
    of binary data (an image, audio) no field reads is left out (it would fill the predictions)."""
    import pyarrow as pa  # pyarrow's types, imported with it (the caller has imported it already)

    check_columns(schema.names, use, path)
    labels = {k: v for k, v in _class_labels(schema).items() if k in use.text}
    actions: dict[str, Any] = {}
    for column in schema:
        tp = column.type
        if column.name in labels and pa.types.is_integer(tp):
            actions[column.name] = ("label", pa.array(labels[column.name], pa.string()))
        elif pa.types.is_temporal(tp) and not pa.types.is_duration(tp):
            actions[column.name] = ("cast", pa.string())
        elif pa.types.is_decimal(tp):
            actions[column.name] = ("cast", pa.float64())
        elif _holds_binary(pa, tp):
            actions[column.name] = ("cast", pa.string()) if column.name in use.consumed else ("drop", None)
    if not actions:
        return lambda batch: batch
    return lambda batch: _convert(pa, batch, actions, path)


def _convert(pa: Any, batch: Any, actions: dict[str, Any], path: str) -> Any:
    import pyarrow.compute as pc  # with pyarrow (already imported): only some Arrow files need it

    arrays, names = [], []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        action, arg = actions.get(name, (None, None))
        if action == "drop":
            continue
        if action == "label":  # -1: no label (a test split's)
            valid = pc.if_else(pc.less(column, 0), pa.nulls(len(column), column.type), column)
            column = pc.take(arg, valid)
        elif action == "cast":
            try:
                column = column.cast(arg)
            except (pa.ArrowException, ValueError) as exc:
                raise InputError(f"the column '{name}' cannot be read as {arg}: {one_line(exc, 200)}",
                                 path=path) from None
        arrays.append(column)
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)
