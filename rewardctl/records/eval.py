"""The report of a run that scores rows (eval, score, merge): report.json, typed all the way down."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_serializer

from rewardctl.records.base import Report


class SeriesStats(BaseModel):
    """Statistics of one per-example score over the run."""

    count: int = Field(description="Rows with a value.")
    excluded: int = Field(0, description="Rows left out (failed predictions with on_error: exclude).")
    unscored: int = Field(0, description="Rows the score could not grade (a judge failed), given the failure policy.")
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
    reward: float | None = Field(description="Mean total reward (weighted mean of the rewards).")
    rewards: dict[str, float | None] = Field(description="Mean of each reward, by name.")
    metrics: dict[str, float | None] = Field(description="Mean of each metric, by name.")


class ThresholdResult(BaseModel):
    name: str
    kind: Literal["reward", "rewards", "metrics", "max_error_rate"]
    threshold: float
    value: float | None
    passed: bool


class Usage(BaseModel):
    requests: int = Field(description="Requests sent to the model (cache misses).")
    cached_rows: int = Field(0, description="Rows answered entirely from the response cache.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = Field(0, description="Requests repeated after a transient provider failure.")
    faults: dict[str, int] = Field(default_factory=dict, description="Transient failures seen, by kind.")
    resumed_rows: int = Field(0, description="Rows kept from an interrupted run (--resume).")
    cost_usd: float | None = Field(
        0.0, description="USD spent on requests (cache hits are free), from the spec's prices or "
        "litellm's price map; null when the model's price is unknown.")


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
