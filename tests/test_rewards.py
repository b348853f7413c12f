import pytest

from rewardctl.errors import InputError
from rewardctl.rewards import REWARDS
from rewardctl.rewards.token_overlap import tokens_squad, tokens_synalinks


def score(config, y_true, y_pred):
    return REWARDS.build(config).score(y_true, y_pred)


def test_registry_has_builtins_and_configs_round_trip():
    assert {"exact_match", "f1_score", "precision", "recall", "fbeta"} <= set(REWARDS)
    config = {"type": "fbeta", "name": "fb", "beta": 2.0, "in_mask": ["answer"], "weight": 0.5}
    reward = REWARDS.build(config)
    assert reward.get_config() == config
    assert REWARDS.build(reward.get_config()).get_config() == config


def test_unknown_type():
    with pytest.raises(InputError, match="unknown reward type 'nope'"):
        REWARDS.build({"type": "nope"})


def test_exact_match():
    assert score({"type": "exact_match"}, {"a": "Paris"}, {"a": "Paris"}) == 1.0
    assert score({"type": "exact_match"}, {"a": "Paris"}, {"a": "paris "}) == 0.0
    assert score({"type": "exact_match", "text_normalization": ["strip", "casefold"]}, {"a": "Paris"}, {"a": " paris"}) == 1.0
    assert score({"type": "exact_match", "in_mask": ["answer"]},
                 {"thinking": "x", "answer": "Paris"}, {"thinking": "y", "answer": "Paris"}) == 1.0


def test_tokenizers():
    assert tokens_synalinks("The capital of France is Paris!") == ["capital", "france", "paris"]
    assert tokens_squad("The capital of France is Paris!") == ["capital", "of", "france", "is", "paris"]


@pytest.mark.parametrize("config,true,pred,expected", [
    # [capital, paris] vs [paris]: P=1, R=1/2 -> F1 = 2/3
    ({"type": "f1_score"}, "The capital is Paris", "Paris", 2 / 3),
    # squad keeps "is": [capital, is, paris] vs [paris]: P=1, R=1/3 -> 0.5
    ({"type": "f1_score", "text_normalization": "squad"}, "The capital is Paris", "Paris", 0.5),
    ({"type": "precision"}, "x y z", "x y w v", 0.5),
    ({"type": "recall"}, "x y z", "x y w v", 2 / 3),
    # (1 + 4) * 0.5 * (2/3) / (4 * 0.5 + 2/3) = 0.625
    ({"type": "fbeta", "beta": 2.0}, "x y z", "x y w v", 0.625),
    ({"type": "f1_score"}, "paris", "paris paris", 2 / 3),  # multiset: P=1/2, R=1
    ({"type": "f1_score"}, "Paris!", "paris", 1.0),
    ({"type": "f1_score"}, "", "", 1.0),  # two empty leaves agree
    ({"type": "f1_score"}, "Paris", "", 0.0),
])
def test_token_overlap_values(config, true, pred, expected):
    assert score(config, {"a": true}, {"a": pred}) == pytest.approx(expected)


def test_leaves_are_paired_by_key_path_not_position():
    # a: [x, y] vs [x] -> 2/3; b: 1.0; mean 5/6, whatever the key order.
    assert score({"type": "f1_score"}, {"a": "x y", "b": "z"}, {"b": "z", "a": "x"}) == pytest.approx(5 / 6)
    # A field missing from the prediction scores 0 for that field.
    assert score({"type": "f1_score"}, {"a": "x", "b": "z"}, {"a": "x"}) == pytest.approx(0.5)


def test_failure_policy():
    import asyncio

    em = REWARDS.build({"type": "exact_match"})
    assert asyncio.run(em.score_batch([{"a": 1}], [None])) == [0.0]
    custom = REWARDS.build({"type": "exact_match", "failure_score": 0.25})
    assert custom.score({"a": 1}, None) == 0.25
    excluded = REWARDS.build({"type": "exact_match", "on_error": "exclude"})
    assert excluded.score({"a": 1}, None) is None


def test_masks_leaving_nothing_is_an_error():
    reward = REWARDS.build({"type": "f1_score", "in_mask": ["answer"]})
    with pytest.raises(InputError, match="leave nothing to compare"):
        reward.score({"other": "x"}, {"other": "x"})
