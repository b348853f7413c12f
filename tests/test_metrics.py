"""Run-level statistics and metrics, checked against scikit-learn and hand-derived values."""

import math
import random

import pytest

from rewardctl.metrics import METRICS
from rewardctl.metrics.classification import ClassificationConfig
from rewardctl.metrics.field_f1 import FieldF1Config
from rewardctl.metrics.pass_at_k import PassAtKConfig, pass_at_k
from rewardctl.metrics.stats import bootstrap_ci, describe
from rewardctl.rewards import RewardContext
from rewardctl.scoring import RowScores


def test_describe_by_hand():
    values = [0.0, 1.0, 1.0, 1.0]
    d = describe(values, excluded=2, pass_threshold=0.5)
    assert d["count"] == 4 and d["excluded"] == 2
    assert d["mean"] == 0.75
    assert d["std"] == pytest.approx(0.5)  # sample std (ddof=1)
    assert d["stderr"] == pytest.approx(0.25)
    assert d["pass_rate"] == 0.75
    assert d["percentiles"]["p50"] == 1.0 and d["min"] == 0.0 and d["max"] == 1.0
    assert describe([])["mean"] is None


def test_bootstrap_ci_is_seeded_and_sane():
    rng = random.Random(7)
    values = [float(rng.random() < 0.7) for _ in range(400)]
    a, b = bootstrap_ci(values, seed=0), bootstrap_ci(values, seed=0)
    assert a == b
    mean = sum(values) / len(values)
    half = 1.96 * math.sqrt(mean * (1 - mean) / len(values))
    assert a[0] < mean < a[1] and a[2] == "bootstrap"
    assert a[0] == pytest.approx(mean - half, abs=0.015) and a[1] == pytest.approx(mean + half, abs=0.015)
    assert bootstrap_ci(values, seed=1)[:2] != a[:2]  # seed 0 is a real seed, not "unseeded"
    big_binary = [float(i % 3 == 0) for i in range(150_000)]
    assert bootstrap_ci(big_binary)[2] == "bootstrap"  # two distinct values: exact and cheap at any n
    big_continuous = [rng.random() for _ in range(30_000)]
    assert bootstrap_ci(big_continuous)[2] == "normal"


def test_multinomial_bootstrap_matches_index_resampling():
    import numpy as np

    from rewardctl.metrics import stats

    rng = random.Random(11)
    values = [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(3000)]
    fast = bootstrap_ci(values, seed=0)
    old = stats.MULTINOMIAL_MAX_DISTINCT
    stats.MULTINOMIAL_MAX_DISTINCT = 0  # force index resampling
    try:
        slow = bootstrap_ci(values, seed=0)
    finally:
        stats.MULTINOMIAL_MAX_DISTINCT = old
    spread = np.std(values) / np.sqrt(len(values))
    assert fast[0] == pytest.approx(slow[0], abs=0.15 * spread * 4)
    assert fast[1] == pytest.approx(slow[1], abs=0.15 * spread * 4)


def run_classification(pairs, **options):
    context = RewardContext(outputs_schema={"properties": {"label": {"enum": ["a", "b", "c"]}}})
    metric = METRICS.build(ClassificationConfig(field="label", **options), context)
    for t, p in pairs:
        metric.update({"label": t}, None if p is None else {"label": p}, None, None)
    return metric.result()


@pytest.mark.parametrize("zero_division", ["warn", 0, 1, "nan"])
def test_classification_equals_sklearn(zero_division):
    from sklearn.metrics import precision_recall_fscore_support

    rng = random.Random(3)
    truth = [rng.choice("abc") for _ in range(200)]
    preds = [t if (t != "c" and rng.random() < 0.6) else rng.choice("ab") for t in truth]  # never "c"
    headline, details = run_classification(list(zip(truth, preds, strict=True)), zero_division=zero_division)
    zd = zero_division if zero_division != "nan" else float("nan")
    for avg in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(truth, preds, labels=["a", "b", "c"], average=avg, zero_division=zd)
        for key, value in (("precision", p), ("recall", r), ("f1", f)):
            got = details[avg][key]
            assert (got is None and math.isnan(value)) or got == pytest.approx(value), (avg, key)
    p, r, f, s = precision_recall_fscore_support(truth, preds, labels=["a", "b", "c"], average=None, zero_division=zd)
    for i, label in enumerate("abc"):
        assert details["per_label"][label]["recall"] == pytest.approx(r[i])
        assert details["per_label"][label]["support"] == s[i]
    assert headline == details["macro"]["f1"]
    if zero_division == "warn":
        assert "undefined" in details


