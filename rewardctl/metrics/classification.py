"""classification: precision, recall and F1 of a label field over the run (micro, macro,
weighted and per label), computed by scikit-learn so the values are exactly its values,
zero_division included. A failed prediction counts as a wrong label, or is excluded."""

from __future__ import annotations

import json
import warnings
from typing import Any, Literal

from pydantic import Field

from rewardctl.datamodel import DataModel
from rewardctl.metrics.base import METRICS, MetricConfig, RunMetric

FAILED = "<failed>"
MISSING = "<missing>"


class ClassificationConfig(MetricConfig):
    type: Literal["classification"] = "classification"
    field: str = Field(description="The output field holding the label (a dotted path for nested fields).")
    labels: list[str] | None = Field(
        None, description="The label set. Default: the enum's values, else every label seen in the references.")
    average: Literal["micro", "macro", "weighted"] = Field(
        "macro", description="Which F1 is the headline value (all are reported).")
    zero_division: Literal["warn", 0, 1, "nan"] = Field(
        "warn", description="As scikit-learn: the value when a ratio divides by zero ('warn' acts as 0).")
    on_error: Literal["score", "exclude"] = Field(
        "score", description="A failed prediction counts as a wrong label ('score') or is left out.")

    def spec_problems(self, outputs: DataModel, score_names: set[str]) -> list[tuple[tuple[Any, ...], str]]:
        if self.field.split(".")[0] in outputs:
            return []
        return [(("field",), f"no output field '{self.field}' (outputs: {', '.join(outputs)})")]


def label_of(obj: dict[str, Any] | None, path: str) -> str:
    if obj is None:
        return FAILED
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@METRICS.register
class Classification(RunMetric):
    config_model = ClassificationConfig

    def __init__(self, config, context=None):
        super().__init__(config, context)
        self.y_true: list[str] = []
        self.y_pred: list[str] = []
        self.excluded = 0

    def fields_read(self, outputs: Any) -> list[str]:
        return [self.config.field.split(".")[0]]

    def update(self, y_true, y_pred, inputs, scores) -> None:
        if y_pred is None and self.config.on_error == "exclude":
            self.excluded += 1
            return
        self.y_true.append(label_of(y_true, self.config.field))
        self.y_pred.append(label_of(y_pred, self.config.field))

    def _labels(self) -> list[str]:
        if self.config.labels:
            return list(self.config.labels)
        schema = (self.context.outputs_schema or {}).get("properties", {})
        field_schema = schema.get(self.config.field.split(".")[0], {})
        if "." not in self.config.field:
            for option in [field_schema, *field_schema.get("anyOf", [])]:
                if "enum" in option:  # a nullable enum's null is a label too ("null")
                    return list(option["enum"]) + (["null"] if option is not field_schema else [])
        return sorted(set(self.y_true) - {MISSING})

    def result(self) -> tuple[float | None, dict[str, Any]]:
        if not self.y_true:
            return None, {"count": 0, "excluded": self.excluded}
        # scikit-learn takes about a second to import: only classification metrics need it.
        from sklearn.exceptions import UndefinedMetricWarning
        from sklearn.metrics import (
            accuracy_score,
            confusion_matrix,
            precision_recall_fscore_support,
        )

        labels = self._labels()
        zd = self.config.zero_division
        zd = float(zd) if isinstance(zd, int) else (float("nan") if zd == "nan" else "warn")
        undefined = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UndefinedMetricWarning)
            per = precision_recall_fscore_support(self.y_true, self.y_pred, labels=labels,
                                                  average=None, zero_division=zd)
            averages = {avg: precision_recall_fscore_support(self.y_true, self.y_pred, labels=labels,
                                                             average=avg, zero_division=zd)[:3]
                        for avg in ("micro", "macro", "weighted")}
            undefined = any(issubclass(w.category, UndefinedMetricWarning) for w in caught)

        def num(x: Any) -> float | None:
            x = float(x)
            return None if x != x else x  # NaN (zero_division='nan') is null in JSON

        details: dict[str, Any] = {
            "count": len(self.y_true), "excluded": self.excluded,
            "failed": self.y_pred.count(FAILED), "labels": labels,
            "accuracy": float(accuracy_score(self.y_true, self.y_pred)),
            "per_label": {label: {"precision": num(p), "recall": num(r), "f1": num(f), "support": int(s)}
                          for label, p, r, f, s in zip(labels, *per, strict=True)},
            **{avg: {"precision": num(p), "recall": num(r), "f1": num(f)} for avg, (p, r, f) in averages.items()},
            "confusion_matrix": confusion_matrix(self.y_true, self.y_pred, labels=labels).tolist(),
            "zero_division": self.config.zero_division,
        }
        if undefined:
            details["undefined"] = "some ratio divided by zero; zero_division decided its value"
        return details[self.config.average]["f1"], details
