"""field_f1: Synalinks's corpus-level F1. True positives, false positives and false negatives
of token overlap are summed per field (leaf path) over all examples, then turned into precision,
recall and F-beta per field; 'micro' sums over fields too, 'macro' averages the fields' scores.
Differs from the per-example mean of f1_score, which averages each example's F1."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rewardctl.datamodel import DataModel
from rewardctl.metrics.base import METRICS, MetricConfig, RunMetric
from rewardctl.rewards.leaves import paired_leaves
from rewardctl.rewards.masks import Masks, mask_problems, schema_template
from rewardctl.rewards.token_overlap import TOKENIZERS, fbeta_from_counts, overlap_counts


class FieldF1Config(MetricConfig):
    type: Literal["field_f1"] = "field_f1"
    text_normalization: Literal["synalinks", "squad", "none"] = "synalinks"
    beta: float = Field(1.0, gt=0)
    average: Literal["micro", "macro"] = Field("micro", description="Which value is the headline.")
    in_mask: list[str] | None = None
    out_mask: list[str] | None = None
    in_mask_pattern: str | None = None
    out_mask_pattern: str | None = None

    def spec_problems(self, outputs: DataModel, score_names: set[str]) -> list[tuple[tuple[Any, ...], str]]:
        return mask_problems(outputs, self.in_mask, self.out_mask, self.in_mask_pattern, self.out_mask_pattern)


@METRICS.register
class FieldF1(RunMetric):
    config_model = FieldF1Config

    def __init__(self, config, context=None):
        super().__init__(config, context)
        cfg = self.config
        self.masks = Masks(cfg.in_mask, cfg.out_mask, cfg.in_mask_pattern, cfg.out_mask_pattern)
        self.tokenize = TOKENIZERS[cfg.text_normalization]
        self.counts: dict[str, list[int]] = {}
        self.examples = 0

    def _mask(self, obj):
        return self.masks.apply(obj) if self.masks else obj

    def fields_read(self, outputs: Any) -> list[str]:
        template = schema_template(outputs)
        kept = self._mask(template) or {}
        return [name for name in template if name in kept]

    def update(self, y_true, y_pred, inputs, scores) -> None:
        self.examples += 1
        for path, t, p in paired_leaves(self._mask(y_true) or {}, self._mask(y_pred or {}) or {}):
            tp, fp, fn = overlap_counts(self.tokenize(t), self.tokenize(p))
            acc = self.counts.setdefault(path, [0, 0, 0])
            acc[0] += tp
            acc[1] += fp
            acc[2] += fn

    def result(self) -> tuple[float | None, dict[str, Any]]:
        if not self.counts:
            return None, {"examples": self.examples, "fields": {}}
        beta = self.config.beta
        fields = {}
        for path, (tp, fp, fn) in self.counts.items():
            fields[path] = {"precision": fbeta_from_counts(tp, fp, fn, beta, "precision"),
                            "recall": fbeta_from_counts(tp, fp, fn, beta, "recall"),
                            "f1": fbeta_from_counts(tp, fp, fn, beta, "fbeta"),
                            "tp": tp, "fp": fp, "fn": fn}
        tp, fp, fn = (sum(c[i] for c in self.counts.values()) for i in range(3))
        micro = fbeta_from_counts(tp, fp, fn, beta, "fbeta")
        macro = sum(f["f1"] for f in fields.values()) / len(fields)
        details = {"examples": self.examples, "micro": micro, "macro": macro, "fields": fields}
        return (micro if self.config.average == "micro" else macro), details
