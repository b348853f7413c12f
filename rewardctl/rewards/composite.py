"""composite: a weighted sum, mean, min or max of other rewards (each with its own masks,
normalization and weight). Each part's value is recorded per row (predictions carry them under
`components`, reports describe them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from rewardctl.rewards.base import JSON, Reward, RewardConfig, build_reward, register


class Combined(Reward):
    """A reward made of parts: scores them, records their values, combines them per row."""

    parts_field = "rewards"

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        self.parts = [build_reward(part, self.context) for part in getattr(self.config, self.parts_field)]

    def get_config(self) -> dict[str, Any]:
        data = super().get_config()
        data[self.parts_field] = [part.get_config() for part in self.parts]
        return data

    def combine(self, pairs: list[tuple[float, float]]) -> float | None:
        raise TypeError(f"{type(self).__name__} must define combine")

    async def compute_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON],
                            inputs: Sequence[JSON | None]) -> list[float | None]:
        columns = [await part.score_batch(y_trues, y_preds, inputs) for part in self.parts]
        self.batch_components = [{part.name: col[i] for part, col in zip(self.parts, columns, strict=True)}
                                 for i in range(len(y_trues))]
        out: list[float | None] = []
        for i in range(len(y_trues)):
            pairs = [(col[i], part.weight) for col, part in zip(columns, self.parts, strict=True)
                     if col[i] is not None]
            out.append(self.combine(pairs) if pairs else None)
        return out


class CompositeConfig(RewardConfig):
    type: Literal["composite"] = "composite"
    combine: Literal["weighted_sum", "mean", "min", "max"] = Field(
        "mean", description="'mean' is weighted by the parts' weights; 'weighted_sum' is not divided.")
    rewards: list[AnyRewardConfig] = Field(min_length=1, description="The parts, as reward entries.")  # noqa: F821


@register
class Composite(Combined):
    config_model = CompositeConfig

    def combine(self, pairs: list[tuple[float, float]]) -> float | None:
        mode = self.config.combine
        if mode == "weighted_sum":
            return sum(v * w for v, w in pairs)
        if mode == "mean":
            total = sum(w for _, w in pairs)
            return sum(v * w for v, w in pairs) / total if total > 0 else None
        if mode == "min":
            return min(v for v, _ in pairs)
        return max(v for v, _ in pairs)
