"""composite: a weighted sum, mean, min or max of other rewards (each with its own masks,
normalization and weight). Each part's value is recorded per row (predictions carry them under
`components`, reports describe them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from rewardctl.datamodel import DataModel
from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig


class PartsConfig(RewardConfig):
    """The config of a reward made of parts: `parts_field` holds the parts' reward entries."""

    parts_field: ClassVar[str] = "rewards"

    def part_configs(self) -> list[RewardConfig]:
        return list(getattr(self, self.parts_field))

    def spec_problems(self, outputs: DataModel, score_names: set[str]) -> list[tuple[tuple[Any, ...], str]]:
        problems = super().spec_problems(outputs, score_names)
        for j, part in enumerate(self.part_configs()):
            problems += [((self.parts_field, j, *where), message)
                         for where, message in part.spec_problems(outputs, score_names)]
        return problems


class Combined(Reward):
    """A reward made of parts: scores them, records their values, combines them per row."""

    config: PartsConfig

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        self.parts = [REWARDS.build(part, self.context) for part in self.config.part_configs()]

    def get_config(self) -> dict[str, Any]:
        data = super().get_config()
        data[self.config.parts_field] = [part.get_config() for part in self.parts]
        return data

    def combine(self, pairs: list[tuple[float, float]]) -> float | None:
        raise TypeError(f"{type(self).__name__} must define combine")

    async def compute_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON],
                            inputs: Sequence[JSON | None]) -> list[float | None]:
        columns = [await part.score_batch(y_trues, y_preds, inputs) for part in self.parts]
        self.batch_components = [{part.name: col[i] for part, col in zip(self.parts, columns, strict=True)}
                                 for i in range(len(y_trues))]
        for part in self.parts:  # a part that could not grade a row (a judge) is left out of it
            for i, reason in part.last_ungraded.items():
                self.batch_part_reasons.setdefault(i, {})[part.name] = reason
        out: list[float | None] = []
        for i in range(len(y_trues)):
            pairs = [(col[i], part.weight) for col, part in zip(columns, self.parts, strict=True)
                     if col[i] is not None]
            out.append(self.combine(pairs) if pairs else None)
            if not pairs and i in self.batch_part_reasons:
                self.batch_reasons[i] = "; ".join(f"{name}: {why}" for name, why in self.batch_part_reasons[i].items())
        return out


class CompositeConfig(PartsConfig):
    type: Literal["composite"] = "composite"
    combine: Literal["weighted_sum", "mean", "min", "max"] = Field(
        "mean", description="'mean' is weighted by the parts' weights; 'weighted_sum' is not divided.")
    rewards: list[AnyRewardConfig] = Field(min_length=1, description="The parts, as reward entries.")  # noqa: F821


@REWARDS.register
class Composite(Combined):
    config_model = CompositeConfig

    def value_range(self) -> tuple[float, float] | None:
        # A mean, min or max stays within its parts' ranges (a normalized part's is unknown);
        # a weighted sum does not.
        if self.config.combine == "weighted_sum":
            return None
        ranges = [part.value_range() if part.config.normalization is None else None for part in self.parts]
        if ranges and all(r is not None for r in ranges):
            return (min(r[0] for r in ranges), max(r[1] for r in ranges))
        return None

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
