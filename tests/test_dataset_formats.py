"""Datasets beyond one JSON Lines file: CSV, TSV, Parquet, Arrow (a Hugging Face save_to_disk
folder), folders of shards; the field mapping (spec and --field). Every format reads as the JSON
Lines file of the same rows does, names its errors file:row, and counts --skip-invalid alike."""

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.datafiles import DataOptions, FieldMap
from rewardctl.datamodel import FieldSpec
from rewardctl.dataset import ReadStats, read_rows
from rewardctl.errors import InputError
from rewardctl.options import EvalOptions, OptimizeOptions
from rewardctl.spec import load_spec

from conftest import write

runner = CliRunner()

INPUTS = {"question": FieldSpec(type="string"), "n": FieldSpec(type="integer"), "tags": FieldSpec(type="list"),
          "info": FieldSpec(type="object", properties={"k": FieldSpec(type="string")})}
OUTPUTS = {"answer": FieldSpec(type="string"), "ok": FieldSpec(type="boolean"), "score": FieldSpec(type="number"),
           "label": FieldSpec(type="enum", values=["neg", "pos"])}
COLUMNS = ["id", "question", "n", "tags", "info", "answer", "ok", "score", "label"]
ROWS = [
    {"id": "r1", "question": 'a, "quoted"\nsecond line', "n": 1, "tags": ["x", "y"], "info": {"k": "v"},
     "answer": "yes", "ok": True, "score": 0.5, "label": "pos"},
    {"id": "r2", "question": "héllo\ttab", "n": -7, "tags": [], "info": {"k": "w"},
     "answer": "no", "ok": False, "score": 2, "label": "neg"},
    {"id": "r3", "question": "plain", "n": 30, "tags": ["z"], "info": {"k": ""}, "answer": "maybe", "ok": True,
     "score": -1.25, "label": "pos"},
]


# --- writers: the same rows in every format ------------------------------------------------

def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def cell(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def write_csv(path: Path, rows, delimiter=",", columns=COLUMNS) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, delimiter=delimiter)
        out.writerow(columns)
        out.writerows([cell(r[c]) if c in r else "" for c in columns] for r in rows)
    return path


def table(rows) -> pa.Table:
    return pa.Table.from_pylist(rows)


def write_parquet(path: Path, rows) -> Path:
    pq.write_table(table(rows), path, row_group_size=2)
    return path


def write_saved_dataset(folder: Path, rows, files: int = 2, class_labels: dict | None = None) -> Path:
    """What datasets' Dataset.save_to_disk writes (checked against datasets 5.2): Arrow IPC
    *stream* files data-0000K-of-0000N.arrow, a state.json listing them, dataset_info.json."""
    folder.mkdir(parents=True)
    data = table(rows)
    features = {name: {"dtype": "string", "_type": "Value"} for name in data.schema.names}
    for name, names in (class_labels or {}).items():
        features[name] = {"names": names, "_type": "ClassLabel"}
    schema = data.schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    names = [f"data-{k:05d}-of-{files:05d}.arrow" for k in range(files)]
    per_file = -(-len(rows) // files)
    for k, name in enumerate(names):
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(data.slice(k * per_file, per_file).cast(schema), max_chunksize=1)
    (folder / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": name} for name in names], "_fingerprint": "f", "_format_columns": None,
        "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": None}))
    (folder / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "features": features}))
    return folder


