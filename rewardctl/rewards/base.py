"""The reward interface and the registry that maps a type name to a reward class.

A reward scores one example: ``(y_true, y_pred) -> float``, both JSON objects. Subclasses
implement one of:

- ``compute(y_true, y_pred)``: sync, per example (cheap rewards: exact match, F1);
- ``acompute(y_true, y_pred)``: async, per example;
- ``compute_batch(y_trues, y_preds, inputs)``: async, a whole batch (embeddings, reward models,
  judges); ``inputs`` holds each row's program inputs (or None) for rewards that need the prompt.

A reward that cannot grade a row (an LM judge whose reply does not parse, or whose provider
failed) returns None for it and says why in ``batch_reasons``: the row is *ungraded*, its value
stays None (left out of the means, never a 0.0) and the reason goes into its predictions line.
That is not a failed prediction: the failure policy (``failure_score`` or ``on_error: exclude``)
is for rows whose prediction failed.

Masks, the failure policy, value normalization and clipping are applied here, once, for every
reward type. Every reward is built from its spec entry (a pydantic config) and saved back to the
same plain config, so the same class serves as a reward (it enters the total reward, weighted)
or as a metric (reported only).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rewardctl.datamodel import DataModel
from rewardctl.errors import InputError
from rewardctl.modelconfig import ModelConfig
from rewardctl.records.eval import ModelUsage
from rewardctl.registry import Registry
from rewardctl.rewards.masks import Masks, mask_problems, schema_template

JSON = dict[str, Any]


class Normalization(BaseModel):
    """Rescales a reward's values. minmax and zscore take parameters fitted on a dataset
    (`rewardctl score` fits missing ones on the file it scores); running uses the mean and
    standard deviation of the values seen so far in the run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: Literal["none", "minmax", "zscore", "running"] = "none"
    min: float | None = Field(None, description="minmax: the value mapped to 0.")
    max: float | None = Field(None, description="minmax: the value mapped to 1.")
    mean: float | None = Field(None, description="zscore: the mean subtracted.")
    std: float | None = Field(None, gt=0, description="zscore: the standard deviation divided by.")

    @model_validator(mode="after")
    def _check(self) -> Normalization:
        if self.method == "minmax" and None not in (self.min, self.max) and self.max <= self.min:
            raise ValueError("minmax needs max > min")
        return self

    @property
    def fitted(self) -> bool:
        if self.method == "minmax":
            return self.min is not None and self.max is not None
        if self.method == "zscore":
            return self.mean is not None and self.std is not None
        return True


def fit_normalization(method: str, values: Sequence[float]) -> Normalization:
    """Fit minmax or zscore parameters on observed raw values."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        raise InputError(f"cannot fit {method} normalization: no values")
    if method == "minmax":
        lo, hi = min(values), max(values)
        return Normalization(method="minmax", min=lo, max=hi if hi > lo else lo + 1.0)
    if method == "zscore":
        mean = math.fsum(values) / len(values)
        var = math.fsum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
        return Normalization(method="zscore", mean=mean, std=math.sqrt(var) or 1.0)
    return Normalization(method=method)


class RewardConfig(BaseModel):
    """Options every reward accepts. Each reward type extends it with its own options."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    normalization: Normalization | None = Field(None, description="Rescaling of the values.")
    clip: tuple[float, float] | None = Field(None, description="[low, high] bounds, applied last.")
    pass_threshold: float = Field(0.5, description="A value at or above this counts as a pass in reports.")

    @field_validator("in_mask_pattern", "out_mask_pattern")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @field_validator("clip")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError("clip needs [low, high] with low <= high")
        return value

    @property
    def display_name(self) -> str:
        return self.name or self.type

    def spec_problems(self, outputs: DataModel, score_names: set[str]) -> list[tuple[tuple[Any, ...], str]]:
        """What is wrong with this entry given the spec's output fields and score names, as
        (location under the entry, message), first problem first. Here: a mask entry that
        matches no output field; types with more to check extend it."""
        return mask_problems(outputs, self.in_mask, self.out_mask, self.in_mask_pattern, self.out_mask_pattern)


@dataclass
class RewardContext:
    """What rewards may need beyond their own config: where the spec lives (relative paths
    resolve against it) and how LM-backed rewards cache their calls."""

    base_dir: Path = field(default_factory=Path.cwd)
    cache_dir: str | None = None
    use_cache: bool = True
    default_model: ModelConfig | None = None  # the program's model, for judges that name none
    outputs_schema: dict[str, Any] | None = None  # the program's outputs, as JSON Schema


