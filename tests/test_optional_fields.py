"""Optional and nullable fields (`required: false`, `nullable: true`), and nested outputs written
as dotted lines in the fields format: data model, prompts, grammars, schema, rewards."""

import asyncio
import json

import pytest
from llama_cpp import LlamaGrammar

from rewardctl.datamodel import FieldSpec, ValueProblem, check_fields, json_schema
from rewardctl.lm.client import Completion
from rewardctl.lm.grammar import field_grammar, fields_grammar
from rewardctl.program import Program
from rewardctl.prompting import Demo, FieldsFormat, JsonFormat, ParseError, output_lines
from rewardctl.rewards import REWARDS
from rewardctl.spec import ProgramSpec

CITY = FieldSpec(type="string", nullable=True)
ORDER = FieldSpec(type="object", properties={
    "customer": FieldSpec(), "quantity": FieldSpec(type="integer"), "city": CITY,
    "note": FieldSpec(required=False), "gift": FieldSpec(type="boolean")})
OUTPUTS = {"order": ORDER}
INPUTS = {"message": FieldSpec()}


def test_optional_implies_nullable_and_absent_reads_as_null():
    assert CITY.accepts_null and FieldSpec(required=False).accepts_null and not FieldSpec().accepts_null
    row = {"customer": "Ann", "quantity": 2, "city": None, "gift": False}
    assert check_fields(row, ORDER.properties, lax=False) == {**row, "note": None}
    with pytest.raises(ValueProblem, match="city: missing"):  # nullable, but still expected
        check_fields({"customer": "Ann", "quantity": 2, "gift": False}, ORDER.properties, lax=False)
    with pytest.raises(ValueProblem, match="expected a string, got null"):
        check_fields({**row, "customer": None}, ORDER.properties, lax=False)


