"""pass_at_k: the chance that at least one of k samples of an example passes, estimated
without bias from n >= k samples with c passes: 1 - C(n - c, k) / C(n, k) (Chen et al., 2021),
averaged over examples. pass_hat_k (pass^k): the chance that all k samples pass, C(c, k) / C(n, k)
(Yao et al., 2024, tau-bench): the reliability a user sees when asking k times; each reports the
other beside it. Samples of one example are the rows that share its inputs and reference
(`rewardctl eval --repeat N`, or a dataset that repeats rows)."""

from __future__ import annotations

import json
from math import comb
from typing import Any, Literal

from pydantic import Field

from rewardctl.datamodel import DataModel
from rewardctl.metrics.base import METRICS, MetricConfig, RunMetric


class PassAtKConfig(MetricConfig):
    type: Literal["pass_at_k"] = "pass_at_k"
    k: int = Field(1, ge=1, description="Samples allowed per example.")
    score: str | None = Field(None, description="The reward or metric that decides a pass. Default: the total reward.")
    threshold: float = Field(1.0, description="A sample passes when its score is at or above this.")
    group_by: Literal["inputs", "inputs_and_reference"] = "inputs_and_reference"

    def spec_problems(self, outputs: DataModel, score_names: set[str]) -> list[tuple[tuple[Any, ...], str]]:
        if self.score is None or self.score in score_names:
            return []
        return [(("score",), f"no reward or metric named '{self.score}' (known: {', '.join(sorted(score_names))})")]


def pass_at_k(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """All of k samples drawn (without replacement) from n, c of which pass, pass."""
    return comb(c, k) / comb(n, k)


@METRICS.register
class PassAtK(RunMetric):
    config_model = PassAtKConfig
    estimator = "pass_at_k"  # which of the two estimates is the metric's value

    def __init__(self, config, context=None):
        super().__init__(config, context)
        self.groups: dict[str, list[int]] = {}

    def update(self, y_true, y_pred, inputs, scores) -> None:
        cfg = self.config
        if cfg.score is None:
            value = scores.reward
        else:
            value = scores.rewards.get(cfg.score, scores.metrics.get(cfg.score))
        key_obj = [inputs] if cfg.group_by == "inputs" else [inputs, y_true]
        key = json.dumps(key_obj, sort_keys=True, ensure_ascii=False)
        group = self.groups.setdefault(key, [0, 0])
        group[0] += 1
        group[1] += int(value is not None and value >= cfg.threshold)

    def result(self) -> tuple[float | None, dict[str, Any]]:
        k = self.config.k
        usable = [(n, c) for n, c in self.groups.values() if n >= k]
        details: dict[str, Any] = {"k": k, "examples": len(usable),
                                   "too_few_samples": len(self.groups) - len(usable),
                                   "samples": sum(n for n, _ in self.groups.values())}
        if not usable:
            return None, details
        details["pass_at_k"] = sum(pass_at_k(n, c, k) for n, c in usable) / len(usable)
        details["pass_hat_k"] = sum(pass_hat_k(n, c, k) for n, c in usable) / len(usable)
        value = details[self.estimator]
        details["value"] = value
        return value, details


class PassHatKConfig(PassAtKConfig):
    type: Literal["pass_hat_k"] = "pass_hat_k"  # type: ignore[assignment]


@METRICS.register
class PassHatK(PassAtK):
    """pass^k: the chance that all k samples of an example pass (pass@k beside it in the details)."""

    config_model = PassHatKConfig
    estimator = "pass_hat_k"
