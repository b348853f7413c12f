"""Optimizer logic: seeded sampling, demo construction, bootstrapping (no model involved)."""

import random
from collections import Counter

import pytest

from rewardctl.datamodel import FieldSpec
from rewardctl.optimizers import Observation
from rewardctl.optimizers.bootstrap_few_shot import BootstrapFewShot, BootstrapFewShotConfig
from rewardctl.optimizers.random_few_shot import RandomFewShot, RandomFewShotConfig, weighted_sample
from rewardctl.state import Example, ProgramState

OUTPUTS = {"answer": FieldSpec()}
COT = {"thinking": FieldSpec(), "answer": FieldSpec()}
PARENT = ProgramState("Answer.", [])


def obs(i, reward, y_pred=None, y_true=None):
    return Observation({"q": f"q{i}"}, y_true if y_true is not None else {"answer": f"a{i}"},
                       y_pred, reward)


def test_weighted_sample_follows_the_softmax():
    rng = random.Random(0)
    counts = Counter(weighted_sample(["hi", "lo"], [1.0 / 0.3, 0.0], 1, rng)[0] for _ in range(4000))
    # p(hi) = e^(1/0.3) / (e^(1/0.3) + 1) = 0.9656
    assert counts["hi"] / 4000 == pytest.approx(0.9656, abs=0.015)
    assert sorted(weighted_sample([1, 2, 3], [0, 0, 0], 3, rng)) == [1, 2, 3]  # without replacement


def test_random_few_shot_draws_between_min_and_max_reference_demos():
    opt = RandomFewShot(RandomFewShotConfig(min_examples=2, max_examples=3), OUTPUTS)
    opt.observe([obs(i, 1.0 if i % 2 else 0.0, {"answer": "wrong"}) for i in range(10)])
    sizes = set()
    rng = random.Random(0)
    for _ in range(50):
        state = opt.propose(PARENT, rng)
        sizes.add(len(state.examples))
        assert all(e.output["answer"] == "a" + e.input["q"][1:] for e in state.examples)  # references
        assert state.instructions == "Answer."
    assert sizes == {2, 3}


def test_seeds_are_used_and_reproducible():
    def proposals(seed):
        opt = RandomFewShot(RandomFewShotConfig(sampling="random"), OUTPUTS)
        opt.observe([obs(i, 0.5) for i in range(20)])
        rng = random.Random(seed)
        return [opt.propose(PARENT, rng).key() for _ in range(5)]

    assert proposals(0) == proposals(0)
    assert proposals(0) != proposals(1)


def test_best_sampling_and_prediction_demos():
    opt = RandomFewShot(RandomFewShotConfig(sampling="best", min_examples=2, max_examples=2), OUTPUTS)
    opt.observe([obs(i, i / 10) for i in range(10)])
    assert [e.input["q"] for e in opt.propose(PARENT, random.Random(0)).examples] == ["q9", "q8"]
    pred = RandomFewShot(RandomFewShotConfig(demo_output="prediction"), OUTPUTS)
    pred.observe([obs(1, 1.0, {"answer": "mine"}), obs(2, 0.0, {"answer": "bad"})])
    assert [d["output"] for d in pred.pool] == [{"answer": "mine"}]


def test_incomplete_references_are_filled_from_predictions():
    opt = RandomFewShot(RandomFewShotConfig(), COT)
    opt.observe([obs(1, 0.0, {"thinking": "t1", "answer": "wrong"}, {"answer": "right"}),
                 obs(2, 0.0, None, {"answer": "right2"})])
    assert [d["output"] for d in opt.pool] == [{"thinking": "t1", "answer": "right"},
                                               {"thinking": "", "answer": "right2"}]


def test_instruction_candidates_are_proposed():
    opt = RandomFewShot(RandomFewShotConfig(instruction_candidates=["Be brief.", "Think."]), OUTPUTS)
    opt.observe([obs(i, 1.0) for i in range(5)])
    rng = random.Random(0)
    seen = {opt.propose(PARENT, rng).instructions for _ in range(40)}
    assert seen == {"Answer.", "Be brief.", "Think."}


def test_empty_pool_proposes_nothing_and_epochs_reset_it():
    opt = RandomFewShot(RandomFewShotConfig(), OUTPUTS)
    assert opt.propose(PARENT, random.Random(0)) is None
    opt.observe([obs(1, 1.0)])
    opt.start_epoch()
    assert opt.pool == []


def test_bootstrap_keeps_successes_and_teaches_with_labeled_demos():
    opt = BootstrapFewShot(BootstrapFewShotConfig(threshold=0.8, teacher_demos=2, min_examples=1, max_examples=2),
                           OUTPUTS)
    opt.set_labeled([Example(input={"q": f"l{i}"}, output={"answer": f"L{i}"}) for i in range(5)])
    teacher = opt.teacher(ProgramState(None, [Example(input={"q": "own"}, output={"answer": "own"})]), random.Random(0))
    assert len(teacher.examples) == 3 and teacher.examples[-1].input == {"q": "own"}
    opt.observe([obs(1, 0.9, {"answer": "p1"}), obs(2, 0.5, {"answer": "p2"}), obs(3, 1.0, None),
                 obs(1, 1.0, {"answer": "again"})])
    assert opt.pool == [{"input": {"q": "q1"}, "output": {"answer": "p1"}}]  # own outputs, deduplicated
    state = opt.propose(PARENT, random.Random(0))
    assert [e.output for e in state.examples] == [{"answer": "p1"}]
    restored = BootstrapFewShot(opt.config, OUTPUTS)
    restored.load_state_dict(opt.state_dict())
    assert restored.pool == opt.pool


def test_bootstrap_without_complete_references_fills_the_teacher():
    opt = BootstrapFewShot(BootstrapFewShotConfig(teacher_demos=1), COT)
    opt.set_labeled([])
    opt.observe([obs(1, 0.0, {"thinking": "t", "answer": "x"}, {"answer": "right"})])
    teacher = opt.teacher(PARENT, random.Random(0))
    assert teacher.examples[0].output == {"thinking": "t", "answer": "right"}


def test_config_validation():
    with pytest.raises(ValueError, match="min_examples must not exceed"):
        RandomFewShotConfig(min_examples=5, max_examples=2)
    with pytest.raises(ValueError):
        RandomFewShotConfig(temperature=0)