def test_schema_lists_every_field_and_makes_the_optional_ones_nullable():
    schema = json_schema(ORDER.properties)
    assert schema["required"] == ["customer", "quantity", "city", "note", "gift"]  # strict-mode friendly
    assert schema["properties"]["city"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema["properties"]["customer"] == {"type": "string"}


def test_nested_output_is_one_line_per_property():
    fmt = FieldsFormat(INPUTS, OUTPUTS)
    assert list(output_lines(OUTPUTS)) == ["order.customer", "order.quantity", "order.city", "order.note", "order.gift"]
    demo = Demo({"message": "Ann wants 2 mugs"},
                {"order": {"customer": "Ann", "quantity": 2, "city": None, "gift": False}})
    prompt = fmt.render_prompt("Extract the order.", [demo], {"message": "Bo wants 3 cups to Oslo"})
    assert prompt.split("\n\n")[1] == ("message: Ann wants 2 mugs\norder.customer: Ann\norder.quantity: 2\n"
                                      "order.city: none\norder.note: none\norder.gift: false")
    assert prompt.endswith("message: Bo wants 3 cups to Oslo\norder.customer:")
    reply = " Bo\norder.quantity: 3\norder.city: Oslo\norder.gift: false\n\nmessage: x"
    assert fmt.parse(reply) == {"order": {"customer": "Bo", "quantity": 3, "city": "Oslo", "note": None,
                                          "gift": False}}
    with pytest.raises(ParseError, match=r"no 'order\.city:' line"):  # nullable is not optional
        fmt.parse(" Bo\norder.quantity: 3\norder.gift: false")


def test_none_is_null_and_a_string_none_is_quoted():
    fmt = FieldsFormat(INPUTS, {"city": CITY, "word": FieldSpec()})
    assert fmt.parse(" None\nword: none") == {"city": None, "word": "none"}  # only nullable fields read null
    assert fmt.parse(' "none"\nword: x') == {"city": "none", "word": "x"}
    prompt = fmt.render_prompt(None, [Demo({"message": "m"}, {"city": "none", "word": "none"})], {"message": "q"})
    assert 'city: "none"\nword: none' in prompt


def test_nullable_object_stays_one_json_line():
    nullable = FieldSpec(type="object", nullable=True, properties={"a": FieldSpec()})
    fmt = FieldsFormat(INPUTS, {"extra": nullable})
    assert list(fmt.lines) == ["extra"]
    assert fmt.parse(" none") == {"extra": None}
    assert fmt.parse(' {"a": "x"}') == {"extra": {"a": "x"}}


def test_grammars_allow_none_and_compile_in_llama_cpp():
    grammar = fields_grammar(output_lines(OUTPUTS))
    assert '"\\n" "order.city: " r3' in grammar and 'r3 ::= r2 | "none"' in grammar
    LlamaGrammar.from_string(grammar, verbose=False)
    in_json = field_grammar(FieldSpec(type="list", items=FieldSpec(type="integer", nullable=True)))
    assert '"null"' in in_json
    LlamaGrammar.from_string(in_json, verbose=False)


def test_json_format_reads_null_and_absent_optional_fields():
    fmt = JsonFormat(INPUTS, OUTPUTS)
    reply = '{"order": {"customer": "Bo", "quantity": 3, "city": null, "gift": true}}'
    assert fmt.parse(reply) == {"order": {"customer": "Bo", "quantity": 3, "city": None, "note": None, "gift": True}}
    assert fmt.schema["properties"]["order"]["properties"]["note"]["anyOf"][1] == {"type": "null"}


class OneReply:
    def __init__(self, text):
        self.text, self.calls = text, []

    async def complete(self, request, **kwargs):
        self.calls.append(kwargs)
        return Completion(self.text, "stop", 10, 2, cached=False, latency_s=0.01)


def test_a_nested_output_takes_one_plain_call_on_the_embedded_model():
    spec = ProgramSpec.model_validate({
        "name": "t", "model": "local/gemma-3-270m", "inputs": {"message": "string"},
        "outputs": {"order": ORDER.model_dump(exclude_defaults=True)}})
    client = OneReply(" Bo\norder.quantity: 3\norder.city: none\norder.note: none\norder.gift: true")
    pred = asyncio.run(Program(spec.signature()).predict({"message": "Bo: 3 cups, gift"}, client))
    assert pred.ok and pred.calls == 1 and "grammar" not in client.calls[0]
    assert pred.y_pred == {"order": {"customer": "Bo", "quantity": 3, "city": None, "note": None, "gift": True}}


@pytest.mark.parametrize(("y_true", "y_pred", "exact", "f1"), [
    ({"city": None}, {"city": None}, 1.0, 1.0),
    ({"city": None}, {"city": "Oslo"}, 0.0, 0.0),
    ({"city": "Oslo"}, {"city": None}, 0.0, 0.0),
    ({"o": None}, {"o": {"a": "x", "b": "y"}}, 0.0, 0.0),
])
def test_rewards_on_null_as_synalinks(y_true, y_pred, exact, f1):
    """Synalinks compares the JSON (null equals null) and tokenizes str(value) for F1, so null
    against null agrees and null against a value does not."""
    assert REWARDS.build({"type": "exact_match", "name": "e"}).compute(y_true, y_pred) == exact
    assert REWARDS.build({"type": "f1_score", "name": "f"}).compute(y_true, y_pred) == f1


def test_spec_accepts_the_keys_and_refuses_a_misspelling(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps({"name": "t", "inputs": {"q": "string"},
                                "outputs": {"a": {"type": "string", "optional": True}}}))
    from rewardctl.errors import InputError
    from rewardctl.spec import load_spec
    with pytest.raises(InputError, match="optional"):
        load_spec(str(path))


def test_a_row_without_an_optional_output_field_has_a_null_reference(tmp_path):
    from rewardctl.dataset import read_rows
    from rewardctl.errors import InputError
    data = tmp_path / "d.jsonl"
    data.write_text('{"q": "a", "answer": "x"}\n{"q": "b", "answer": "y", "note": null}\n')
    outputs = {"answer": FieldSpec(), "note": FieldSpec(required=False)}
    rows = list(read_rows(str(data), {"q": FieldSpec()}, outputs))
    assert [r.y_true for r in rows] == [{"answer": "x", "note": None}, {"answer": "y", "note": None}]
    data.write_text('{"q": "a", "note": "n"}\n')
    with pytest.raises(InputError, match=r"d\.jsonl:1.*answer.*missing output field"):
        list(read_rows(str(data), {"q": FieldSpec()}, outputs))


def test_a_nullable_enum_has_null_among_its_labels():
    from rewardctl.metrics import METRICS
    from rewardctl.metrics.classification import ClassificationConfig
    from rewardctl.rewards import RewardContext
    outputs = {"label": FieldSpec(type="enum", values=["pos", "neg"], nullable=True)}
    metric = METRICS.build(ClassificationConfig(field="label"), RewardContext(outputs_schema=json_schema(outputs)))
    for true, pred in [("pos", "pos"), (None, None), ("neg", None)]:
        metric.update({"label": true}, {"label": pred}, {}, {})
    _, details = metric.result()
    assert list(details["per_label"]) == ["pos", "neg", "null"]
    assert details["per_label"]["null"]["recall"] == 1.0 and details["per_label"]["null"]["precision"] == 0.5


class Replies(OneReply):
    def __init__(self, texts):
        super().__init__(None)
        self.texts, self.requests = list(texts), []

    async def complete(self, request, **kwargs):
        self.requests.append(request)
        self.text = self.texts.pop(0)
        return await super().complete(request, **kwargs)


def test_an_enum_inside_an_object_decodes_line_by_line_under_dotted_heads():
    spec = ProgramSpec.model_validate({
        "name": "t", "model": "local/gemma-3-270m", "inputs": {"message": "string"},
        "outputs": {"order": {"type": "object", "properties": {
            "item": "string", "speed": {"type": "enum", "values": ["normal", "express"], "nullable": True}}}}})
    client = Replies([" cups", " none"])
    pred = asyncio.run(Program(spec.signature()).predict({"message": "3 cups"}, client))
    assert pred.y_pred == {"order": {"item": "cups", "speed": None}} and pred.calls == 2
    assert client.requests[1].messages[0]["content"].endswith("order.item: cups\norder.speed:")
    assert '"none"' in client.calls[1]["grammar"]
