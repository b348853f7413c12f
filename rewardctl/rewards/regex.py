"""regex: the prediction's string leaves match a regular expression."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig
from rewardctl.rewards.leaves import leaves


class RegexConfig(RewardConfig):
    type: Literal["regex"] = "regex"
    pattern: str = Field(description="A Python regular expression.")
    match: Literal["search", "fullmatch"] = Field("search", description="Anywhere, or the whole leaf.")
    require: Literal["all", "any"] = Field("all", description="Which leaves must match.")
    ignore_case: bool = False
    negate: bool = Field(False, description="Reward not matching instead: 1 - score.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value


@REWARDS.register
class Regex(Reward):
    config_model = RegexConfig

    def value_range(self) -> tuple[float, float] | None:
        return (0.0, 1.0)

    def needs_reference(self) -> bool:
        return False

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        flags = re.IGNORECASE if self.config.ignore_case else 0
        compiled = re.compile(self.config.pattern, flags)
        self._test = compiled.fullmatch if self.config.match == "fullmatch" else compiled.search

    def compute(self, y_true: JSON, y_pred: JSON) -> float:
        results = [self._test(text) is not None for text in leaves(y_pred).values()]
        ok = bool(results) and (all(results) if self.config.require == "all" else any(results))
        return float(ok != self.config.negate)
