"""The built-in rewards beyond exact match and F1, normalization and clipping, composites."""

import asyncio
import json
import textwrap

import pytest

from rewardctl.errors import InputError
from rewardctl.rewards import REWARDS, RewardContext
from rewardctl.rewards.base import Normalization, fit_normalization


def score(config, y_true, y_pred, inputs=None, context=None):
    return REWARDS.build(config, context).score(y_true, y_pred, inputs)


# --- contains / regex / json_schema / length ---------------------------------------------------

@pytest.mark.parametrize("config,pred,expected", [
    ({"type": "contains", "value": "paris"}, {"a": "It is Paris."}, 1.0),
    ({"type": "contains", "value": "paris", "case_sensitive": True}, {"a": "It is Paris."}, 0.0),
    ({"type": "contains", "value": ["paris", "france"]}, {"a": "Paris"}, 0.0),
    ({"type": "contains", "value": ["paris", "france"], "mode": "any"}, {"a": "Paris"}, 1.0),
    ({"type": "contains", "value": ["paris", "france", "x", "y"], "mode": "fraction"}, {"a": "Paris, France"}, 0.5),
    ({"type": "contains", "value": "!!!", "negate": True}, {"a": "wow!!!"}, 0.0),
])
def test_contains_values(config, pred, expected):
    assert score(config, {"a": "ignored"}, pred) == pytest.approx(expected)


def test_contains_reference_mode_pairs_by_path():
    assert score({"type": "contains"}, {"a": "Paris", "b": "France"}, {"a": "in Paris", "b": "France!"}) == 1.0
    assert score({"type": "contains"}, {"a": "Paris", "b": "France"}, {"a": "France", "b": "Paris"}) == 0.0


@pytest.mark.parametrize("config,pred,expected", [
    ({"type": "regex", "pattern": r"\d{4}"}, {"a": "in 1984"}, 1.0),
    ({"type": "regex", "pattern": r"\d{4}", "match": "fullmatch"}, {"a": "in 1984"}, 0.0),
    ({"type": "regex", "pattern": r"^[A-Z]"}, {"a": "Yes", "b": "no"}, 0.0),
    ({"type": "regex", "pattern": r"^[A-Z]", "require": "any"}, {"a": "Yes", "b": "no"}, 1.0),
    ({"type": "regex", "pattern": "yes", "ignore_case": True}, {"a": "YES"}, 1.0),
    ({"type": "regex", "pattern": "sorry", "negate": True}, {"a": "Sorry, I cannot"}, 1.0),
])
def test_regex_values(config, pred, expected):
    assert score(config, {}, pred) == expected


def test_regex_rejects_bad_pattern():
    with pytest.raises(ValueError, match="invalid regular expression"):
        REWARDS.build({"type": "regex", "pattern": "("})


def test_json_schema_inline_file_and_default(tmp_path):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}
    assert score({"type": "json_schema", "schema": schema}, {}, {"n": 3}) == 1.0
    assert score({"type": "json_schema", "schema": schema}, {}, {"n": -1}) == 0.0
    (tmp_path / "s.json").write_text(json.dumps(schema))
    context = RewardContext(base_dir=tmp_path)
    assert score({"type": "json_schema", "schema": "s.json"}, {}, {"n": "x"}, context=context) == 0.0
    outputs = RewardContext(outputs_schema={"type": "object", "required": ["answer"]})
    assert score({"type": "json_schema"}, {}, {"answer": "x"}, context=outputs) == 1.0
    assert score({"type": "json_schema"}, {}, {"other": "x"}, context=outputs) == 0.0
    with pytest.raises(InputError, match="invalid JSON Schema"):
        REWARDS.build({"type": "json_schema", "schema": {"type": "nonsense"}})
    assert REWARDS.build({"type": "json_schema", "schema": schema}).get_config()["schema"] == schema


