"""The report of a run that scores rows (eval, score, merge): report.json, typed all the way down."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_serializer

from rewardctl.records.base import Report


class SeriesStats(BaseModel):
    """Statistics of one per-example score over the run."""

    count: int = Field(description="Rows with a value.")
    excluded: int = Field(0, description="Rows left out (failed predictions with on_error: exclude).")
    ungraded: int = Field(
        0, description="Rows with a prediction that the score could not grade (an LM judge's reply did "
        "not parse, or its provider failed): they have no value, so they are not in count, the mean or "
        "pass_rate; each one's predictions line says why under 'ungraded'.")
    mean: float | None
    std: float | None
    stderr: float | None
    ci95: list[float] | None = Field(None, description="95% CI of the mean (bootstrap, seeded).")
    ci_method: str | None = None
    min: float | None
    max: float | None
    percentiles: dict[str, float] | None = None
    pass_threshold: float | None = None
    pass_rate: float | None = Field(None, description="Share of rows at or above pass_threshold.")


class RunMetricStats(BaseModel):
    """A run-level metric (classification, field_f1, pass_at_k): its headline value and the
    details its type reports (per-label tables, confusion matrix, k values...)."""

    model_config = ConfigDict(extra="allow")

    value: float | None


def _stats_kind(data: Any) -> str:
    if isinstance(data, dict):
        return "run" if "value" in data else "series"
    return "run" if isinstance(data, RunMetricStats) else "series"


MetricStats = Annotated[
    Annotated[SeriesStats, Tag("series")] | Annotated[RunMetricStats, Tag("run")],
    Discriminator(_stats_kind),
]


class Agreement(BaseModel):
    """How an ensemble's members agree, over the rows where all of them scored."""

    members: list[str]
    rows: int
    pearson: list[list[float | None]] | None = None
    spearman: list[list[float | None]] | None = None
    mean_std: float | None = None


