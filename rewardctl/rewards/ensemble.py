"""ensemble: several reward models (or any rewards) together, so no single model's blind spots
decide.

Each member is normalized on its own scale (typically zscore), with parameters fitted on a
reference dataset and stored, in the spec or in a sidecar `normalization_file`, so later runs use
the same scale: `rewardctl score` fits the members that have none and writes the sidecar. Modes:
`weighted_mean`, `min` (the most pessimistic member), `mean_minus_std` (weighted mean minus
`penalty` times the members' weighted standard deviation: disagreement costs reward). Predictions
carry each member's value; reports describe each member and the members' agreement (Pearson and
Spearman correlations, mean disagreement).
"""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from rewardctl.errors import InputError
from rewardctl.io import atomic_write_json
from rewardctl.rewards.base import REWARDS, Normalization
from rewardctl.rewards.composite import Combined, PartsConfig


class EnsembleConfig(PartsConfig):
    parts_field: ClassVar[str] = "members"
    type: Literal["ensemble"] = "ensemble"
    members: list[AnyRewardConfig] = Field(min_length=2, description="The members, as reward entries with unique names.")  # noqa: F821
    mode: Literal["weighted_mean", "min", "mean_minus_std"] = Field(
        "weighted_mean", description="How members combine per row.")
    penalty: float = Field(1.0, ge=0, description="mean_minus_std: lambda, the cost of one unit of disagreement.")
    normalization_file: str | None = Field(
        None, description="Sidecar JSON (relative to the spec) holding the members' fitted "
        "normalization; written by `rewardctl score` when members have none.")

    @model_validator(mode="after")
    def _unique_names(self) -> EnsembleConfig:
        names = [m.display_name for m in self.members]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"member names must be unique (give each a 'name'): {', '.join(duplicates)}")
        return self


@REWARDS.register
class Ensemble(Combined):
    config_model = EnsembleConfig

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        self.sidecar = None
        if self.config.normalization_file:
            path = Path(self.config.normalization_file)
            self.sidecar = path if path.is_absolute() else self.context.base_dir / path
            self._load_sidecar()
        self._aligned = {part.name: array("d") for part in self.parts}

    def _load_sidecar(self) -> None:
        if self.sidecar is None or not self.sidecar.is_file():
            return
        try:
            stored = json.loads(self.sidecar.read_text(encoding="utf-8"))
            params = {name: Normalization.model_validate(p) for name, p in stored.get("members", {}).items()}
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {self.sidecar}: {exc}", field=f"reward '{self.name}'.normalization_file") from None
        for part in self.parts:
            norm = part.config.normalization
            if part.name in params and (norm is None or not norm.fitted):
                part.set_normalization(params[part.name])

    def write_sidecar(self) -> Path | None:
        """Store the members' normalization (after `rewardctl score` fitted it)."""
        if self.sidecar is None:
            return None
        members = {p.name: p.config.normalization.model_dump(exclude_none=True)
                   for p in self.parts if p.config.normalization is not None}
        atomic_write_json(self.sidecar, {"ensemble": self.name, "members": members})
        return self.sidecar

    def combine(self, pairs: list[tuple[float, float]]) -> float | None:
        if self.config.mode == "min":
            return min(v for v, _ in pairs)
        total = sum(w for _, w in pairs)
        if total <= 0:
            return None
        mean = sum(v * w for v, w in pairs) / total
        if self.config.mode == "weighted_mean":
            return mean
        std = math.sqrt(sum(w * (v - mean) ** 2 for v, w in pairs) / total)
        return mean - self.config.penalty * std

    async def compute_batch(self, y_trues, y_preds, inputs):
        values = await super().compute_batch(y_trues, y_preds, inputs)
        for parts in self.batch_components or []:
            if all(v is not None for v in parts.values()):
                for name, value in parts.items():
                    self._aligned[name].append(value)
        return values

    def agreement(self) -> dict[str, Any]:
        """How much the members agree, over the rows where all of them scored."""
        # numpy costs start-up time that only this computation needs.
        import numpy as np

        names = list(self._aligned)
        n = len(self._aligned[names[0]])
        out: dict[str, Any] = {"members": names, "rows": n}
        if n < 3:
            return out
        matrix = np.array([self._aligned[name] for name in names])
        # scipy is slow to import: only the statistics that use it need it.
        from scipy.stats import rankdata

        with np.errstate(invalid="ignore", divide="ignore"):
            pearson = np.corrcoef(matrix)
            spearman = np.corrcoef(rankdata(matrix, axis=1))  # Spearman: Pearson on ranks

        def clean(m) -> list[list[float | None]]:
            return [[None if not np.isfinite(x) else round(float(x), 4) for x in row] for row in np.atleast_2d(m)]

        out.update(pearson=clean(pearson), spearman=clean(spearman),
                   mean_std=float(matrix.std(axis=0).mean()))
        return out