@pytest.mark.parametrize("config,text,expected", [
    ({"type": "length", "target": 10}, "x" * 10, 1.0),
    ({"type": "length", "target": 10}, "x" * 15, 0.5),  # 1 - 5/10
    ({"type": "length", "target": 10}, "x" * 30, 0.0),
    ({"type": "length", "target": 10, "tolerance": 20}, "x" * 15, 0.75),
    ({"type": "length", "max": 20}, "x" * 20, 1.0),
    ({"type": "length", "max": 20}, "x" * 25, 0.75),  # 1 - 5/20
    ({"type": "length", "min": 4, "max": 8}, "xx", 0.5),  # 1 - 2/4
    ({"type": "length", "target": 3, "unit": "words"}, "one two three four", 2 / 3),
])
def test_length_values(config, text, expected):
    assert score(config, {}, {"a": text}) == pytest.approx(expected)


def test_length_needs_a_mode():
    with pytest.raises(ValueError, match="needs a 'target'"):
        REWARDS.build({"type": "length"})


# --- python -------------------------------------------------------------------------------------

def test_python_file_and_module_functions(tmp_path):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        def overlap(y_true, y_pred, bonus=0.0):
            return float(y_true["a"] == y_pred["a"]) + bonus

        def with_inputs(y_true, y_pred, inputs):
            return 1.0 if inputs["q"] in y_pred["a"] else 0.0

        async def later(y_true, y_pred):
            return 0.25

        def batch(y_trues, y_preds):
            return [len(p["a"]) for p in y_preds]

        def bad(y_true, y_pred):
            raise ValueError("boom")

        def not_a_number(y_true, y_pred):
            return "high"
    """))
    ctx = RewardContext(base_dir=tmp_path)
    assert score({"type": "python", "function": "my_rewards.py:overlap"}, {"a": "x"}, {"a": "x"}, context=ctx) == 1.0
    assert score({"type": "python", "function": "my_rewards:overlap", "options": {"bonus": 0.5}},
                 {"a": "x"}, {"a": "y"}, context=ctx) == 0.5
    assert score({"type": "python", "function": "my_rewards.py:with_inputs"}, {"a": ""}, {"a": "say hi"},
                 {"q": "hi"}, context=ctx) == 1.0
    assert score({"type": "python", "function": "my_rewards.py:later"}, {}, {"a": ""}, context=ctx) == 0.25
    reward = REWARDS.build({"type": "python", "function": "my_rewards.py:batch", "batched": True}, ctx)
    assert asyncio.run(reward.score_batch([{}, {}], [{"a": "xx"}, {"a": "xxx"}])) == [2.0, 3.0]
    with pytest.raises(InputError, match="raised ValueError: boom"):
        score({"type": "python", "function": "my_rewards.py:bad"}, {}, {"a": ""}, context=ctx)
    with pytest.raises(InputError, match="not a number"):
        score({"type": "python", "function": "my_rewards.py:not_a_number"}, {}, {"a": ""}, context=ctx)
    with pytest.raises(InputError, match="has no function 'nope'"):
        REWARDS.build({"type": "python", "function": "my_rewards.py:nope"}, ctx)
    with pytest.raises(InputError, match="no such file"):
        REWARDS.build({"type": "python", "function": "missing.py:f"}, ctx)
    with pytest.raises(InputError, match="cannot load no_such_module"):
        REWARDS.build({"type": "python", "function": "no_such_module:f"}, ctx)
    with pytest.raises(ValueError, match="module:function"):
        REWARDS.build({"type": "python", "function": "just_a_name"}, ctx)


# --- composite ---------------------------------------------------------------------------------

PARTS = [{"type": "exact_match", "weight": 1.0}, {"type": "f1_score", "weight": 3.0}]


@pytest.mark.parametrize("combine,expected", [
    # exact 0.0 (weight 1), f1 of "x y" vs "x": 2/3 (weight 3)
    ("weighted_sum", 0.0 * 1 + (2 / 3) * 3),
    ("mean", (0.0 * 1 + (2 / 3) * 3) / 4),
    ("min", 0.0),
    ("max", 2 / 3),
])
def test_composite_combines(combine, expected):
    config = {"type": "composite", "combine": combine, "rewards": PARTS}
    assert score(config, {"a": "x y"}, {"a": "x"}) == pytest.approx(expected)


def test_composite_parts_keep_their_masks_and_round_trip():
    config = {"type": "composite", "name": "c", "rewards": [
        {"type": "exact_match", "in_mask": ["answer"]}, {"type": "contains", "value": "because"}]}
    reward = REWARDS.build(config)
    assert reward.score({"answer": "4", "why": "w"}, {"answer": "4", "why": "because"}) == 1.0
    assert REWARDS.build(reward.get_config()).get_config() == reward.get_config()


# --- normalization, clipping, failure policy ---------------------------------------------------

def test_minmax_zscore_and_clip():
    em = {"type": "f1_score"}  # "x y" vs "x" -> 2/3
    assert score({**em, "normalization": {"method": "minmax", "min": 0.5, "max": 1.0}},
                 {"a": "x y"}, {"a": "x"}) == pytest.approx((2 / 3 - 0.5) / 0.5)
    assert score({**em, "normalization": {"method": "zscore", "mean": 0.5, "std": 0.25}},
                 {"a": "x y"}, {"a": "x"}) == pytest.approx((2 / 3 - 0.5) / 0.25)
    assert score({**em, "normalization": {"method": "zscore", "mean": 0.5, "std": 0.05}, "clip": [-1, 1]},
                 {"a": "x y"}, {"a": "x"}) == 1.0


def test_running_normalization_uses_values_seen_so_far():
    reward = REWARDS.build({"type": "exact_match", "normalization": {"method": "running"}})
    values = asyncio.run(reward.score_batch([{"a": 1}] * 3, [{"a": 1}, {"a": 2}, {"a": 1}]))
    # raw 1, 0, 1: z of 1st = 0 (one value); 2nd: mean .5, std .7071 -> -0.7071; 3rd: mean 2/3, std .5774 -> 0.5774
    assert values == pytest.approx([0.0, -0.70710678, 0.57735027])


def test_fit_normalization_and_unfitted_is_refused():
    assert fit_normalization("minmax", [0.2, 0.8, 0.5]) == Normalization(method="minmax", min=0.2, max=0.8)
    fitted = fit_normalization("zscore", [1.0, 2.0, 3.0])
    assert (fitted.mean, fitted.std) == (2.0, 1.0)
    reward = REWARDS.build({"type": "exact_match", "normalization": {"method": "zscore"}})
    with pytest.raises(InputError, match="needs fitted parameters"):
        reward.check_ready()


def test_failure_score_is_not_normalized():
    reward = REWARDS.build({"type": "exact_match", "failure_score": -1.0,
                           "normalization": {"method": "minmax", "min": 0, "max": 2}})
    assert reward.score({"a": 1}, None) == -1.0
    assert reward.score({"a": 1}, {"a": 1}) == 0.5


def test_non_finite_values_are_refused(tmp_path):
    (tmp_path / "r.py").write_text("def nan(t, p):\n    return float('nan')\n")
    with pytest.raises(InputError, match="not a finite number"):
        score({"type": "python", "function": "r.py:nan"}, {}, {"a": 1}, context=RewardContext(base_dir=tmp_path))


def test_every_reward_type_round_trips_its_config(tmp_path):
    (tmp_path / "f.py").write_text("def f(t, p):\n    return 1.0\n")
    examples = {
        "exact_match": {"text_normalization": ["strip"]}, "f1_score": {}, "precision": {}, "recall": {},
        "fbeta": {"beta": 0.5}, "contains": {"value": ["a"]}, "regex": {"pattern": "a"},
        "json_schema": {"schema": {"type": "object"}}, "length": {"target": 5},
        "python": {"function": "f.py:f"}, "composite": {"rewards": [{"type": "exact_match"}]},
        "cosine_similarity": {}, "lm_judge": {"rubric": "Is it right?", "model": {"name": "openai/gpt-4o-mini"}},
        "reward_model": {"model": "rm", "output": "sigmoid"},
        "clip": {"model": "rm", "image_field": "image"},
        "ensemble": {"mode": "min", "members": [{"type": "exact_match", "name": "a"}, {"type": "f1_score", "name": "b"}]},
    }
    assert set(examples) == set(REWARDS)
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "reward_model.json").write_text('{"format": "rewardctl-embedding-head"}')
    ctx = RewardContext(base_dir=tmp_path)
    for type_name, options in examples.items():
        config = {"type": type_name, "name": f"my_{type_name}", "weight": 2.0, **options}
        reward = REWARDS.build(config, ctx)
        again = REWARDS.build(reward.get_config(), ctx)
        assert again.get_config() == reward.get_config(), type_name
        assert reward.name == f"my_{type_name}" and reward.weight == 2.0