def write_arrow_file(path: Path, rows) -> Path:
    """The Arrow IPC *file* format (ARROW1), as pyarrow.feather and ipc.new_file write it."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table(rows).schema) as writer:
        writer.write_table(table(rows))
    return path


def write_shards(folder: Path, rows, fmt: str) -> Path:
    folder.mkdir(parents=True)
    for k, row in enumerate(rows):
        name = f"part-{k * 5}.{fmt}"  # part-0, part-5, part-10: natural order, not part-10 before part-5
        {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}[fmt](folder / name, [row])
    (folder / "README.md").write_text("not data")
    return folder


WRITERS = {
    "csv": lambda tmp, rows: write_csv(tmp / "d.csv", rows),
    "tsv": lambda tmp, rows: write_csv(tmp / "d.tsv", rows, delimiter="\t"),
    "parquet": lambda tmp, rows: write_parquet(tmp / "d.parquet", rows),
    "saved_dataset": lambda tmp, rows: write_saved_dataset(tmp / "hf", rows),
    "arrow_file": lambda tmp, rows: write_arrow_file(tmp / "d.arrow", rows),
    "jsonl_shards": lambda tmp, rows: write_shards(tmp / "shards", rows, "jsonl"),
    "parquet_shards": lambda tmp, rows: write_shards(tmp / "shards", rows, "parquet"),
    "csv_shards": lambda tmp, rows: write_shards(tmp / "shards", rows, "csv"),
}


def read(path, **kw):
    return list(read_rows(str(path), INPUTS, OUTPUTS, **kw))


def content(rows):
    return [(r.index, r.inputs, r.y_true, r.meta) for r in rows]


# --- every format reads as JSON Lines does ----------------------------------------------------

@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_format_reads_as_the_jsonl_of_the_same_rows(tmp_path, fmt):
    expected = content(read(write_jsonl(tmp_path / "d.jsonl", ROWS)))
    assert content(read(WRITERS[fmt](tmp_path, ROWS))) == expected


def test_rows_know_their_line_record_or_file(tmp_path):
    assert [r.line for r in read(write_csv(tmp_path / "d.csv", ROWS))] == [2, 4, 5]  # the header is line 1
    assert [r.line for r in read(write_parquet(tmp_path / "d.parquet", ROWS))] == [1, 2, 3]
    hf = read(write_saved_dataset(tmp_path / "hf", ROWS))
    assert [(Path(r.path).name, r.line) for r in hf] == [
        ("data-00000-of-00002.arrow", 1), ("data-00000-of-00002.arrow", 2), ("data-00001-of-00002.arrow", 1)]
    assert all(r.file == r.path for r in hf)
    shards = read(write_shards(tmp_path / "shards", ROWS, "jsonl"))
    assert [(Path(r.file).name, r.line) for r in shards] == [("part-0.jsonl", 1), ("part-5.jsonl", 1),
                                                               ("part-10.jsonl", 1)]
    assert all(r.file is None for r in read(write_jsonl(tmp_path / "d.jsonl", ROWS)))


def test_explicit_format_overrides_the_extension(tmp_path):
    path = write_csv(tmp_path / "d.txt", ROWS)
    assert content(read(path, data=DataOptions(format="csv"))) == content(read(write_csv(tmp_path / "d.csv", ROWS)))
    with pytest.raises(InputError, match="invalid JSON"):  # any other extension: JSON Lines, as before
        read(path)


# --- CSV cells and their types ----------------------------------------------------------------

@pytest.mark.parametrize("column,text,message", [
    ("n", "4.5", "n: expected an integer, got 4.5"),
    ("n", "four", 'n: expected an integer, got "four"'),
    ("score", "[1]", 'score: expected a number, got "[1]"'),
    ("ok", "maybe", 'ok: expected a boolean (true or false), got "maybe"'),
    ("tags", "a;b", "tags: expected a list written as JSON (invalid JSON"),
    ("tags", '{"a": 1}', "tags: expected a list, got object"),
    ("info", '{"k": 1}', "info.k: expected a string, got integer"),
    ("label", "neutral", "label: expected one of ['neg', 'pos']"),
    ("question", "", "question: missing input field"),
    ("answer", "", "answer: missing output field"),
])
def test_a_bad_cell_names_file_line_and_field(tmp_path, column, text, message):
    path = write_csv(tmp_path / "d.csv", [ROWS[2], dict(ROWS[2], **{column: text})])  # text: written as it is
    with pytest.raises(InputError) as err:
        read(path)
    assert str(err.value).startswith(f"{path}:3: {message}")


def test_csv_cells_are_parsed_for_their_types(tmp_path):
    path = write(tmp_path / "d.csv", "question,n,tags,info,answer,ok,score,label\n"
                 'q, 42 ,"[""a""]","{""k"": ""v""}",007,TRUE,1e3,neg\n'
                 "q,-1,[],\"{\"\"k\"\": \"\"\"\"}\",x,0,2.5,pos\n")
    rows = read(path)
    assert rows[0].inputs == {"question": "q", "n": 42, "tags": ["a"], "info": {"k": "v"}}
    assert rows[0].y_true == {"answer": "007", "ok": True, "score": 1000.0, "label": "neg"}  # a string stays text
    assert rows[1].y_true["ok"] is False and rows[1].inputs["info"] == {"k": ""}


def test_an_empty_cell_of_an_optional_field_reads_as_null(tmp_path):
    if "required" not in FieldSpec.model_fields:
        pytest.skip("optional fields are not in this data model yet")
    inputs = {"question": FieldSpec(type="string"), "hint": FieldSpec(type="string", required=False)}
    outputs = {"answer": FieldSpec(type="integer", nullable=True)}
    path = write(tmp_path / "d.csv", "question,hint,answer\nq,,\n")
    row = next(read_rows(str(path), inputs, outputs))
    assert row.inputs == {"question": "q", "hint": None} and row.y_true == {"answer": None}


@pytest.mark.parametrize("text,message", [
    ("question,answer\nq,a,extra\n", "d.csv:2: 3 cells, but the header has 2"),
    (b"question,answer\nq,\xff\n", "d.csv:2: not valid UTF-8"),
    ("question,answer,question\nq,a,b\n", "d.csv: the column 'question' appears twice"),
    ("", "d.csv: the file is empty (expected a header line)"),
    ("question,answer\n\n", "d.csv: the file holds no rows"),
])
def test_csv_structure_errors(tmp_path, text, message):
    path = tmp_path / "d.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError) as err:
        list(read_rows(str(path), {"question": FieldSpec()}, {"answer": FieldSpec()}))
    assert str(err.value) == f"{tmp_path}/{message}"


def test_csv_with_bom_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbfquestion,answer\r\nq1,a1\r\n\r\nq2,a2\r\n")
    rows = list(read_rows(str(path), {"question": FieldSpec()}, {"answer": FieldSpec()}))
    assert [(r.line, r.inputs["question"], r.y_true["answer"]) for r in rows] == [(2, "q1", "a1"), (4, "q2", "a2")]


# --- errors and --skip-invalid, alike in every format -----------------------------------------

def with_a_bad_row(rows):
    return [rows[0], dict(rows[1], label="neutral"), rows[2]]


@pytest.mark.parametrize("fmt,where", [
    ("csv", "d.csv:4"), ("tsv", "d.tsv:4"), ("parquet", "d.parquet:2"),
    ("saved_dataset", "hf/data-00000-of-00002.arrow:2"), ("jsonl_shards", "shards/part-5.jsonl:1"),
])
def test_errors_name_file_row_and_field_and_skip_invalid_counts(tmp_path, fmt, where):
    path = WRITERS[fmt](tmp_path, with_a_bad_row(ROWS))
    with pytest.raises(InputError) as err:
        read(path)
    assert str(err.value) == f"{tmp_path}/{where}: label: expected one of ['neg', 'pos'], got \"neutral\""
    stats = ReadStats()
    assert [r.meta["id"] for r in read(path, skip_invalid=True, stats=stats)] == ["r1", "r3"]
    assert stats.skipped == 1 and stats.skipped_examples == [str(err.value)]


def test_skip_invalid_counts_the_same_in_every_format(tmp_path):
    rows = [dict(r) for r in ROWS]
    del rows[1]["answer"], rows[1]["ok"], rows[1]["score"], rows[1]["label"]  # no ground truth at all
    rows[1].update(answer=None, ok=None, score=None, label=None)
    counts = {}
    for fmt, writer in [("jsonl", lambda t, r: write_jsonl(t / "d.jsonl", [{k: v for k, v in x.items() if v is not None} for x in r])),
                        *WRITERS.items()]:
        folder = tmp_path / fmt
        folder.mkdir()
        stats = ReadStats()
        kept = read(writer(folder, rows), skip_invalid=True, stats=stats,
                    required_outputs={"answer": "em"})
        counts[fmt] = (len(kept), stats.skipped)
    assert set(counts.values()) == {(2, 1)}, counts


def test_every_row_invalid_is_an_error_that_says_so(tmp_path):
    path = write(tmp_path / "d.csv", "question,answer\n,a\n,b\n")
    with pytest.raises(InputError, match=r"d.csv: every row was invalid \(2 skipped\)"):
        list(read_rows(str(path), {"question": FieldSpec()}, {"answer": FieldSpec()}, skip_invalid=True))


def test_not_a_parquet_or_arrow_file(tmp_path):
    for name, message in (("d.parquet", "not a Parquet file"), ("d.arrow", "not an Arrow IPC file")):
        path = write(tmp_path / name, "{}\n")
        with pytest.raises(InputError, match=f"^{path}: {message}"):
            read(path)


# --- folders ----------------------------------------------------------------------------------

def test_a_dataset_dict_folder_asks_for_a_split(tmp_path):
    folder = tmp_path / "dd"
    for split in ("train", "test"):
        write_saved_dataset(folder / split, ROWS)
    (folder / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    with pytest.raises(InputError) as err:
        read(folder)
    assert str(err.value) == (f"{folder}: a Hugging Face DatasetDict folder: choose a split "
                              f"({folder}/train, {folder}/test)")
    assert len(read(folder / "test")) == 3


def test_saved_dataset_state_is_checked(tmp_path):
    folder = write_saved_dataset(tmp_path / "hf", ROWS)
    (folder / "state.json").write_text('{"_data_files": [{"filename": "../elsewhere.arrow"}]}')
    with pytest.raises(InputError, match=r"state.json: _data_files: '../elsewhere.arrow' is not a file name"):
        read(folder)


def test_class_labels_read_as_their_names_where_the_field_is_text(tmp_path):
    rows = [dict(r, label={"neg": 0, "pos": 1}[r["label"]]) for r in ROWS]
    folder = write_saved_dataset(tmp_path / "hf", rows, class_labels={"label": ["neg", "pos"]})
    assert [r.y_true["label"] for r in read(folder)] == ["pos", "neg", "pos"]
    as_number = {**OUTPUTS, "label": FieldSpec(type="integer")}
    assert [r.y_true["label"] for r in read_rows(str(folder), INPUTS, as_number)] == [1, 0, 1]


def test_shard_folders_of_mixed_or_no_formats(tmp_path):
    folder = write_shards(tmp_path / "mixed", ROWS[:2], "jsonl")
    write_csv(folder / "part-9.csv", ROWS[2:])
    with pytest.raises(InputError, match="shards of several formats \\(csv, jsonl\\): choose one with --data-format"):
        read(folder)
    assert len(read(folder, data=DataOptions(format="csv"))) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"a folder without \.jsonl, \.csv, \.tsv or \.parquet shards"):
        read(empty)


def test_an_empty_shard_is_fine_an_empty_folder_is_not(tmp_path):
    folder = write_shards(tmp_path / "s", ROWS[:1], "jsonl")
    (folder / "part-3.jsonl").write_text("")
    assert len(read(folder)) == 1
    (folder / "part-0.jsonl").write_text("\n")
    with pytest.raises(InputError, match=f"^{folder}: the folder holds no rows$"):
        read(folder)


def test_binary_columns_are_left_out_and_dates_become_text(tmp_path):
    import datetime

    data = table([{k: v for k, v in r.items() if k != "id"} for r in ROWS]).append_column(
        "image", pa.array([b"\x89PNG\xff"] * 3)).append_column(
        "when", pa.array([datetime.date(2024, 1, 2)] * 3))
    pq.write_table(data, tmp_path / "d.parquet")
    assert read(tmp_path / "d.parquet")[0].meta == {"when": "2024-01-02"}
    text = data.set_column(data.schema.get_field_index("question"), "question", pa.array([b"q"] * 3))
    pq.write_table(text, tmp_path / "t.parquet")
    assert read(tmp_path / "t.parquet")[0].inputs["question"] == "q"  # bytes a field reads: UTF-8 text
    pq.write_table(text.set_column(0, "question", pa.array([b"\xff"] * 3)), tmp_path / "b.parquet")
    with pytest.raises(InputError, match=r"b.parquet: the column 'question' cannot be read as string: Invalid UTF8"):
        read(tmp_path / "b.parquet")


def test_stdin_stays_json_lines(tmp_path):
    with pytest.raises(InputError, match=r"^stdin \('-'\) is read as JSON Lines only, not csv"):
        read("-", data=DataOptions(format="csv"))


# --- the field mapping ------------------------------------------------------------------------

RENAMED = {"question": "prompt", "answer": "target"}


def renamed_rows():
    return [{RENAMED.get(k, k): v for k, v in r.items()} for r in ROWS]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "saved_dataset"])
def test_a_mapped_column_is_read_as_its_field(tmp_path, fmt):
    expected = content(read(write_jsonl(tmp_path / "plain.jsonl", ROWS)))
    rows = [dict(r, answer="kept in meta") for r in renamed_rows()]  # a column named as a mapped field
    writer = (lambda t, r: write_jsonl(t / "d.jsonl", r)) if fmt == "jsonl" else WRITERS[fmt]
    path = writer(tmp_path, rows) if fmt != "csv" else write_csv(tmp_path / "d.csv", rows, columns=[*rows[0]])
    got = content(read(path, data=DataOptions(fields={k: FieldMap(v) for k, v in RENAMED.items()})))
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    assert [g[3] for g in got] == [dict(e[3], answer="kept in meta") for e in expected]


def test_a_mapped_column_that_is_not_there(tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS)
    from_spec = DataOptions(fields={"question": FieldMap("prompt", path="spec.yaml", line=7)})
    with pytest.raises(InputError) as err:
        read(path, data=from_spec)
    assert str(err.value) == (f"spec.yaml:7: data.fields.question: no column 'prompt' in {path} "
                              f"(its columns: {', '.join(COLUMNS)})")
    with pytest.raises(InputError, match=r"^--field: question=prompt: no column 'prompt' in "):
        read(write_parquet(tmp_path / "d.parquet", ROWS), data=DataOptions(fields={"question": FieldMap("prompt", flag=True)}))
    jsonl = write_jsonl(tmp_path / "d.jsonl", ROWS)  # no header: each row says which column it lacks
    with pytest.raises(InputError, match=r"d.jsonl:1: question: missing input field \(column 'prompt'\)"):
        read(jsonl, data=from_spec)


MAPPED_SPEC = """\
name: mapped
model:
  name: openai/gpt-4o-mini
  extra: {mock_response: '{"answer": "4"}'}
