"""Typed, versioned run reports (report.json) and their Markdown rendering (report.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from rewardctl import __version__
from rewardctl.io import atomic_write_json, atomic_write_text

REPORT_SCHEMA_VERSION = 1


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
    cached_rows: int = Field(description="Rows answered entirely from the response cache.")
    prompt_tokens: int
    completion_tokens: int
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


class EvalReport(BaseModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: Literal["eval", "score"] = "eval"
    rewardctl_version: str = __version__
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    wall_time_s: float
    spec: SpecInfo
    data: DataInfo
    summary: Summary
    stats: dict[str, Any] = Field(description="SeriesStats of the total reward, each reward and each metric.")
    weights: dict[str, float] = Field(default_factory=dict)
    latency_s: dict[str, float | None] = Field(default_factory=dict)
    usage: Usage | None = None
    thresholds: list[ThresholdResult] = Field(default_factory=list)
    passed: bool = True
    errors: list[dict[str, Any]] = Field(default_factory=list, description="The first failed rows.")
    normalization: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Normalization parameters fitted during this run, by score name.")
    warnings: list[str] = Field(default_factory=list)
    skipped_examples: list[str] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)
    merged_from: list[str] = Field(default_factory=list, description="The shard folders `rewardctl merge` joined.")


def build_report(*, kind: str, spec: Any, spec_path: str | None, data_path: str, stats: Any,
                 read_stats: Any, scorer: Any, wall: float, limit: int | None,
                 fail_under: float | None, usage: Usage | None, outputs: dict[str, str],
                 normalization: dict[str, dict[str, Any]] | None = None,
                 warnings: list[str] | None = None) -> EvalReport:
    total, rewards, metrics, reward_means, metric_means = stats.score_stats()
    components, agreement = stats.component_stats()
    summary = Summary(
        count=stats.rows, ok=stats.rows - stats.errors, errors=stats.errors,
        skipped=read_stats.skipped, error_rate=(stats.errors / stats.rows) if stats.rows else 0.0,
        reward=total["mean"], rewards=reward_means, metrics=metric_means,
    )
    thresholds = check_thresholds(summary, spec.thresholds, fail_under)
    per_example = set(scorer.metric_names)
    return EvalReport(
        kind=kind, wall_time_s=round(wall, 3),
        spec=SpecInfo(path=spec_path, name=spec.name, fingerprint=spec.fingerprint(), model=spec.model.name),
        data=DataInfo(path=data_path, rows=stats.rows, skipped=read_stats.skipped, limit=limit),
        summary=summary,
        stats={
            "reward": SeriesStats(**total).model_dump(),
            "rewards": {n: SeriesStats(**s).model_dump() for n, s in rewards.items()},
            "metrics": {n: SeriesStats(**s).model_dump() if n in per_example else s
                        for n, s in metrics.items()},
            **({"components": {n: SeriesStats(**s).model_dump() for n, s in components.items()}} if components else {}),
            **({"agreement": agreement} if agreement else {}),
        },
        weights={r.name: r.weight for r in scorer.rewards},
        latency_s=stats.latency_summary(),
        usage=usage,
        thresholds=thresholds,
        passed=all(t.passed for t in thresholds),
        errors=stats.error_rows,
        skipped_examples=read_stats.skipped_examples,
        outputs=outputs,
        normalization=normalization or {},
        warnings=warnings or [],
    )


def write_outputs(out_dir: Path, report: EvalReport) -> None:
    atomic_write_json(out_dir / "report.json", report.model_dump(mode="json"))
    atomic_write_text(out_dir / "report.md", render_markdown(report))


def check_thresholds(summary: Summary, thresholds: Any, fail_under: float | None) -> list[ThresholdResult]:
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


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(report: EvalReport) -> str:
    s = report.summary
    verdict = "PASS" if report.passed else "FAIL"
    total = report.stats.get("reward") or {}
    lines = [
        f"## rewardctl {report.kind}: {report.spec.name} ({verdict})",
        "",
        "| | |",
        "|---|---|",
        f"| model | `{report.spec.model}` |",
        f"| data | `{report.data.path}`{f' (shard {report.data.shard})' if report.data.shard else ''} |",
        f"| rows | {s.count} ({s.errors} errors{f', {s.skipped} skipped' if s.skipped else ''}) |",
        f"| reward | **{_fmt(s.reward)}** ± {_fmt(total.get('stderr'))} (stderr) |",
        f"| wall time | {report.wall_time_s:.1f} s |",
    ]
    if report.usage is not None:
        u = report.usage
        lines.append(f"| requests | {u.requests} ({u.cached_rows} rows from cache) |")
        lines.append(f"| tokens | {u.prompt_tokens} prompt, {u.completion_tokens} completion |")
        lines.append(f"| cost | {'unknown' if u.cost_usd is None else f'${u.cost_usd:.4g}'} |")
    for section in ("rewards", "metrics"):
        stats = report.stats.get(section) or {}
        if not stats:
            continue
        lines += ["", f"### {section.capitalize()}", ""]
        head = "| name | weight | mean | stderr | 95% CI | min | max | n |" if section == "rewards" else \
            "| name | mean | stderr | 95% CI | min | max | n |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for name, st in stats.items():
            cells = [name] + ([f"{report.weights.get(name, 1.0):g}"] if section == "rewards" else [])
            value = st["mean"] if "mean" in st else st.get("value")
            ci = st.get("ci95")
            cells += [_fmt(value), _fmt(st.get("stderr")), f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "n/a",
                      _fmt(st.get("min")), _fmt(st.get("max")), str(st.get("count", st.get("examples", "")))]
            lines.append("| " + " | ".join(cells) + " |")
    if report.thresholds:
        lines += ["", "### Thresholds", "", "| check | threshold | value | result |", "|---|---|---|---|"]
        for t in report.thresholds:
            lines.append(f"| {t.name} | {t.threshold:g} | {_fmt(t.value)} | {'pass' if t.passed else '**fail**'} |")
    if report.errors:
        lines += ["", "### First errors", ""]
        for err in report.errors[:5]:
            lines.append(f"- row {err['index']} (line {err['line']}): {err['error']}")
    return "\n".join(lines) + "\n"
