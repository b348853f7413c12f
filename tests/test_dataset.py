import io
import sys

import pytest

from rewardctl.datamodel import FieldSpec
from rewardctl.dataset import ReadStats, read_rows
from rewardctl.errors import InputError

INPUTS = {"q": FieldSpec(type="string")}
OUTPUTS = {"a": FieldSpec(type="string")}


def rows_of(path, **kw):
    return list(read_rows(str(path), INPUTS, OUTPUTS, **kw))


def test_reads_rows_and_keeps_meta(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "x", "a": "y", "id": 7}\n\n{"q": "z", "a": "w"}\n')
    rows = rows_of(path)
    assert [(r.index, r.line) for r in rows] == [(0, 1), (1, 3)]
    assert rows[0].meta == {"id": 7} and rows[0].y_true == {"a": "y"}


@pytest.mark.parametrize("line,message", [
    ('{"q": "x"', "invalid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"q": "x", "a": NaN}', "NaN is not valid JSON"),
    ('{"q": 1, "a": "y"}', "q: expected a string, got integer"),
    ('{"a": "y"}', "q: missing input field"),
    ('{"q": "x"}', "a: missing output field"),
])
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "ok", "a": "ok"}\n' + line + "\n")
    with pytest.raises(InputError) as err:
        rows_of(path)
    assert str(err.value).startswith(f"{path}:2: ")
    assert message in str(err.value)


def test_skip_invalid_counts(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"q": "a", "a": "b"}\nnot json\n\xff\xfe\n{"q": "c", "a": "d"}\n')
    stats = ReadStats()
    rows = rows_of(path, skip_invalid=True, stats=stats)
    assert [r.inputs["q"] for r in rows] == ["a", "c"]
    assert stats.skipped == 2 and "d.jsonl:2" in stats.skipped_examples[0]


def test_bom_crlf_and_limit(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"q": "a", "a": "b"}\r\n{"q": "c", "a": "d"}\r\n{"q": "e", "a": "f"}\r\n')
    assert [r.inputs["q"] for r in rows_of(path, limit=2)] == ["a", "c"]


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"q": "a", "a": "b"}\n')))
    assert next(iter(read_rows("-", INPUTS, OUTPUTS))).y_true == {"a": "b"}


def test_missing_file():
    with pytest.raises(InputError, match="no such file"):
        list(read_rows("/nonexistent.jsonl", INPUTS, OUTPUTS))


def test_streams_without_loading_whole(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        f.writelines(f'{{"q": "x{i}", "a": "y"}}\n' for i in range(20000))
    it = read_rows(str(path), INPUTS, OUTPUTS)
    first = next(it)
    assert first.inputs == {"q": "x0"}
    it.close()


def test_json_beyond_orjson_still_parses_like_the_stdlib(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "x", "a": "y", "id": 123456789012345678901234567890}\n')
    assert rows_of(path)[0].meta == {"id": 123456789012345678901234567890}


def test_big_integers_survive_a_write():
    from rewardctl.io import dumps_line

    assert dumps_line({"id": 2**70, "x": "é"}) == f'{{"id":{2**70},"x":"é"}}\n'.encode()


@pytest.mark.parametrize("line,message", [
    ('{"q": "x", "ctx": {"user": "u"}, "order": {}}', "order.id: missing output field"),
    ('{"q": "x", "ctx": {"user": "u"}, "order": {"id": 1}}', "order.id: expected a string, got integer"),
    ('{"q": "x", "ctx": {"user": "u"}, "note": "n"}', "order: missing output field"),
    ('{"q": "x", "ctx": {}, "order": {"id": "1"}}', "ctx.user: missing input field"),
])
def test_a_missing_nested_field_is_called_input_or_output_by_where_it_is(tmp_path, line, message):
    """A reference that lacks a property of an object output is a missing output field, at any
    depth (it was called an input field)."""
    inputs = {"q": FieldSpec(type="string"),
              "ctx": FieldSpec(type="object", properties={"user": FieldSpec(type="string")})}
    outputs = {"order": FieldSpec(type="object", properties={"id": FieldSpec(type="string")}),
               "note": FieldSpec(type="string")}
    path = tmp_path / "d.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InputError) as err:
        list(read_rows(str(path), inputs, outputs, required_outputs={"order": "em"}))
    assert str(err.value).startswith(f"{path}:1: {message}")
    assert ("input field" in str(err.value)) == message.startswith("ctx")


def test_rows_know_their_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "x", "a": "y"}\n')
    assert [(r.path, r.line) for r in rows_of(path)] == [(str(path), 1)]
