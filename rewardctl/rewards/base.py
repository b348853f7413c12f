"""The reward interface and the registry that maps a type name to a reward class.

A reward scores one example: ``(y_true, y_pred) -> float``, both JSON objects. Subclasses
implement one of:

- ``compute(y_true, y_pred)``: sync, per example (cheap rewards: exact match, F1);
- ``acompute(y_true, y_pred)``: async, per example (an LM judge);
- ``compute_batch(y_trues, y_preds)``: async, a whole batch (embeddings, reward models).

Masks and the failure policy are applied here, once, for every reward type. Every reward is
built from its spec entry (a pydantic config) and saved back to the same plain config, so the
same class serves as a reward (it enters the total reward, weighted) or as a metric (reported).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rewardctl.errors import InputError
from rewardctl.rewards.masks import Masks

JSON = dict[str, Any]


class RewardConfig(BaseModel):
    """Options every reward accepts. Each reward type extends it with its own options."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="The reward type (see `rewardctl schema` for the list).")
    name: str | None = Field(
        None, description="Name in reports and predictions; defaults to the type. Must be unique."
    )
    weight: float = Field(
        1.0, ge=0, description="Weight in the total reward (a weighted mean over rewards)."
    )
    in_mask: list[str] | None = Field(None, description="Keep only these fields (and their subtrees).")
    out_mask: list[str] | None = Field(None, description="Drop these fields, at any depth.")
    in_mask_pattern: str | None = Field(None, description="Regex: keep fields whose key matches.")
    out_mask_pattern: str | None = Field(None, description="Regex: drop fields whose key matches.")
    on_error: Literal["score", "exclude"] = Field(
        "score",
        description="A failed prediction scores `failure_score` ('score') or is left out of the "
        "means ('exclude'); the report counts it either way.",
    )
    failure_score: float = Field(0.0, description="The value a failed prediction scores.")

    @field_validator("in_mask_pattern", "out_mask_pattern")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @property
    def display_name(self) -> str:
        return self.name or self.type


class Reward:
    config_model: ClassVar[type[RewardConfig]] = RewardConfig

    def __init__(self, config: RewardConfig | dict[str, Any] | None = None, **options: Any):
        if config is None or isinstance(config, dict):
            data = dict(config or {}, **options)
            data.setdefault("type", self.type_name())
            config = self.config_model.model_validate(data)
        self.config = config
        self.masks = Masks(config.in_mask, config.out_mask, config.in_mask_pattern,
                           config.out_mask_pattern)

    # --- config round trip ---
    @classmethod
    def type_name(cls) -> str:
        return cls.config_model.model_fields["type"].default

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Reward:
        return cls(cls.config_model.model_validate(config))

    def get_config(self) -> dict[str, Any]:
        data = self.config.model_dump(mode="json", exclude_defaults=True)
        return {"type": self.config.type, **data}

    @property
    def name(self) -> str:
        return self.config.display_name

    @property
    def weight(self) -> float:
        return self.config.weight

    # --- to implement ---
    def compute(self, y_true: JSON, y_pred: JSON) -> float:
        raise TypeError(f"{type(self).__name__} must define compute, acompute or compute_batch")

    async def acompute(self, y_true: JSON, y_pred: JSON) -> float:
        return self.compute(y_true, y_pred)

    async def compute_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON]) -> list[float]:
        if type(self).acompute is Reward.acompute:
            # Sync reward: a plain loop, no per-row coroutine overhead.
            return [self.compute(t, p) for t, p in zip(y_trues, y_preds, strict=False)]
        return list(await asyncio.gather(*(self.acompute(t, p) for t, p in zip(y_trues, y_preds, strict=False))))

    # --- what callers use ---
    def fields_read(self, outputs: Any) -> list[str]:
        """The top-level output fields this reward compares, given the outputs data model."""
        from rewardctl.rewards.masks import schema_template

        template = schema_template(outputs)
        kept = self.apply_masks(template) or {}
        return [name for name in template if name in kept]

    def apply_masks(self, obj: JSON | None) -> JSON | None:
        return self.masks.apply(obj) if self.masks else obj

    async def score_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON | None]) -> list[float | None]:
        """Score a batch. A missing prediction (None) gets the failure policy: ``failure_score``,
        or None when ``on_error: exclude``."""
        results: list[float | None] = [None] * len(y_trues)
        todo: list[int] = []
        masked_true: list[JSON] = []
        masked_pred: list[JSON] = []
        failed = None if self.config.on_error == "exclude" else float(self.config.failure_score)
        for i, (t, p) in enumerate(zip(y_trues, y_preds, strict=False)):
            if p is None:
                results[i] = failed
                continue
            mt, mp = self.apply_masks(t), self.apply_masks(p)
            if self.masks and not mt and not mp:
                raise InputError(
                    "the masks leave nothing to compare on either side "
                    f"(y_true keys: {', '.join(t) or 'none'})",
                    field=f"reward '{self.name}'",
                )
            todo.append(i)
            masked_true.append(mt or {})
            masked_pred.append(mp or {})
        if todo:
            values = await self.compute_batch(masked_true, masked_pred)
            for i, value in zip(todo, values, strict=False):
                results[i] = float(value)
        return results

    def score(self, y_true: JSON, y_pred: JSON | None) -> float | None:
        """Score one example synchronously (convenient in notebooks and tests)."""
        return asyncio.run(self.score_batch([y_true], [y_pred]))[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get_config()}>"


# --- registry --------------------------------------------------------------------------------

REGISTRY: dict[str, type[Reward]] = {}


def register(cls: type[Reward]) -> type[Reward]:
    type_name = cls.type_name()
    if not type_name:
        raise TypeError(f"{cls.__name__}.config_model needs a default for 'type'")
    REGISTRY[type_name] = cls
    return cls


def build_reward(config: RewardConfig | dict[str, Any]) -> Reward:
    if isinstance(config, dict):
        type_name = config.get("type")
        if type_name not in REGISTRY:
            raise InputError(f"unknown reward type '{type_name}' (known: {', '.join(sorted(REGISTRY))})")
        return REGISTRY[type_name].from_config(config)
    return REGISTRY[config.type](config)
