"""length: how close the prediction's length is to a target, or a penalty outside bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig
from rewardctl.rewards.leaves import leaves


class LengthConfig(RewardConfig):
    type: Literal["length"] = "length"
    unit: Literal["chars", "words"] = "chars"
    target: int | None = Field(None, ge=0, description="1.0 at exactly this length.")
    min: int | None = Field(None, ge=0, description="1.0 at or above this length (with max: inside).")
    max: int | None = Field(None, ge=0, description="1.0 at or below this length.")
    tolerance: int | None = Field(
        None, ge=1, description="Units away from the target or bound where the reward reaches 0 "
        "(linear). Default: the target or the bound itself.")

    @model_validator(mode="after")
    def _one_mode(self) -> LengthConfig:
        if self.target is None and self.min is None and self.max is None:
            raise ValueError("length needs a 'target', or 'min' and/or 'max'")
        if self.target is not None and (self.min is not None or self.max is not None):
            raise ValueError("give either 'target' or 'min'/'max', not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' must not exceed 'max'")
        return self


@REWARDS.register
class Length(Reward):
    config_model = LengthConfig
    measures_length = True

    def value_range(self) -> tuple[float, float] | None:
        return (0.0, 1.0)

    def needs_reference(self) -> bool:
        return False

    def measure(self, y_pred: JSON) -> int:
        texts = leaves(y_pred).values()
        if self.config.unit == "words":
            return sum(len(t.split()) for t in texts)
        return sum(len(t) for t in texts)

    def compute(self, y_true: JSON, y_pred: JSON) -> float:
        cfg = self.config
        n = self.measure(y_pred)
        if cfg.target is not None:
            distance, scale = abs(n - cfg.target), cfg.tolerance or max(cfg.target, 1)
        elif cfg.max is not None and n > cfg.max:
            distance, scale = n - cfg.max, cfg.tolerance or max(cfg.max, 1)
        elif cfg.min is not None and n < cfg.min:
            distance, scale = cfg.min - n, cfg.tolerance or max(cfg.min, 1)
        else:
            return 1.0
        return max(0.0, 1.0 - distance / scale)
