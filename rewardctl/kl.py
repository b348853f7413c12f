"""KL estimators and KL-coefficient controllers (public API).

With ``logp`` the policy's per-token log-probabilities of tokens sampled from the policy, and
``ref_logp`` the reference's log-probabilities of the same tokens (Schulman, "Approximating KL
divergence"):

    k1 = logp - ref_logp                      unbiased, high variance, can be negative per sample
    k2 = 0.5 * (logp - ref_logp) ** 2         biased, low variance, never negative
    k3 = exp(r) - 1 - r,  r = ref_logp - logp unbiased, low variance, never negative

``estimate`` returns per-token values (0 where ``mask`` is false); ``sequence_kl`` sums them over
the mask: the sequence-level KL(policy || reference) estimate of one sample.

Controllers give the penalty coefficient beta: ``FixedKLController(kl_coef)``, or Ziegler et al.'s
``AdaptiveKLController(init_kl_coef=0.2, target=6, horizon=10000)``, which after each step updates
``value *= 1 + clip(current_kl / target - 1, -0.2, 0.2) * n_steps / horizon``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

KLKind = Literal["k1", "k2", "k3"]

__all__ = ["AdaptiveKLController", "FixedKLController", "KLKind", "estimate", "sequence_kl"]


def estimate(logp: Sequence[float] | np.ndarray, ref_logp: Sequence[float] | np.ndarray,
             kind: KLKind = "k1", mask: Sequence[bool] | np.ndarray | None = None) -> np.ndarray:
    """Per-token KL estimates of one sequence (or any array of matching shape)."""
    import numpy as np  # start-up time: the spec imports the optimizers, only a KL estimate needs numpy

    logp = np.asarray(logp, dtype=np.float64)
    ref_logp = np.asarray(ref_logp, dtype=np.float64)
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp has shape {logp.shape} but ref_logp {ref_logp.shape}")
    diff = logp - ref_logp
    if kind == "k1":
        values = diff
    elif kind == "k2":
        values = 0.5 * diff**2
    elif kind == "k3":
        r = -diff
        values = np.expm1(r) - r
    else:
        raise ValueError(f"kind must be 'k1', 'k2' or 'k3', not {kind!r}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != values.shape:
            raise ValueError(f"mask has shape {mask.shape} but the values {values.shape}")
        values = np.where(mask, values, 0.0)
    return values


def sequence_kl(logp: Sequence[float] | np.ndarray, ref_logp: Sequence[float] | np.ndarray,
                kind: KLKind = "k1", mask: Sequence[bool] | np.ndarray | None = None) -> float:
    """The KL estimate of a sequence: per-token estimates summed over the mask."""
    return float(estimate(logp, ref_logp, kind, mask).sum())


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. (2019): moves beta so that the KL tends toward ``target``."""

    def __init__(self, init_kl_coef: float = 0.2, target: float = 6.0, horizon: int = 10000):
        if target <= 0 or horizon <= 0:
            raise ValueError("target and horizon must be positive")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(float(current_kl) / self.target - 1, -0.2), 0.2)
        self.value *= 1 + proportional_error * n_steps / self.horizon
