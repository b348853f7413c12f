"""Run-level metrics: computed over the whole run, not averaged from per-example values
(classification precision/recall/F1, corpus-level field F1, pass@k). A registry maps type names
to classes; each is built from its spec entry under `metrics:`."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from rewardctl.datamodel import DataModel
from rewardctl.records.prediction import PredictionRecord
from rewardctl.registry import Registry
from rewardctl.rewards.base import RewardContext


class MetricConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: str
    name: str | None = Field(None, description="Name in reports; defaults to the type. Must be unique.")

    @property
    def display_name(self) -> str:
        return self.name or self.type

    def spec_problems(self, outputs: DataModel, score_names: set[str]) -> list[tuple[tuple[Any, ...], str]]:
        """What is wrong with this entry given the spec's output fields and the names of its
        rewards and metrics, as (location under the entry, message), first problem first."""
        return []


class RunMetric:
    config_model: ClassVar[type[MetricConfig]] = MetricConfig

    def __init__(self, config: MetricConfig | dict[str, Any], context: RewardContext | None = None):
        if isinstance(config, dict):
            config = self.config_model.model_validate({"type": self.type_name(), **config})
        self.config = config
        self.context = context or RewardContext()

    @classmethod
    def type_name(cls) -> str:
        return cls.config_model.model_fields["type"].default

    @property
    def name(self) -> str:
        return self.config.display_name

    def get_config(self) -> dict[str, Any]:
        return {"type": self.config.type, **self.config.model_dump(mode="json", exclude_defaults=True)}

    def fields_read(self, outputs: Any) -> list[str]:
        return []

    def update(self, y_true: dict[str, Any], y_pred: dict[str, Any] | None,
               inputs: dict[str, Any] | None, scores: PredictionRecord) -> None:
        raise TypeError(f"{type(self).__name__} must define update")

    def result(self) -> tuple[float | None, dict[str, Any]]:
        """(headline value for summaries and thresholds, details for the report)."""
        raise TypeError(f"{type(self).__name__} must define result")


METRICS: Registry[RunMetric] = Registry("metric")
