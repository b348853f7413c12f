import json

import pytest

from rewardctl.datamodel import FieldSpec
from rewardctl.lm.grammar import fields_grammar
from rewardctl.prompting import (
    Demo,
    FieldsFormat,
    JsonFormat,
    ParseError,
    extract_json_object,
    render_value,
)

INPUTS = {"country": FieldSpec()}
ONE = {"capital": FieldSpec()}
COT = {"thinking": FieldSpec(), "answer": FieldSpec()}


def test_fields_prompt_layout():
    fmt = FieldsFormat(INPUTS, ONE)
    prompt = fmt.render_prompt("Name the capital.", [Demo({"country": "France"}, {"capital": "Paris"})], {"country": "Peru"})
    assert prompt == "Name the capital.\n\ncountry: France\ncapital: Paris\n\ncountry: Peru\ncapital:"
    assert fmt.stop == ["\n"]
    assert FieldsFormat(INPUTS, COT).stop == ["\n\n", "\ncountry:"]


def test_fields_parse_single_and_multi():
    assert FieldsFormat(INPUTS, ONE).parse(" Lima") == {"capital": "Lima"}
    cot = FieldsFormat(INPUTS, COT)
    assert cot.parse(" Peru is in South America.\nanswer: Lima\ncountry: Chile\nthinking: x") == \
        {"thinking": "Peru is in South America.", "answer": "Lima"}
    with pytest.raises(ParseError, match="no 'answer:' line"):
        cot.parse(" just thinking")


def test_values_round_trip_through_the_line_format():
    fmt = FieldsFormat(INPUTS, {"n": FieldSpec(type="integer"), "ok": FieldSpec(type="boolean"),
                                "tags": FieldSpec(type="list"), "s": FieldSpec()})
    value = {"n": 3, "ok": True, "tags": ["a", "b"], "s": "line one\nline two"}
    lines = "\n".join(f"{k}: {render_value(v, fmt.outputs[k])}" for k, v in value.items())
    assert fmt.parse(lines[len("n:"):]) == value


def test_enum_and_number_coercion():
    fmt = FieldsFormat(INPUTS, {"label": FieldSpec(type="enum", values=["positive", "negative"])})
    assert fmt.parse(" Positive.") == {"label": "positive"}
    with pytest.raises(ParseError):
        fmt.parse(" neutral")
    assert FieldsFormat(INPUTS, {"n": FieldSpec(type="number")}).parse(" 1,234.5") == {"n": 1234.5}


def test_json_extraction():
    assert extract_json_object('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json_object('Sure! {"a": "}"} hope that helps') == {"a": "}"}
    with pytest.raises(ParseError):
        extract_json_object("no json here")


def test_json_format_messages_and_parse():
    fmt = JsonFormat(INPUTS, ONE, "capitals")
    req = fmt.request("Name the capital.", [Demo({"country": "France"}, {"capital": "Paris"})], {"country": "Peru"})
    roles = [m["role"] for m in req.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert json.loads(req.messages[-1]["content"]) == {"country": "Peru"}
    assert '"capital"' in req.messages[0]["content"]
    assert fmt.parse('{"capital": "Lima", "extra": 1}') == {"capital": "Lima"}
    with pytest.raises(ParseError):
        fmt.parse('{"city": "Lima"}')


def test_grammar_is_valid_gbnf():
    from llama_cpp import LlamaGrammar

    outputs = {"label": FieldSpec(type="enum", values=["pos", 'ne"g']), "score": FieldSpec(type="number"),
               "tags": FieldSpec(type="list", items={"type": "string", "max_length": 5}),
               "info": FieldSpec(type="object", properties={"ok": "boolean", "n": "integer"}),
               "why": FieldSpec(max_length=30)}
    gbnf = fields_grammar(outputs)
    assert gbnf.startswith('root ::= " " r1 "\\n" "score: " num')
    LlamaGrammar.from_string(gbnf, verbose=False)  # raises on invalid grammar


def test_a_reply_follows_the_data_model_empty_or_too_long_is_a_parse_failure():
    from rewardctl.datamodel import FieldSpec
    from rewardctl.prompting import FieldsFormat, JsonFormat, ParseError

    inputs = {"q": FieldSpec(type="string")}
    outputs = {"answer": FieldSpec(type="string", max_length=10)}
    fields = FieldsFormat(inputs, outputs)
    assert fields.parse(" Paris") == {"answer": "Paris"}
    for reply in ("", "   ", " a reply that runs far past ten characters"):
        with pytest.raises(ParseError):
            fields.parse(reply)
    json_format = JsonFormat(inputs, outputs, "t")
    assert json_format.parse('{"answer": "Paris"}') == {"answer": "Paris"}
    for reply in ('{"answer": ""}', '{"answer": "far past ten characters"}'):
        with pytest.raises(ParseError):
            json_format.parse(reply)
