"""contains: the prediction contains given texts, or the reference's texts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig
from rewardctl.rewards.leaves import leaves, paired_leaves


class ContainsConfig(RewardConfig):
    type: Literal["contains"] = "contains"
    value: str | list[str] | None = Field(
        None, description="Text(s) to look for in the prediction's string leaves. Unset: each "
        "reference leaf is looked for in the predicted leaf at the same key path.")
    mode: Literal["all", "any", "fraction"] = Field(
        "all", description="1.0 when all (any) are found, or the fraction found.")
    case_sensitive: bool = False
    negate: bool = Field(False, description="Reward absence instead (banned words): 1 - score.")


@REWARDS.register
class Contains(Reward):
    config_model = ContainsConfig

    def value_range(self) -> tuple[float, float] | None:
        return (0.0, 1.0)

    def needs_reference(self) -> bool:
        return self.config.value is None  # without `value`, it looks for the reference's text

    def compute(self, y_true: JSON, y_pred: JSON) -> float:
        cfg = self.config

        def fold(text: str) -> str:
            return text if cfg.case_sensitive else text.casefold()

        if cfg.value is not None:
            haystack = fold("\n".join(leaves(y_pred).values()))
            needles = [cfg.value] if isinstance(cfg.value, str) else cfg.value
            found = [fold(n) in haystack for n in needles]
        else:
            found = [fold(t) in fold(p) for _, t, p in paired_leaves(y_true, y_pred) if t]
        if not found:
            score = 1.0
        elif cfg.mode == "all":
            score = float(all(found))
        elif cfg.mode == "any":
            score = float(any(found))
        else:
            score = sum(found) / len(found)
        return 1.0 - score if cfg.negate else score
