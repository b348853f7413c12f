"""composite: a weighted sum, mean, min or max of other rewards (each with its own masks,
normalization and weight)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from rewardctl.rewards.base import JSON, Reward, RewardConfig, build_reward, register


class CompositeConfig(RewardConfig):
    type: Literal["composite"] = "composite"
    combine: Literal["weighted_sum", "mean", "min", "max"] = Field(
        "mean", description="'mean' is weighted by the parts' weights; 'weighted_sum' is not divided.")
    rewards: list[AnyRewardConfig] = Field(min_length=1, description="The parts, as reward entries.")  # noqa: F821


@register
class Composite(Reward):
    config_model = CompositeConfig

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        self.parts = [build_reward(part, self.context) for part in self.config.rewards]

    def get_config(self) -> dict[str, Any]:
        data = super().get_config()
        data["rewards"] = [part.get_config() for part in self.parts]
        return data

    async def compute_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON],
                            inputs: Sequence[JSON | None]) -> list[float | None]:
        columns = [await part.score_batch(y_trues, y_preds, inputs) for part in self.parts]
        combine = self.config.combine
        out: list[float | None] = []
        for i in range(len(y_trues)):
            pairs = [(col[i], part.weight) for col, part in zip(columns, self.parts, strict=True)
                     if col[i] is not None]
            if not pairs:
                out.append(None)
            elif combine == "weighted_sum":
                out.append(sum(v * w for v, w in pairs))
            elif combine == "mean":
                total = sum(w for _, w in pairs)
                out.append(sum(v * w for v, w in pairs) / total if total > 0 else None)
            elif combine == "min":
                out.append(min(v for v, _ in pairs))
            else:
                out.append(max(v for v, _ in pairs))
        return out