class ScoreStats(BaseModel):
    reward: SeriesStats = Field(description="The total reward.")
    rewards: dict[str, SeriesStats] = Field(default_factory=dict)
    metrics: dict[str, MetricStats] = Field(default_factory=dict)
    components: dict[str, SeriesStats] | None = Field(
        None, description="Each part of a composite or ensemble reward ('reward.part').")
    agreement: dict[str, Agreement] | None = Field(None, description="Ensembles' member agreement, by reward.")

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key in ("components", "agreement"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class Summary(BaseModel):
    count: int = Field(description="Rows evaluated (every one is in predictions.jsonl).")
    ok: int
    errors: int = Field(description="Rows whose prediction failed (recorded with their error).")
    skipped: int = Field(0, description="Invalid input lines skipped with --skip-invalid.")
    error_rate: float
    ungraded: int = Field(0, description="Rows that at least one score could not grade (see each score's 'ungraded').")
    reward: float | None = Field(description="Mean total reward (weighted mean of the rewards).")
    rewards: dict[str, float | None] = Field(description="Mean of each reward, by name.")
    metrics: dict[str, float | None] = Field(description="Mean of each metric, by name.")


class ThresholdResult(BaseModel):
    name: str
    kind: Literal["reward", "rewards", "metrics", "max_error_rate"]
    threshold: float
    value: float | None
    passed: bool
    ungraded: int = Field(0, description="Rows the score could not grade: the value is the mean over the graded rows.")


def _sum_faults(*parts: dict[str, int]) -> dict[str, int]:
    faults: dict[str, int] = {}
    for part in parts:
        for kind, count in part.items():
            faults[kind] = faults.get(kind, 0) + count
    return faults


def _sum_cost(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a + b, 12)


class RepeatStats(BaseModel):
    """eval --repeat N: each row's samples of the total reward, aggregated per row."""

    samples: int = Field(description="Samples per row (the most any row has).")
    rows: int = Field(description="Rows with at least one scored sample.")
    threshold: float = Field(description="A sample passes at or above this (the total reward's pass threshold).")
    mean: float | None = Field(description="Mean over rows of each row's mean sample.")
    best: float | None = Field(description="Mean over rows of each row's best sample (best-of-N).")
    all_pass: float | None = Field(description="Share of rows whose every sample passes (pass^N, as run).")
    any_pass: float | None = Field(description="Share of rows with at least one passing sample (pass@N, as run).")
    row_rule: Literal["mean", "all", "any"] = Field(
        "mean", description="When a row passes across its samples: its mean sample passes, all do, or any does.")
    row_pass_rate: float | None = Field(description="Share of rows that pass by row_rule.")


class ModelUsage(BaseModel):
    """What the scorer's own model calls cost (the LM judges'), beside the program's."""

    requests: int = Field(0, description="Requests sent (cache misses), failed ones included.")
    failed_requests: int = Field(0, description="Requests that failed, counted in requests too.")
    cached: int = Field(0, description="Grades answered from the response cache (no request).")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = Field(0, description="Requests repeated after a transient provider failure.")
    faults: dict[str, int] = Field(default_factory=dict, description="Transient failures seen, by kind.")
    cost_usd: float | None = Field(0.0, description="USD spent; null when the judge model's price is unknown.")

    def __add__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(
            requests=self.requests + other.requests, failed_requests=self.failed_requests + other.failed_requests,
            cached=self.cached + other.cached, prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            retries=self.retries + other.retries, faults=_sum_faults(self.faults, other.faults),
            cost_usd=_sum_cost(self.cost_usd, other.cost_usd))

    @staticmethod
    def total(usages: Iterable[ModelUsage | None]) -> ModelUsage | None:
        """The sum of those given; None when none is."""
        present = [u for u in usages if u is not None]
        if not present:
            return None
        out = present[0]
        for usage in present[1:]:
            out = out + usage
        return out


class Usage(BaseModel):
    requests: int = Field(description="Requests sent to the model (cache misses), failed ones included.")
    failed_requests: int = Field(0, description="Requests that failed (a fault, or refused), counted in requests too.")
    cached_rows: int = Field(0, description="Rows answered entirely from the response cache.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = Field(0, description="Requests repeated after a transient provider failure.")
    faults: dict[str, int] = Field(default_factory=dict, description="Transient failures seen, by kind.")
    resumed_rows: int = Field(0, description="Rows kept from an interrupted run (--resume), or from a "
                              "finished one (--retry-errors).")
    cost_usd: float | None = Field(
        0.0, description="USD spent on requests (cache hits are free), from the spec's prices or "
        "litellm's price map; null when the model's price is unknown.")
    judge: ModelUsage | None = Field(
        None, description="The LM judges' own calls. Their requests, failed requests, tokens, retries, "
        "faults and cost are counted in the totals above too (cached_rows counts the program's rows only).")

    def after(self, before: Usage | None) -> Usage:
        """This run's usage added to an earlier run's (--resume, --retry-errors); cached_rows and
        resumed_rows stay this run's own."""
        if before is None:
            return self
        return self.model_copy(update={
            "requests": self.requests + before.requests,
            "failed_requests": self.failed_requests + before.failed_requests,
            "prompt_tokens": self.prompt_tokens + before.prompt_tokens,
            "completion_tokens": self.completion_tokens + before.completion_tokens,
            "retries": self.retries + before.retries, "faults": _sum_faults(before.faults, self.faults),
            "cost_usd": _sum_cost(self.cost_usd, before.cost_usd),
            "judge": ModelUsage.total([self.judge, before.judge])})

    def with_judge(self, judge: ModelUsage | None) -> Usage:
        """This usage with the LM judges' calls added: to the totals, and as the ``judge`` entry."""
        if judge is None:
            return self
        return self.model_copy(update={
            "requests": self.requests + judge.requests,
            "failed_requests": self.failed_requests + judge.failed_requests,
            "prompt_tokens": self.prompt_tokens + judge.prompt_tokens,
            "completion_tokens": self.completion_tokens + judge.completion_tokens,
            "retries": self.retries + judge.retries, "faults": _sum_faults(self.faults, judge.faults),
            "cost_usd": _sum_cost(self.cost_usd, judge.cost_usd),
            "judge": ModelUsage.total([self.judge, judge])})

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("judge") is None:
            data.pop("judge", None)
        return data


class SpecInfo(BaseModel):
    path: str | None
    name: str
    fingerprint: str
    model: str


class DataInfo(BaseModel):
    path: str
    rows: int
    skipped: int
    limit: int | None = None
    shard: str | None = Field(None, description="K/N: this run evaluated the K-th of N shards (eval --shard).")


class LatencyStats(BaseModel):
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None


class ErrorRow(BaseModel):
    index: int
    line: int | None
    error: str | None


class EvalReport(Report):
    kind: Literal["eval", "score"] = "eval"
    wall_time_s: float
    spec: SpecInfo
    data: DataInfo
    summary: Summary
    stats: ScoreStats = Field(description="Statistics of the total reward, each reward and each metric.")
    weights: dict[str, float] = Field(default_factory=dict)
    latency_s: LatencyStats = Field(default_factory=LatencyStats)
    usage: Usage | None = None
    thresholds: list[ThresholdResult] = Field(default_factory=list)
    passed: bool = True
    errors: list[ErrorRow] = Field(default_factory=list, description="The first failed rows.")
    normalization: dict[str, dict[str, float | str]] = Field(
        default_factory=dict, description="Normalization parameters fitted during this run, by score name.")
    warnings: list[str] = Field(default_factory=list)
    skipped_examples: list[str] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)
    merged_from: list[str] = Field(default_factory=list, description="The shard folders `rewardctl merge` joined.")
    repeats: RepeatStats | None = Field(None, description="eval --repeat N: the samples aggregated per row.")

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("repeats") is None:
            data.pop("repeats", None)
        return data