def test_classification_failed_predictions():
    _, details = run_classification([("a", "a"), ("b", None), ("c", "c")])
    assert details["failed"] == 1 and details["per_label"]["b"]["recall"] == 0.0
    assert details["accuracy"] == pytest.approx(2 / 3)
    _, excluded = run_classification([("a", "a"), ("b", None), ("c", "c")], on_error="exclude")
    assert excluded["count"] == 2 and excluded["excluded"] == 1 and excluded["accuracy"] == 1.0


def test_corpus_field_f1_differs_from_the_per_example_mean():
    # ex1: "x y z w" vs "x": tp 1, fp 0, fn 3 (F1 0.4); ex2: "v" vs "v": tp 1 (F1 1.0).
    # Per-example mean 0.7; corpus: tp 2, fp 0, fn 3 -> P 1, R 0.4, F1 = 0.8 / 1.4.
    metric = METRICS.build(FieldF1Config())
    metric.update({"a": "x y z w"}, {"a": "x"}, None, None)
    metric.update({"a": "v"}, {"a": "v"}, None, None)
    value, details = metric.result()
    assert value == pytest.approx(0.8 / 1.4)
    assert details["fields"]["a"] == {"precision": 1.0, "recall": 0.4, "f1": pytest.approx(0.8 / 1.4),
                                      "tp": 2, "fp": 0, "fn": 3}


def test_field_f1_micro_and_macro_over_fields_with_masks():
    metric = METRICS.build(FieldF1Config(average="macro", in_mask=["answer", "why"]))
    metric.update({"answer": "x", "why": "y z", "note": "n"}, {"answer": "x", "why": "y", "note": "q"}, None, None)
    value, details = metric.result()
    assert set(details["fields"]) == {"answer", "why"}
    # answer F1 1.0; why: P 1, R .5 -> 2/3; macro (1 + 2/3) / 2; micro tp 2 fp 0 fn 1 -> 0.8
    assert value == pytest.approx((1 + 2 / 3) / 2)
    assert details["micro"] == pytest.approx(0.8)
    metric.update({"answer": "x", "why": "y"}, None, None, None)  # failed: everything is a false negative
    assert metric.result()[1]["fields"]["answer"]["fn"] == 1


def test_pass_at_k_by_hand():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert pass_at_k(5, 4, 2) == 1.0
    metric = METRICS.build(PassAtKConfig(k=2))
    for i in range(5):  # example A: 2 of 5 pass
        metric.update({"a": 1}, {}, {"q": "A"}, RowScores({}, {}, 1.0 if i < 2 else 0.0))
    for _ in range(3):  # example B: 0 of 3 pass
        metric.update({"a": 1}, {}, {"q": "B"}, RowScores({}, {}, 0.0))
    metric.update({"a": 1}, {}, {"q": "C"}, RowScores({}, {}, 1.0))  # C: one sample, fewer than k
    value, details = metric.result()
    assert value == pytest.approx((0.7 + 0.0) / 2)
    assert details["examples"] == 2 and details["too_few_samples"] == 1 and details["samples"] == 9


def test_pass_at_k_on_a_named_score_and_threshold():
    metric = METRICS.build(PassAtKConfig(k=1, score="f1", threshold=0.5))
    metric.update({}, {}, {"q": 1}, RowScores({}, {"f1": 0.6}, 0.0))
    metric.update({}, {}, {"q": 1}, RowScores({}, {"f1": 0.4}, 1.0))
    assert metric.result()[0] == pytest.approx(0.5)
