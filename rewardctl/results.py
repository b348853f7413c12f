"""From a run's statistics to its typed report (eval, score and merge share it): the summary,
each score's statistics and the threshold gates.

Rows a score could not grade (an LM judge failed) have no value for it: its mean, and a
threshold on it, are over the graded rows only, and the report warns how many were left out."""

from __future__ import annotations

from rewardctl.dataset import ReadStats
from rewardctl.records.eval import (
    Agreement,
    DataInfo,
    ErrorRow,
    EvalReport,
    LatencyStats,
    RepeatStats,
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
        error_rate=(stats.errors / stats.rows) if stats.rows else 0.0, ungraded=stats.ungraded_rows,
        reward=total["mean"], rewards=reward_means, metrics=metric_means,
    )
    return typed, summary


def build_report(*, kind: str, spec: ProgramSpec, spec_path: str | None, data_path: str, stats: RunStats,
                 read_stats: ReadStats, scorer: Scorer, wall: float, limit: int | None,
                 fail_under: float | None, usage: Usage | None, outputs: dict[str, str],
                 normalization: dict[str, dict[str, float | str]] | None = None,
                 warnings: list[str] | None = None, row_rule: str = "mean") -> EvalReport:
    typed, summary = score_stats(stats)
    summary.skipped = read_stats.skipped
    thresholds = check_thresholds(summary, spec.thresholds, fail_under, typed)
    warnings = [*(warnings or []), *ungraded_warnings(stats, typed)]
    if usage is None:  # score: no program calls; its judges' count all the same
        usage = Usage(requests=0).with_judge(scorer.usage()) if scorer.usage() is not None else None
    if usage is not None and usage.judge is not None and usage.judge.cost_usd is None:
        warnings.append("no price for the LM judge's model in litellm's price map: the cost is unknown "
                        "(set the judge's model.input_cost_per_token and model.output_cost_per_token)")
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
        warnings=warnings,
        repeats=repeat_stats(stats, row_rule, 0.5 if typed.reward.pass_threshold is None else typed.reward.pass_threshold),
    )


ROW_RULES = ("mean", "all", "any")


def repeat_stats(stats: RunStats, rule: str = "mean", threshold: float = 0.5) -> RepeatStats | None:
    """--repeat: each row's samples of the total reward, aggregated per row (None without samples)."""
    rows = [values for values in stats.samples.values() if values]
    if not rows:
        return None
    n = len(rows)
    passes = [[v >= threshold for v in values] for values in rows]
    row_passed = {"mean": [sum(v) / len(v) >= threshold for v in rows], "all": [all(p) for p in passes],
                  "any": [any(p) for p in passes]}[rule]
    return RepeatStats(
        samples=max(len(v) for v in rows), rows=n, threshold=threshold,
        mean=sum(sum(v) / len(v) for v in rows) / n, best=sum(max(v) for v in rows) / n,
        all_pass=sum(all(p) for p in passes) / n, any_pass=sum(any(p) for p in passes) / n,
        row_rule=rule, row_pass_rate=sum(row_passed) / n)


def ungraded_warnings(stats: RunStats, typed: ScoreStats) -> list[str]:
    """One line per score with ungraded rows: how many, the first reason, and that its mean (and
    any threshold on it) is over the graded rows."""
    out = []
    for section, group in (("reward", typed.rewards), ("metric", typed.metrics), ("component", typed.components or {})):
        for name, st in group.items():
            if isinstance(st, SeriesStats) and st.ungraded:
                reason = stats.ungraded_reasons.get(name, "")
                out.append(f"{section} '{name}' could not grade {st.ungraded} of {st.ungraded + st.count + st.excluded} "
                           f"rows (first: {reason}); its mean is over the {st.count} graded rows")
    return out


def check_thresholds(summary: Summary, thresholds: Thresholds, fail_under: float | None,
                     stats: ScoreStats | None = None) -> list[ThresholdResult]:
    """Every configured gate with its value. 0 is a valid threshold (checked with ``is not None``).
    A score with ungraded rows is gated on the mean of its graded rows; the result counts them."""
    results: list[ThresholdResult] = []

    def at_least(name: str, kind: str, threshold: float, value: float | None, ungraded: int = 0) -> None:
        passed = value is not None and value >= threshold
        results.append(ThresholdResult(name=name, kind=kind, threshold=threshold, value=value, passed=passed,
                                       ungraded=ungraded))

    def ungraded(group: str, name: str) -> int:
        st = getattr(stats, group).get(name) if stats is not None else None
        return st.ungraded if isinstance(st, SeriesStats) else 0

    if fail_under is not None:
        at_least("reward (--fail-under)", "reward", fail_under, summary.reward, summary.ungraded)
    if thresholds.reward is not None:
        at_least("reward", "reward", thresholds.reward, summary.reward, summary.ungraded)
    for name, value in thresholds.rewards.items():
        at_least(name, "rewards", value, summary.rewards.get(name), ungraded("rewards", name))
    for name, value in thresholds.metrics.items():
        at_least(name, "metrics", value, summary.metrics.get(name), ungraded("metrics", name))
    if thresholds.max_error_rate is not None:
        results.append(ThresholdResult(
            name="error rate", kind="max_error_rate", threshold=thresholds.max_error_rate,
            value=summary.error_rate, passed=summary.error_rate <= thresholds.max_error_rate))
    return results
