"""From a run's statistics to its typed report (eval, score and merge share it): the summary,
each score's statistics and the threshold gates."""

from __future__ import annotations

from rewardctl.dataset import ReadStats
from rewardctl.records.eval import (
    Agreement,
    DataInfo,
    ErrorRow,
    EvalReport,
    LatencyStats,
    RunMetricStats,
    ScoreStats,
    SeriesStats,
    SpecInfo,
    Summary,
    ThresholdResult,
    Usage,
)
from rewardctl.scoring import RunStats, Scorer
from rewardctl.spec import ProgramSpec, Thresholds


def score_stats(stats: RunStats) -> tuple[ScoreStats, Summary]:
    total, rewards, metrics, reward_means, metric_means = stats.score_stats()
    components, agreement = stats.component_stats()
    per_example = set(stats.scorer.metric_names)
    typed = ScoreStats(
        reward=SeriesStats(**total),
        rewards={n: SeriesStats(**s) for n, s in rewards.items()},
        metrics={n: SeriesStats(**s) if n in per_example else RunMetricStats(**s) for n, s in metrics.items()},
        components={n: SeriesStats(**s) for n, s in components.items()} if components else None,
        agreement={n: Agreement(**a) for n, a in agreement.items()} if agreement else None,
    )
    summary = Summary(
        count=stats.rows, ok=stats.rows - stats.errors, errors=stats.errors, skipped=0,
        error_rate=(stats.errors / stats.rows) if stats.rows else 0.0,
        reward=total["mean"], rewards=reward_means, metrics=metric_means,
    )
    return typed, summary


def build_report(*, kind: str, spec: ProgramSpec, spec_path: str | None, data_path: str, stats: RunStats,
                 read_stats: ReadStats, scorer: Scorer, wall: float, limit: int | None,
                 fail_under: float | None, usage: Usage | None, outputs: dict[str, str],
                 normalization: dict[str, dict[str, float | str]] | None = None,
                 warnings: list[str] | None = None) -> EvalReport:
    typed, summary = score_stats(stats)
    summary.skipped = read_stats.skipped
    thresholds = check_thresholds(summary, spec.thresholds, fail_under)
    return EvalReport(
        kind=kind, wall_time_s=round(wall, 3),
        spec=SpecInfo(path=spec_path, name=spec.name, fingerprint=spec.fingerprint(), model=spec.model.name),
        data=DataInfo(path=data_path, rows=stats.rows, skipped=read_stats.skipped, limit=limit),
        summary=summary,
        stats=typed,
        weights={r.name: r.weight for r in scorer.rewards},
        latency_s=LatencyStats(**stats.latency_summary()),
        usage=usage,
        thresholds=thresholds,
        passed=all(t.passed for t in thresholds),
        errors=[ErrorRow(**e) for e in stats.error_rows],
        skipped_examples=read_stats.skipped_examples,
        outputs=outputs,
        normalization=normalization or {},
        warnings=warnings or [],
    )


def check_thresholds(summary: Summary, thresholds: Thresholds, fail_under: float | None) -> list[ThresholdResult]:
    """Every configured gate with its value. 0 is a valid threshold (checked with ``is not None``)."""
    results: list[ThresholdResult] = []

    def at_least(name: str, kind: str, threshold: float, value: float | None) -> None:
        passed = value is not None and value >= threshold
        results.append(ThresholdResult(name=name, kind=kind, threshold=threshold, value=value, passed=passed))

    if fail_under is not None:
        at_least("reward (--fail-under)", "reward", fail_under, summary.reward)
    if thresholds.reward is not None:
        at_least("reward", "reward", thresholds.reward, summary.reward)
    for name, value in thresholds.rewards.items():
        at_least(name, "rewards", value, summary.rewards.get(name))
    for name, value in thresholds.metrics.items():
        at_least(name, "metrics", value, summary.metrics.get(name))
    if thresholds.max_error_rate is not None:
        results.append(ThresholdResult(
            name="error rate", kind="max_error_rate", threshold=thresholds.max_error_rate,
            value=summary.error_rate, passed=summary.error_rate <= thresholds.max_error_rate))
    return results
