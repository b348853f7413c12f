import pytest

from rewardctl.datamodel import (
    FieldSpec,
    ValueProblem,
    check_fields,
    check_value,
    json_schema,
    needs_structure,
)


def spec(**kw):
    return FieldSpec.model_validate(kw)


def test_strict_types():
    assert check_value("x", spec(type="string"), "a", lax=False) == "x"
    with pytest.raises(ValueProblem, match="expected a string, got integer"):
        check_value(3, spec(type="string"), "a", lax=False)
    with pytest.raises(ValueProblem, match="expected an integer"):
        check_value(True, spec(type="integer"), "a", lax=False)
    assert check_value(3.0, spec(type="integer"), "a", lax=False) == 3
    with pytest.raises(ValueProblem):
        check_value(3.5, spec(type="integer"), "a", lax=False)
    with pytest.raises(ValueProblem, match="finite"):
        check_value(float("nan"), spec(type="number"), "a", lax=False)


def test_lax_coercion_of_model_text():
    assert check_value("42", spec(type="integer"), "a", lax=True) == 42
    assert check_value("yes", spec(type="boolean"), "a", lax=True) is True
    assert check_value(" Positive.", spec(type="enum", values=["positive", "negative"]), "a", lax=True) == "positive"
    with pytest.raises(ValueProblem, match="expected one of"):
        check_value("meh", spec(type="enum", values=["positive", "negative"]), "a", lax=True)


def test_nested_paths_in_messages():
    model = {"steps": spec(type="list", items={"type": "object", "properties": {"n": "integer"}})}
    with pytest.raises(ValueProblem) as err:
        check_fields({"steps": [{"n": 1}, {"n": "x"}]}, model, lax=False)
    assert err.value.path == "steps[1].n"


def test_ground_truth_keeps_unknown_nested_keys_but_replies_do_not():
    model = {"o": spec(type="object", properties={"a": "string"})}
    assert check_fields({"o": {"a": "x", "note": 1}}, model, lax=False) == {"o": {"a": "x", "note": 1}}
    assert check_fields({"o": {"a": "x", "note": 1}}, model, lax=True) == {"o": {"a": "x"}}


def test_json_schema_and_structure():
    model = {"label": spec(type="enum", values=["a", "b"]), "why": spec(type="string", max_length=10)}
    schema = json_schema(model)
    assert schema["required"] == ["label", "why"]
    assert schema["properties"]["label"]["enum"] == ["a", "b"]
    assert schema["properties"]["why"]["maxLength"] == 10
    assert needs_structure(model)
    assert not needs_structure({"x": spec(type="string"), "n": spec(type="number")})


def test_field_spec_rules():
    with pytest.raises(ValueError):
        FieldSpec.model_validate({"type": "number", "max_length": 3})
    with pytest.raises(ValueError):
        FieldSpec.model_validate({"type": "object"})
    assert FieldSpec.model_validate({"type": "list"}).items.type == "string"