class _Running:
    """Welford's online mean and variance."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, x: float) -> float:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        return (x - self.mean) / std if std > 0 else 0.0


class Reward:
    config_model: ClassVar[type[RewardConfig]] = RewardConfig

    def __init__(self, config: RewardConfig | dict[str, Any] | None = None,
                 context: RewardContext | None = None, **options: Any):
        if config is None or isinstance(config, dict):
            data = dict(config or {}, **options)
            data.setdefault("type", self.type_name())
            config = self.config_model.model_validate(data)
        self.config = config
        self.context = context or RewardContext()
        self.masks = Masks(config.in_mask, config.out_mask, config.in_mask_pattern,
                           config.out_mask_pattern)
        self.set_normalization(config.normalization)
        self.parts: list[Reward] = []  # the rewards this one combines (composite, ensemble)
        # Rewards made of parts record each part's value per row of the last batch.
        self.batch_components: list[dict[str, float | None]] | None = None
        self.last_components: list[dict[str, float | None] | None] | None = None
        # Rows compute_batch could not grade: its position in the batch -> why (an LM judge's
        # reply did not parse); rewards made of parts also give their parts' reasons.
        self.batch_reasons: dict[int, str] = {}
        self.batch_part_reasons: dict[int, dict[str, str]] = {}
        # The same for the last scored batch, by row: row -> why; row -> {part: why}.
        self.last_ungraded: dict[int, str] = {}
        self.last_part_ungraded: dict[int, dict[str, str]] = {}
        self._masked = self.masks.active

    def set_normalization(self, normalization: Normalization | None) -> None:
        """Replace the normalization (fitted parameters, a sidecar's) and what derives from it."""
        if normalization is not self.config.normalization:
            self.config = self.config.model_copy(update={"normalization": normalization})
        self._running = _Running() if normalization is not None and normalization.method == "running" else None
        self._plain = self.config.clip is None and (normalization is None or normalization.method == "none")

    # --- config round trip ---
    @classmethod
    def type_name(cls) -> str:
        return cls.config_model.model_fields["type"].default

    @classmethod
    def from_config(cls, config: dict[str, Any], context: RewardContext | None = None) -> Reward:
        return cls(cls.config_model.model_validate(config), context)

    def get_config(self) -> dict[str, Any]:
        data = self.config.model_dump(mode="json", exclude_defaults=True)
        return {"type": self.config.type, **data}

    @property
    def name(self) -> str:
        return self.config.display_name

    @property
    def weight(self) -> float:
        return self.config.weight

    # --- what inspection asks of a reward ---
    measures_length: ClassVar[bool] = False
    """True for a reward that pays for output length by design (its length bias is no defect)."""

    def value_range(self) -> tuple[float, float] | None:
        """The range the raw values promise to stay within; None: the reward does not bound them."""
        return None

    def needs_reference(self) -> bool:
        """Whether scoring compares the output against a reference (y_true)."""
        return True

    def usage(self) -> ModelUsage | None:
        """What this reward's own model calls cost so far (an LM judge's requests, tokens, USD);
        None: it calls no model. A reward made of parts leaves its parts to report their own."""
        return None

    # --- to implement (one of) ---
    def compute(self, y_true: JSON, y_pred: JSON) -> float:
        raise TypeError(f"{type(self).__name__} must define compute, acompute or compute_batch")

    async def acompute(self, y_true: JSON, y_pred: JSON) -> float:
        return self.compute(y_true, y_pred)

    async def compute_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON],
                            inputs: Sequence[JSON | None]) -> list[float]:
        if type(self).acompute is Reward.acompute:
            # Sync reward: a plain loop, no per-row coroutine overhead.
            return [self.compute(t, p) for t, p in zip(y_trues, y_preds, strict=True)]
        return list(await asyncio.gather(*(self.acompute(t, p) for t, p in zip(y_trues, y_preds, strict=True))))

    # --- what callers use ---
    def fields_read(self, outputs: Any) -> list[str]:
        """The top-level output fields this reward compares, given the outputs data model."""
        template = schema_template(outputs)
        kept = self.apply_masks(template) or {}
        return [name for name in template if name in kept]

    def apply_masks(self, obj: JSON | None) -> JSON | None:
        return self.masks.apply(obj) if self._masked else obj

    def transform(self, value: float) -> float:
        """Normalization, then clipping: the raw value as reports and the total reward see it."""
        norm = self.config.normalization
        if norm is not None and norm.method != "none":
            if norm.method == "minmax":
                value = (value - norm.min) / (norm.max - norm.min)
            elif norm.method == "zscore":
                value = (value - norm.mean) / norm.std
            elif self._running is not None:
                value = self._running.update(value)
        if self.config.clip is not None:
            value = min(max(value, self.config.clip[0]), self.config.clip[1])
        return value

    def check_ready(self) -> None:
        """Raise when the reward cannot score yet (normalization parameters not fitted)."""
        norm = self.config.normalization
        if norm is not None and not norm.fitted:
            raise InputError(
                f"{norm.method} normalization needs fitted parameters; fit them on a dataset with "
                "`rewardctl score` (it fits missing ones) or give them in the spec",
                field=f"reward '{self.name}'.normalization")

    async def raw_scores(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON | None],
                         inputs: Sequence[JSON | None] | None = None, *,
                         keep_nonfinite: bool = False) -> list[float | None]:
        """Values before normalization and the failure policy: None for a failed prediction and
        for a row the reward could not grade (``last_ungraded`` says which and why).
        A NaN or infinite value is an error, or with ``keep_nonfinite`` (inspect-rewards) kept."""
        results: list[float | None] = [None] * len(y_trues)
        self.batch_components = None  # combined rewards set their parts' values here
        self.last_components = None
        self.batch_reasons, self.batch_part_reasons = {}, {}
        self.last_ungraded, self.last_part_ungraded = {}, {}
        if not self._masked and None not in y_preds:  # the common case, without per-row work
            todo: list[int] | range = range(len(y_trues))
            masked_true, masked_pred = list(y_trues), list(y_preds)
        else:
            todo, masked_true, masked_pred = self._masked_rows(y_trues, y_preds)
        if todo:
            row_inputs = list(inputs) if inputs is not None else [None] * len(y_trues)
            if not isinstance(todo, range):
                row_inputs = [row_inputs[i] for i in todo]
            values = await self.compute_batch(masked_true, masked_pred, row_inputs)
            if self.batch_components is not None:
                self.last_components = [None] * len(y_trues)
                for i, parts in zip(todo, self.batch_components, strict=True):
                    self.last_components[i] = parts
            self.last_part_ungraded = {todo[k]: parts for k, parts in self.batch_part_reasons.items()}
            for k, (i, value) in enumerate(zip(todo, values, strict=True)):
                if value is None:  # the reward could not grade this row (a judge failed, say)
                    self.last_ungraded[i] = self.batch_reasons.get(k) or "the reward gave no value"
                    continue
                value = float(value)
                if not math.isfinite(value) and not keep_nonfinite:
                    raise InputError(f"returned {value}, not a finite number", field=f"reward '{self.name}'")
                results[i] = value
        return results

    def _masked_rows(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON | None]):
        todo: list[int] = []
        masked_true: list[JSON] = []
        masked_pred: list[JSON] = []
        for i, (t, p) in enumerate(zip(y_trues, y_preds, strict=True)):
            if p is None:
                continue
            mt, mp = self.apply_masks(t), self.apply_masks(p)
            if self._masked and not mt and not mp:
                raise InputError(
                    "the masks leave nothing to compare on either side "
                    f"(y_true keys: {', '.join(t) or 'none'})",
                    field=f"reward '{self.name}'",
                )
            todo.append(i)
            masked_true.append(mt or {})
            masked_pred.append(mp or {})
        return todo, masked_true, masked_pred

    async def score_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON | None],
                          inputs: Sequence[JSON | None] | None = None) -> list[float | None]:
        """Final values: a missing prediction (None) gets the failure policy (``failure_score``,
        or None with ``on_error: exclude``); a row the reward could not grade stays None (see
        ``last_ungraded``); others are normalized and clipped."""
        raw = await self.raw_scores(y_trues, y_preds, inputs)
        failed = None if self.config.on_error == "exclude" else float(self.config.failure_score)
        ungraded = self.last_ungraded
        if ungraded:
            return [None if i in ungraded else failed if value is None else
                    value if self._plain else self.transform(value) for i, value in enumerate(raw)]
        if self._plain:
            return [failed if value is None else value for value in raw]
        return [failed if value is None else self.transform(value) for value in raw]

    def score(self, y_true: JSON, y_pred: JSON | None, inputs: JSON | None = None) -> float | None:
        """Score one example synchronously (convenient in notebooks and tests)."""
        return asyncio.run(self.score_batch([y_true], [y_pred], [inputs]))[0]

    # --- hooks for rewards made of parts (composite, ensemble) ---
    def agreement(self) -> dict[str, Any] | None:
        """How much the parts agree, for reports (ensemble); None: nothing to report."""
        return None

    def write_sidecar(self) -> Path | None:
        """Store fitted normalization beside the spec (ensemble); returns the file written."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get_config()}>"


# --- registry --------------------------------------------------------------------------------

REWARDS: Registry[Reward] = Registry("reward")
