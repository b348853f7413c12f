"""The report of `rewardctl inspect-rewards` (report.json): one typed check result per check and score.

Each check records its own evidence. A field a check did not record (a skipped check records
little or nothing) is left out of the JSON rather than written as null, so every evidence model
below has optional fields and writes only those that were set.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from rewardctl.records.base import Report

Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")


class Recorded(BaseModel):
    """A model whose JSON holds only the fields that were set (given, assigned or read back)."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _recorded_only(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


# --- evidence of each check ----------------------------------------------------------------------

class Histogram(BaseModel):
    counts: list[int]
    edges: list[float]


class DistributionEvidence(Recorded):
    """Statistics of one score's raw values over the outputs."""

    count: int | None = None
    failed_predictions: int | None = None
    nan: int | None = None
    infinite: int | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    percentiles: dict[str, float] | None = None
    histogram: Histogram | None = None
    distinct: int | None = None
    mode_share: float | None = None
    tie_share: float | None = None
    expected_range: list[float] | None = None
    out_of_range: int | None = None
    all_predictions_matched: bool | None = Field(
        None, description="Set for a constant score: true when every prediction scored what its reference "
        "scores against itself and bad outputs score lower (a warning: the sample has no wrong prediction), "
        "false when the reward scores bad outputs alike too (a failure: it ignores its input).")


class ScoredRow(BaseModel):
    value: float
    inputs: str
    y_pred: str
    y_true: str


class ExtremesEvidence(Recorded):
    """Mean value of y_true against itself and of bad outputs (empty, truncated, unrelated, garbage)."""

    means: dict[str, float | None] | None = None
    rows: dict[str, int] | None = Field(
        None, description="How many rows each kind's mean is over: a bad output equal to its reference "
        "where the reward looks (an empty string, 0 or False already, a cut that drops nothing) is left out.")
    range: list[float] | None = None
    range_known: bool | None = None
    best_and_worst: list[ScoredRow] | None = None
    separation: float | None = None
    self_at_top: float | None = None


class ReferenceLength(BaseModel):
    mean: float
    min: int
    p50: float
    p95: float
    max: int


class DuplicateExample(BaseModel):
    line: int | None
    inputs: str


class BalanceEvidence(Recorded):
    rows: int | None = None
    labels: dict[str, dict[str, int]] | None = None
    reference_length: ReferenceLength | None = None
    duplicates: int | None = None
    conflicting_duplicates: int | None = None
    duplicate_examples: list[DuplicateExample] | None = None


class Recommendation(Recorded):
    """A recommended normalization for one score, with the parameters fitted on the outputs."""

    method: Literal["none", "minmax", "zscore"]
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    reason: str
    scale: list[float] | None = None
    spread: float | None = None

    def parameters(self) -> dict[str, Any]:
        """The normalization entry a spec takes: the method and its fitted parameters."""
        return {k: getattr(self, k) for k in ("method", "min", "max", "mean", "std") if k in self.model_fields_set}


class NormalizationEvidence(Recorded):
    recommended: dict[str, Recommendation] | None = None


class AgreementEvidence(Recorded):
    """Rank correlations between scores (by name, both ways) and the rows two disagree on most."""

    scores: list[str] | None = None
    spearman: dict[str, dict[str, float | None]] | None = None
    kendall: dict[str, dict[str, float | None]] | None = None
    most_disagreeing_pair: list[str] | None = None
    # inputs, y_pred (shortened JSON) and the two scores' values, by score name
    disagreements: list[dict[str, str | float | None]] | None = None


class LengthBiasEvidence(Recorded):
    spearman_with_length: float | None = None
    rows: int | None = None


class ProbeExample(BaseModel):
    before: str
    after: str
    value_before: float | None
    value_after: float | None


class ProbeResult(Recorded):
    """How a meaningless edit moves the score: mean gain, share of rows it raised, examples."""

    mean_gain: float
    share_raised: float
    examples: list[ProbeExample] | None = None


class HackingEvidence(Recorded):
    probes: dict[str, ProbeResult] | None = None


class PairsSubset(BaseModel):
    pairs: int
    accuracy: float | None


class PairsEvidence(Recorded):
    """Pairwise accuracy and margin on preference pairs, split by whether the chosen one is longer."""

    pairs: int | None = None
    accuracy: float | None = None
    margin: float | None = None
    chosen_longer: PairsSubset | None = None
    chosen_not_longer: PairsSubset | None = None


# --- check results -------------------------------------------------------------------------------

class CheckResult(BaseModel):
    """One check's finding, for one score (or for the whole set of scores: score None)."""

    check: str
    score: str | None = None
    status: Status
    summary: str


class DistributionCheck(CheckResult):
    check: Literal["distribution"] = "distribution"
    evidence: DistributionEvidence = Field(default_factory=DistributionEvidence)


class ExtremesCheck(CheckResult):
    check: Literal["extremes"] = "extremes"
    evidence: ExtremesEvidence = Field(default_factory=ExtremesEvidence)


class BalanceCheck(CheckResult):
    check: Literal["balance"] = "balance"
    evidence: BalanceEvidence = Field(default_factory=BalanceEvidence)


class NormalizationCheck(CheckResult):
    check: Literal["normalization"] = "normalization"
    evidence: NormalizationEvidence = Field(default_factory=NormalizationEvidence)


class AgreementCheck(CheckResult):
    check: Literal["agreement"] = "agreement"
    evidence: AgreementEvidence = Field(default_factory=AgreementEvidence)


class LengthBiasCheck(CheckResult):
    check: Literal["length_bias"] = "length_bias"
    evidence: LengthBiasEvidence = Field(default_factory=LengthBiasEvidence)


class HackingCheck(CheckResult):
    check: Literal["hacking"] = "hacking"
    evidence: HackingEvidence = Field(default_factory=HackingEvidence)


class PairsCheck(CheckResult):
    check: Literal["pairs"] = "pairs"
    evidence: PairsEvidence = Field(default_factory=PairsEvidence)


AnyCheck = Annotated[
    Union[DistributionCheck, ExtremesCheck, BalanceCheck, NormalizationCheck,  # noqa: UP007
          AgreementCheck, LengthBiasCheck, HackingCheck, PairsCheck],
    Field(discriminator="check"),
]


# --- the report ----------------------------------------------------------------------------------

class InspectedSpec(BaseModel):
    path: str | None
    name: str
    model: str


class InspectReport(Report):
    kind: Literal["inspect-rewards"] = "inspect-rewards"
    spec: InspectedSpec
    source: Literal["predictions", "program", "references"]
    rows: int
    failed_predictions: int = 0
    counts: dict[Status, int]
    checks: list[AnyCheck]
    recommended_normalization: dict[str, Recommendation] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.counts.get("fail", 0) > 0


class InspectSeries(BaseModel):
    """What the plots draw: each score's raw value per row (None: failed or ungraded), and each
    row's output length in characters (None: no output)."""

    scores: list[str]
    values: dict[str, list[float | None]]
    output_lengths: list[int | None]
    has_outputs: bool
