"""The report of ``rewardctl compare``: two runs of eval, score or merge, paired row by row."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from rewardctl.records.base import Report
from rewardctl.records.eval import DataInfo, SpecInfo

JSON = dict[str, Any]


class RunInfo(BaseModel):
    """One side of the comparison: the folder, and what its report.json says it ran."""

    path: str
    kind: str = Field(description="eval, score or merge.")
    spec: SpecInfo
    data: DataInfo
    lines: int = Field(description="Lines of its predictions.jsonl.")
    rows: int = Field(description="Distinct rows (keys); --repeat samples of a row share one.")
    samples: int = Field(1, description="Most lines that share a key (eval --repeat N gives N).")
    created_at: str | None = None


class ScoreComparison(BaseModel):
    """One score (the total reward, a reward or a per-example metric) on the paired rows."""

    name: str
    group: Literal["reward", "rewards", "metrics"] = Field(description="'reward' is the total reward.")
    pairs: int = Field(description="Rows scored on both sides (a row's --repeat samples are averaged).")
    unpaired: int = Field(0, description="Rows on both sides with no value on one of them (a provider "
                          "failure, or a score that could not grade it): left out of the pairs.")
    pass_threshold: float = Field(description="A row passes at or above this (the score's own pass_threshold).")
    base_mean: float | None
    new_mean: float | None
    base_pass_rate: float | None = None
    new_pass_rate: float | None = None
    diff: float | None = Field(description="Mean of new - base over the pairs.")
    ci95: list[float] | None = Field(None, description="95% CI of diff: bootstrap over the pairs (seeded).")
    ci_method: str | None = None
    test: Literal["mcnemar_exact", "wilcoxon"] | None = Field(
        None, description="mcnemar_exact when every value is 0 or 1 (pass/fail), else the Wilcoxon signed-rank test.")
    p_value: float | None = None
    significant: bool = Field(False, description="p_value < alpha.")
    min_detectable_effect: float | None = Field(
        None, description="The smallest |diff| these pairs detect with 80% power at alpha (two-sided).")
    pass_to_fail: int = 0
    fail_to_pass: int = 0
    gated: bool = Field(False, description="The gate looks at it: the total reward, and scores the spec's thresholds name.")
    verdict: Literal["regression", "improvement", "borderline", "no significant change", "no pairs"] = Field(
        description="regression or improvement: the CI excludes 0 and p < alpha; borderline: only one of the two.")
    regression: bool = Field(False, description="The CI's upper end is below -margin.")


class RowSide(BaseModel):
    index: int | None = None
    line: int | None = None
    value: float | None = None
    y_pred: JSON | None = None
    error: str | None = None
    samples: int = 1


class FlippedRow(BaseModel):
    """A row that passed on one side and failed on the other, at a score's pass threshold."""

    key: str
    score: str
    direction: Literal["pass -> fail", "fail -> pass"]
    inputs: JSON | None = None
    y_true: JSON | None = None
    base: RowSide
    new: RowSide


class OneSideRow(BaseModel):
    key: str
    side: Literal["base", "new"]
    index: int | None = None
    line: int | None = None
    inputs: JSON | None = None


class CompareReport(Report):
    kind: Literal["compare"] = "compare"
    base: RunInfo
    new: RunInfo
    key: str = Field(description="How rows are paired: 'inputs' (a hash of the input fields) or a field name.")
    seed: int
    alpha: float
    margin: float | None = Field(None, description="--fail-on-regression's margin; null: no gate.")
    differences: list[str] = Field(default_factory=list, description="What differs between the two runs "
                                   "(spec, model, dataset, scores), side by side.")
    paired: int = Field(description="Rows found on both sides.")
    only_base: int = 0
    only_new: int = 0
    one_side_rows: list[OneSideRow] = Field(default_factory=list, description="The first rows found on one side only.")
    reference_changed: int = Field(0, description="Paired rows whose y_true differs between the sides.")
    scores: list[ScoreComparison] = Field(default_factory=list)
    flips: list[FlippedRow] = Field(default_factory=list, description="Rows that flipped, by score.")
    flips_left_out: int = Field(0, description="Flipped rows beyond --max-flips, counted but not listed.")
    regression: bool = Field(False, description="A gated score regressed (its CI is below -margin).")
    passed: bool = Field(True, description="False when --fail-on-regression found a regression (exit 1).")
    warnings: list[str] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)

    def score(self, name: str) -> ScoreComparison | None:
        return next((s for s in self.scores if s.name == name), None)
