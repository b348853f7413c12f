"""rewardctl.kl: estimators and controllers against values computed by hand."""

import math

import numpy as np
import pytest

from rewardctl.kl import AdaptiveKLController, FixedKLController, estimate, sequence_kl

LOGP = [-0.5, -1.0, -2.0]
REF = [-1.5, -0.5, -2.0]


def test_k1_k2_k3_by_hand():
    assert estimate(LOGP, REF, "k1").tolist() == [1.0, -0.5, 0.0]
    assert estimate(LOGP, REF, "k2").tolist() == [0.5, 0.125, 0.0]
    # k3 = exp(r) - 1 - r with r = ref - logp: r = -1, 0.5, 0
    expected = [math.exp(-1) - 1 + 1, math.exp(0.5) - 1 - 0.5, 0.0]
    assert estimate(LOGP, REF, "k3") == pytest.approx(expected)


def test_sequence_kl_sums_over_the_mask():
    assert sequence_kl(LOGP, REF, "k1") == pytest.approx(0.5)
    assert sequence_kl(LOGP, REF, "k1", mask=[True, False, True]) == pytest.approx(1.0)
    assert estimate(LOGP, REF, "k2", mask=[False, True, True]).tolist() == [0.0, 0.125, 0.0]
    assert sequence_kl(LOGP, REF, "k3", mask=[True, True, False]) == pytest.approx(math.exp(-1) + math.exp(0.5) - 1.5)


def test_k2_k3_never_negative_and_zero_at_equality():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    assert (estimate(a, b, "k2") >= 0).all() and (estimate(a, b, "k3") >= -1e-15).all()
    assert sequence_kl(a, a, "k1") == sequence_kl(a, a, "k3") == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        estimate([0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="kind"):
        estimate([0.0], [0.0], "k4")
    with pytest.raises(ValueError, match="mask"):
        estimate([0.0, 1.0], [0.0, 1.0], mask=[True])


def test_fixed_controller():
    controller = FixedKLController(0.3)
    controller.update(50.0, 100)
    assert controller.value == 0.3


def test_adaptive_controller_ziegler():
    controller = AdaptiveKLController()
    assert (controller.value, controller.target, controller.horizon) == (0.2, 6.0, 10000)
    controller.update(current_kl=9.0, n_steps=256)  # error 9/6 - 1 = 0.5, clipped to 0.2
    assert controller.value == pytest.approx(0.2 * (1 + 0.2 * 256 / 10000))
    value = controller.value
    controller.update(current_kl=5.4, n_steps=100)  # error -0.1
    assert controller.value == pytest.approx(value * (1 - 0.1 * 100 / 10000))
    controller.update(current_kl=0.0, n_steps=10000)  # error -1 clipped to -0.2: value * 0.8
    assert controller.value == pytest.approx(value * (1 - 0.1 * 100 / 10000) * 0.8)
