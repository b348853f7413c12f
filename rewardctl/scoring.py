"""Scoring predictions with the spec's rewards and metrics, and statistics over a run.

Generation and scoring are separate steps: ``Scorer`` takes (y_true, y_pred, inputs) rows,
whether ``eval`` just generated them or ``score`` read them back from a predictions file.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardctl.errors import InputError
from rewardctl.metrics import METRICS, MetricConfig, RunMetric
from rewardctl.metrics.stats import describe
from rewardctl.records.eval import ModelUsage
from rewardctl.records.prediction import PredictionRecord
from rewardctl.rewards import REWARDS, Reward, RewardConfig, RewardContext
from rewardctl.rewards.python_fn import RowError

# Where a row came from: (file, 1-based line), either unknown.
RowSource = tuple[str | None, int | None]


@dataclass
class RowScores:
    rewards: dict[str, float | None]
    metrics: dict[str, float | None]  # per-example metrics only; run-level ones have no row value
    reward: float | None  # the weighted mean of the rewards that have a value
    components: dict[str, float | None] = field(default_factory=dict)  # "ensemble.member" -> value
    # Scores (or "reward.part" components) that could not grade the row -> why; their value is None.
    ungraded: dict[str, str] = field(default_factory=dict)


def weighted_total(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    num = den = 0.0
    for value, weight in zip(values, weights, strict=True):
        if value is not None:
            num += weight * value
            den += weight
    return num / den if den > 0 else None


def _built(build: Callable[..., Any], config: Any, context: RewardContext, section: str) -> Any:
    """``build(config, context)``; an InputError records which spec entry it came from."""
    try:
        return build(config, context)
    except InputError as exc:
        if exc.entry is None:
            name = config.get("name") or config.get("type") if isinstance(config, dict) else config.display_name
            exc.entry = (section, str(name))
        raise


class Scorer:
    def __init__(self, reward_configs: Sequence[Any], metric_configs: Sequence[Any] = (),
                 context: RewardContext | None = None):
        self.context = context or RewardContext()
        self.rewards: list[Reward] = [_built(REWARDS.build, c, self.context, "rewards") for c in reward_configs]
        self.metrics: list[Reward] = []
        self.run_metrics: list[RunMetric] = []
        self.metric_order: list[str] = []
        for config in metric_configs:
            if isinstance(config, MetricConfig):
                self.run_metrics.append(_built(METRICS.build, config, self.context, "metrics"))
            elif isinstance(config, (RewardConfig, dict)):
                self.metrics.append(_built(REWARDS.build, config, self.context, "metrics"))
            self.metric_order.append(config.display_name if not isinstance(config, dict)
                                     else config.get("name") or config["type"])
        self.weights = [r.weight for r in self.rewards]

    def required_outputs(self, outputs: Any) -> dict[str, str]:
        """Output fields the ground truth must hold: field -> the first score that reads it."""
        required: dict[str, str] = {}
        for score in [*self.rewards, *self.metrics, *self.run_metrics]:
            for name in score.fields_read(outputs):
                required.setdefault(name, score.name)
        return required

    def check_ready(self) -> None:
        for score in self.all_scores():
            score.check_ready()

    @property
    def reward_names(self) -> list[str]:
        return [r.name for r in self.rewards]

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def score_objects(self) -> dict[str, Reward]:
        return {s.name: s for s in [*self.rewards, *self.metrics]}

    async def score(self, y_trues: Sequence[dict[str, Any]], y_preds: Sequence[dict[str, Any] | None],
                    inputs: Sequence[dict[str, Any] | None] | None = None, *,
                    where: Sequence[RowSource] | None = None) -> list[RowScores]:
        """Score a batch of rows. ``where`` (each row's file and line) names the row a
        reward failed on: ``data.jsonl:7: reward 'x' raised ValueError: ...``."""
        components: list[dict[str, float | None]] = [{} for _ in y_trues]
        ungraded: dict[int, dict[str, str]] = {}  # row -> {score or "reward.part": why}

        async def run(score: Reward) -> list[float | None]:
            try:
                values = await score.score_batch(y_trues, y_preds, inputs)
            except RowError as exc:
                raise await _row_of(score, exc, y_trues, y_preds, inputs, where) from None
            for row_parts, parts in zip(components, score.last_components or [], strict=False):
                for part, value in (parts or {}).items():
                    row_parts[f"{score.name}.{part}"] = value
            for i, reason in score.last_ungraded.items():
                ungraded.setdefault(i, {})[score.name] = reason
            for i, part_reasons in score.last_part_ungraded.items():
                for part, reason in part_reasons.items():
                    ungraded.setdefault(i, {})[f"{score.name}.{part}"] = reason
            return values

        reward_values = [await run(r) for r in self.rewards]
        metric_values = [await run(m) for m in self.metrics]
        reward_names, metric_names, weights = self.reward_names, self.metric_names, self.weights
        rows = []
        for i, (values, metric_row, row_parts) in enumerate(zip(zip(*reward_values, strict=True),
                                                                zip(*metric_values, strict=True) if metric_values
                                                                else [()] * len(y_trues), components, strict=True)):
            # An ungraded reward (None) is left out of the total like an excluded one.
            rows.append(RowScores(dict(zip(reward_names, values, strict=True)),
                                  dict(zip(metric_names, metric_row, strict=True)),
                                  weighted_total(values, weights), row_parts, ungraded.get(i, {})))
        return rows

    def unscored(self) -> RowScores:
        """The scores of a row the provider failed: none (left out of every mean)."""
        return RowScores(dict.fromkeys(self.reward_names), dict.fromkeys(self.metric_names), None)

    def usage(self) -> ModelUsage | None:
        """What the rewards' and metrics' own model calls cost so far (LM judges, parts of
        composites and ensembles included); None when no score calls a model."""
        return ModelUsage.total(score.usage() for score in self.all_scores())

    def walk(self) -> list[tuple[Reward, list[Reward]]]:
        """Every reward and per-example metric with its parents (the composites or ensembles it
        is a part of, outermost first)."""
        out: list[tuple[Reward, list[Reward]]] = []

        def visit(score: Reward, parents: list[Reward]) -> None:
            out.append((score, parents))
            for part in score.parts:
                visit(part, [*parents, score])

        for score in [*self.rewards, *self.metrics]:
            visit(score, [])
        return out

    def all_scores(self) -> list[Reward]:
        return [score for score, _ in self.walk()]


async def _row_of(score: Reward, error: RowError, y_trues: Sequence[Any], y_preds: Sequence[Any],
                  inputs: Sequence[Any] | None, where: Sequence[RowSource] | None) -> InputError:
    """``error`` (``score`` failed on one row of the batch) located at that row's file and line.
    The row is the first that fails alone: scoring stops here, so re-running the reward on the
    rows before it costs only the time to say where."""
    if where is None or error.path is not None:
        return error
    for i, source in enumerate(where):
        if len(where) > 1:
            try:
                await score.score_batch([y_trues[i]], [y_preds[i]], [inputs[i] if inputs is not None else None])
                continue
            except RowError as single:
                error = single
        path, line = source
        return InputError(error.detail, path=path, line=line, field=error.field)
    return error  # no row fails alone (a batched function that looks across rows)


@dataclass
class Series:
    """Values of one score over a run (None: excluded, or ungraded), kept compactly for statistics."""

    values: array = field(default_factory=lambda: array("d"))
    excluded: int = 0
    ungraded: int = 0  # rows with a prediction that the score could not grade
    running_sum: float = 0.0

    def add(self, value: float | None, ungraded: bool = False) -> None:
        if value is None:
            if ungraded:
                self.ungraded += 1
            else:
                self.excluded += 1
        else:
            self.values.append(value)
            self.running_sum += value

    @property
    def running_mean(self) -> float | None:
        """Cheap mean for progress displays (describe() is exact, with fsum)."""
        return self.running_sum / len(self.values) if self.values else None

    def describe(self, pass_threshold: float | None = 0.5, seed: int = 0) -> dict[str, Any]:
        out = describe(self.values, excluded=self.excluded, pass_threshold=pass_threshold, seed=seed)
        out["ungraded"] = self.ungraded
        return out


@dataclass
class RunStats:
    scorer: Scorer
    rows: int = 0
    errors: int = 0
    cached_rows: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total: Series = field(default_factory=Series)
    latency: array = field(default_factory=lambda: array("d"))
    rewards: dict[str, Series] = field(default_factory=dict)
    metrics: dict[str, Series] = field(default_factory=dict)
    components: dict[str, Series] = field(default_factory=dict)
    error_rows: list[dict[str, Any]] = field(default_factory=list)
    provider_failed: int = 0  # rows the provider failed: recorded, never scored
    ungraded_rows: int = 0  # rows that some score could not grade
    ungraded_reasons: dict[str, str] = field(default_factory=dict)  # score -> the first row's reason
    samples: dict[int, list[float]] = field(default_factory=dict)  # --repeat: row index -> its total rewards

    def __post_init__(self) -> None:
        self.rewards = {name: Series() for name in self.scorer.reward_names}
        self.metrics = {name: Series() for name in self.scorer.metric_names}

    def add(self, record: PredictionRecord, *, index: int | None = None, line: int | None = None,
            calls: bool = True) -> None:
        """Count one scored row. ``index`` and ``line`` name it in the report's error list when
        they differ from the record's own; ``calls``: count its model calls (latency, cache,
        tokens), which a re-scored predictions file did not make in this run."""
        self.rows += 1
        ok = record.ok
        if not ok:
            self.errors += 1
            if len(self.error_rows) < 20:
                self.error_rows.append({"index": record.index if index is None else index,
                                        "line": record.line if line is None else line,
                                        "error": record.error or "failed prediction"})
        if calls:
            self._add_calls(record)
        ungraded = record.ungraded
        if ungraded:
            self.ungraded_rows += 1
            for name, reason in ungraded.items():
                self.ungraded_reasons.setdefault(name, reason)
        self.total.add(record.reward, bool(ungraded))
        if record.sample is not None and record.reward is not None:
            self.samples.setdefault(record.index if record.index is not None else -1, []).append(record.reward)
        for name, value in record.rewards.items():
            self.rewards[name].add(value, name in ungraded)
        for name, value in record.metrics.items():
            self.metrics[name].add(value, name in ungraded)
        for name, value in record.components.items():
            series = self.components.get(name)
            if series is None:
                series = self.components[name] = Series()
            series.add(value, name in ungraded)
        if record.provider_failed:
            self.provider_failed += 1
            return  # an outage is not a quality drop: run-level metrics never see the row
        for metric in self.scorer.run_metrics:
            metric.update(record.y_true or {}, record.y_pred if ok else None, record.inputs, record)

    def _add_calls(self, record: PredictionRecord) -> None:
        if record.cached:
            self.cached_rows += 1
        if record.latency_s is not None and not record.cached:
            self.latency.append(record.latency_s)
        if record.tokens is not None:
            self.prompt_tokens += record.tokens.prompt
            self.completion_tokens += record.tokens.completion

    def latency_summary(self) -> dict[str, float | None]:
        if not self.latency:
            return {"mean": None, "p50": None, "p95": None, "max": None}
        ordered = sorted(self.latency)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

        return {"mean": sum(ordered) / len(ordered), "p50": pct(0.5), "p95": pct(0.95), "max": ordered[-1]}

    def score_stats(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, float | None], dict[str, float | None]]:
        """(total, rewards, metrics) statistics and the reward and metric means for the summary."""
        objects = self.scorer.score_objects()

        def stats_of(name: str, series: Series) -> dict[str, Any]:
            return series.describe(objects[name].config.pass_threshold)

        total = self.total.describe(pass_threshold=0.5)
        rewards = {n: stats_of(n, s) for n, s in self.rewards.items()}
        per_example = {n: stats_of(n, s) for n, s in self.metrics.items()}
        run_level = {m.name: m.result() for m in self.scorer.run_metrics}
        metrics: dict[str, Any] = {}
        metric_means: dict[str, float | None] = {}
        for name in self.scorer.metric_order:
            if name in per_example:
                metrics[name] = per_example[name]
                metric_means[name] = per_example[name]["mean"]
            else:
                headline, details = run_level[name]
                metrics[name] = {"value": headline, **details}
                metric_means[name] = headline
        reward_means = {n: s["mean"] for n, s in rewards.items()}
        return total, rewards, metrics, reward_means, metric_means

    def component_stats(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(statistics of each part of a composite or ensemble, ensembles' member agreement)."""
        components = {name: series.describe() for name, series in self.components.items()}
        agreement = {s.name: a for s in self.scorer.all_scores() if (a := s.agreement()) is not None}
        return components, agreement
