import pytest

from rewardctl.datamodel import FieldSpec
from rewardctl.rewards.masks import Masks, base_key, unmatched_mask_entries


@pytest.mark.parametrize("key,base", [
    ("answer", "answer"), ("answers", "answer"), ("answer_1", "answer"), ("answers_2", "answer"),
    ("categories", "category"), ("boxes", "box"), ("final_answers", "final_answer"),
    ("children", "child"), ("thinking", "thinking"),
])
def test_base_key_as_synalinks(key, base):
    assert base_key(key) == base


COT = {"thinking": "France is in Europe; its capital is Paris.", "answer": "Paris"}


def test_in_mask_keeps_named_fields():
    assert Masks(in_mask=["answer"]).apply(COT) == {"answer": "Paris"}
    assert Masks(in_mask=["answers"]).apply({"answer_1": "a", "answer_2": "b", "x": 1}) == {"answer_1": "a", "answer_2": "b"}


def test_out_mask_drops_fields_at_any_depth():
    value = {"thinking": "t", "answer": "a", "steps": [{"thinking": "s", "n": 1}]}
    assert Masks(out_mask=["thinking"]).apply(value) == {"answer": "a", "steps": [{"n": 1}]}


def test_in_mask_on_an_object_keeps_its_subtree():
    # Synalinks keeps the key but empties the object ({"result": {}}), so rewards compare nothing.
    value = {"result": {"answer": "x", "score": 1}, "note": "n"}
    assert Masks(in_mask=["result"]).apply(value) == {"result": {"answer": "x", "score": 1}}


def test_in_mask_reaches_nested_keys_and_list_items():
    value = {"result": {"answer": "x", "score": 1}, "items": [{"name": "a", "v": 1}, {"name": "b", "v": 2}]}
    assert Masks(in_mask=["answer"]).apply(value) == {"result": {"answer": "x"}}
    assert Masks(in_mask=["name"]).apply(value) == {"items": [{"name": "a"}, {"name": "b"}]}


def test_in_mask_then_out_mask_and_patterns():
    value = {"result": {"answer": "x", "score": 1}, "note": "n"}
    assert Masks(in_mask=["result"], out_mask=["score"]).apply(value) == {"result": {"answer": "x"}}
    assert Masks(in_mask_pattern="^ans").apply(COT) == {"answer": "Paris"}
    assert Masks(out_mask_pattern="think").apply(COT) == {"answer": "Paris"}


def test_unmatched_entries_are_reported():
    fields = {"thinking": FieldSpec(), "answer": FieldSpec()}
    assert unmatched_mask_entries(fields, in_mask=["answers"]) == []
    assert unmatched_mask_entries(fields, in_mask=["anwser"]) == ["in_mask entry 'anwser'"]
    assert unmatched_mask_entries(fields, out_mask_pattern="^zz") == ["out_mask_pattern '^zz'"]