inputs:
  question: string
outputs:
  answer: string
data:
  fields:
    question: prompt
    answer: target
"""


def test_the_spec_maps_fields_and_the_flag_overrides(tmp_path):
    spec = load_spec(write(tmp_path / "spec.yaml", MAPPED_SPEC))
    data = spec.data_options()
    assert {k: (m.column, m.path, m.line) for k, m in data.fields.items()} == {
        "question": ("prompt", str(tmp_path / "spec.yaml"), 11), "answer": ("target", str(tmp_path / "spec.yaml"), 12)}
    options = EvalOptions(data="d.csv", fields=["answer=gold"], data_format="csv")
    data = spec.data_options(options.columns, options.data_format)
    assert data.format == "csv" and data.fields["answer"] == FieldMap("gold", flag=True)
    with pytest.raises(InputError, match=r"^--field: anwser=x: 'anwser' is not an input or output field of the "
                                         r"spec \(did you mean 'answer'\?\)"):
        spec.data_options({"anwser": "x"})


@pytest.mark.parametrize("kwargs,message", [
    ({"fields": ["question"]}, "--field: expected FIELD=COLUMN (a spec field and the dataset column it is read from), got 'question'"),
    ({"fields": ["a=x", "a=y"]}, "--field: 'a' is given twice"),
    ({"data_format": "xlsx"}, "--data-format: expected jsonl, csv, tsv, parquet or arrow"),
])
def test_bad_flags(kwargs, message):
    with pytest.raises(InputError) as err:
        OptimizeOptions(train="t.csv", **kwargs)
    assert str(err.value) == message


def test_a_spec_mapping_to_no_field_is_named_by_its_line(tmp_path):
    spec = write(tmp_path / "spec.yaml", MAPPED_SPEC.replace("    answer: target", "    anser: target"))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert (f"rewardctl: error: {spec}:12: data.fields.anser: 'anser' is not an input or output field "
            "(did you mean 'answer'?)") in result.stderr


# --- end to end -------------------------------------------------------------------------------

def mapped_csv(tmp_path) -> Path:
    return write(tmp_path / "d.csv", 'id,prompt,target\nr1,"2+2,\nthen?",4\nr2,3+1?,5\n')


def test_eval_on_a_csv_keeps_the_source_row_in_the_predictions(tmp_path):
    spec, out = write(tmp_path / "spec.yaml", MAPPED_SPEC), tmp_path / "out"
    result = runner.invoke(app, ["eval", str(spec), "--data", str(mapped_csv(tmp_path)), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [(r["line"], r["inputs"], r["y_true"], r["meta"], r["reward"]) for r in records] == [
        (2, {"question": "2+2,\nthen?"}, {"answer": "4"}, {"id": "r1"}, 1.0),
        (4, {"question": "3+1?"}, {"answer": "5"}, {"id": "r2"}, 0.0)]
    assert all("file" not in r for r in records)


def test_eval_on_a_shard_folder_records_each_rows_file(tmp_path):
    spec = write(tmp_path / "spec.yaml", MAPPED_SPEC.split("data:")[0])
    folder = tmp_path / "shards"
    for k, answer in enumerate(["4", "5"]):
        pq.write_table(table([{"question": f"q{k}", "gold": answer}]), write(folder / f"p{k}.parquet", "").parent / f"p{k}.parquet")
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", str(spec), "-d", str(folder), "--field", "answer=gold", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [(Path(r["file"]).name, r["line"], r["y_true"]) for r in records] == [
        ("p0.parquet", 1, {"answer": "4"}), ("p1.parquet", 1, {"answer": "5"})]


@pytest.mark.parametrize("args,message", [
    (["--field", "answer=nope"], "rewardctl: error: --field: answer=nope: no column 'nope' in {data} (its columns: id, prompt, target)"),
    (["--field", "nope=x"], "rewardctl: error: --field: nope=x: 'nope' is not an input or output field of the spec (the fields: question, answer)"),
    (["--data-format", "xml"], "rewardctl: error: --data-format: expected jsonl, csv, tsv, parquet or arrow"),
])
def test_eval_mapping_errors_are_one_line_exit_2(tmp_path, args, message):
    spec, data = write(tmp_path / "spec.yaml", MAPPED_SPEC), mapped_csv(tmp_path)
    result = runner.invoke(app, ["eval", str(spec), "--data", str(data), *args])
    assert result.exit_code == 2
    assert result.stderr.strip() == message.format(data=data)


def test_a_spec_mapped_column_missing_from_the_file_names_the_spec_line(tmp_path):
    spec = write(tmp_path / "spec.yaml", MAPPED_SPEC)
    data = write(tmp_path / "d.csv", "question,target\nq,4\n")
    result = runner.invoke(app, ["eval", str(spec), "--data", str(data)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"rewardctl: error: {spec}:11: data.fields.question: no column 'prompt' "
                                     f"in {data} (its columns: question, target)")


def test_inspect_rewards_and_optimize_read_mapped_datasets(tmp_path):
    spec = write(tmp_path / "spec.yaml", MAPPED_SPEC.split("data:")[0])
    data = write_parquet(tmp_path / "d.parquet", [{"q": f"{i}+0?", "gold": str(i)} for i in range(6)])
    result = runner.invoke(app, ["inspect-rewards", str(spec), "-d", str(data), "--field", "question=q",
                                 "--field", "answer=gold", "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 6

    from rewardctl.optimize import load_splits

    options = OptimizeOptions(train=str(data), fields=["question=q", "answer=gold"], val_split=0.5)
    splits = load_splits(load_spec(spec), options, 0, {"answer": "em"})
    assert sorted(r.y_true["answer"] for r in [*splits.train, *splits.val]) == [str(i) for i in range(6)]


def test_stdin_is_json_lines_and_takes_the_mapping(tmp_path):
    spec, out = write(tmp_path / "spec.yaml", MAPPED_SPEC), tmp_path / "out"
    text = '{"prompt": "2+2?", "target": "4", "id": 1}\n'
    result = runner.invoke(app, ["eval", str(spec), "--data", "-", "-o", str(out)], input=text)
    assert result.exit_code == 0, result.stderr
    record = json.loads((out / "predictions.jsonl").read_text())
    assert (record["line"], record["inputs"], record["y_true"], record["meta"]) == (1, {"question": "2+2?"},
                                                                                 {"answer": "4"}, {"id": 1})
