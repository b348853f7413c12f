"""What every check looks at: the rows, the scores and their raw values, and small helpers."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rewardctl.dataset import Row
from rewardctl.options import InspectOptions
from rewardctl.rewards import Reward
from rewardctl.rewards.leaves import leaves
from rewardctl.spec import ProgramSpec

Source = Literal["predictions", "program", "references"]


@dataclass
class Item:
    """One inspected row: its inputs, reference, and output (None: the prediction failed)."""

    inputs: dict[str, Any]
    y_true: dict[str, Any]
    y_pred: dict[str, Any] | None


@dataclass
class Population:
    """The rows the rewards are inspected on, and each score's raw value on each of them."""

    spec: ProgramSpec
    scores: list[Reward]
    reward_names: set[str]
    items: list[Item]
    data_rows: list[Row]
    source: Source
    options: InspectOptions
    values: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def has_outputs(self) -> bool:
        return self.source != "references"

    def finite(self, name: str) -> list[float]:
        """The score's finite values over the rows."""
        return [v for v in self.values[name] if v is not None and math.isfinite(v)]

    def span(self, score: Reward, observed: list[float]) -> tuple[float, float, bool]:
        """The score's range: the one it promises (known: True), else the observed one."""
        known = score.value_range()
        if known is not None:
            return known[0], known[1], True
        finite = [v for v in observed if math.isfinite(v)]
        if not finite:
            return 0.0, 1.0, False
        lo, hi = min(finite), max(finite)
        return lo, (hi if hi > lo else lo + 1.0), False


async def raw_values(score: Reward, y_trues: Sequence[Any], y_preds: Sequence[Any],
                     inputs: Sequence[Any]) -> list[float | None]:
    """Values before normalization and the failure policy, NaN and infinities kept."""
    return await score.raw_scores(list(y_trues), list(y_preds), list(inputs), keep_nonfinite=True)


def text_length(obj: dict[str, Any] | None) -> int:
    return sum(len(t) for t in leaves(obj or {}).values())


def short(obj: Any, limit: int = 160) -> str:
    text = json.dumps(obj, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _correlation_undefined(a: list[float], b: list[float]) -> bool:
    return len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr  # scipy takes a second to import: only when a check runs

    if _correlation_undefined(a, b):
        return None
    value = float(spearmanr(a, b).statistic)
    return None if math.isnan(value) else value


def kendall(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import kendalltau  # scipy takes a second to import: only when a check runs

    if _correlation_undefined(a, b):
        return None
    value = float(kendalltau(a, b).statistic)
    return None if math.isnan(value) else value
