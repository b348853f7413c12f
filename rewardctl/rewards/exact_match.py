"""exact_match: 1.0 when y_pred equals y_true as JSON (after masks), else 0.0."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig


class ExactMatchConfig(RewardConfig):
    type: Literal["exact_match"] = "exact_match"
    text_normalization: list[Literal["strip", "casefold"]] = Field(
        default_factory=list,
        description="Applied to every string leaf on both sides before comparing: "
        "'strip' (surrounding whitespace), 'casefold' (case-insensitive).",
    )


def _normalizer(steps: list[str]):
    strip, casefold = "strip" in steps, "casefold" in steps

    def norm(value: Any) -> Any:
        if isinstance(value, str):
            if strip:
                value = value.strip()
            if casefold:
                value = value.casefold()
            return value
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    return norm


@REWARDS.register
class ExactMatch(Reward):
    config_model = ExactMatchConfig

    def value_range(self) -> tuple[float, float] | None:
        return (0.0, 1.0)

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        steps = self.config.text_normalization
        self._norm = _normalizer(steps) if steps else None

    def compute(self, y_true: JSON, y_pred: JSON) -> float:
        if self._norm is not None:
            return 1.0 if self._norm(y_true) == self._norm(y_pred) else 0.0
        return 1.0 if y_true == y_pred else 0.0
