"""Rendering of eval, score and merge reports: Markdown (report.md, the CI comment), HTML, and the
summary people read on stderr."""

from __future__ import annotations

from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from rewardctl.records.eval import (
    EvalReport,
    MetricStats,
    RunMetricStats,
    SeriesStats,
    ThresholdResult,
    Usage,
)
from rewardctl.records.prediction import PredictionRecord
from rewardctl.report.comment import cell, fit_comment
from rewardctl.report.page import eval_page
from rewardctl.report.render import renders


def _fmt(value: float | None, digits: int = 3, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.{digits}f}"


def _ci(st: MetricStats, missing: str) -> str:
    bounds = st.ci95 if isinstance(st, SeriesStats) else None
    return f"{bounds[0]:.3f}-{bounds[1]:.3f}" if bounds else missing


def _value(st: MetricStats) -> float | None:
    return st.mean if isinstance(st, SeriesStats) else st.value


def _mean(st: MetricStats, missing: str = "n/a") -> str:
    """The mean, and how many rows the score could not grade (left out of it): `0.750 (2 ungraded)`."""
    ungraded = st.ungraded if isinstance(st, SeriesStats) else 0
    return _fmt(_value(st), missing=missing) + (f" ({ungraded} ungraded)" if ungraded else "")


def _threshold_value(t: ThresholdResult, missing: str = "n/a") -> str:
    return _fmt(t.value, missing=missing) + (f" ({t.ungraded} ungraded)" if t.ungraded else "")


def _spread(st: MetricStats, missing: str = "n/a") -> list[str]:
    """stderr, 95% CI, min, max: a run-level metric has none of them."""
    if not isinstance(st, SeriesStats):
        return [missing] * 4
    return [_fmt(st.stderr, missing=missing), _ci(st, missing), _fmt(st.min, missing=missing),
            _fmt(st.max, missing=missing)]


def _count(st: MetricStats) -> str:
    if isinstance(st, SeriesStats):
        return str(st.count)
    details = st.model_extra or {}
    return str(details.get("count", details.get("examples", "")))


def _header(report: EvalReport) -> list[str]:
    s = report.summary
    verdict = "PASS" if report.passed else "FAIL"
    shard = f" (shard {report.data.shard})" if report.data.shard else ""
    extra = (f", {s.skipped} skipped" if s.skipped else "") + (f", {s.ungraded} ungraded" if s.ungraded else "")
    lines = [
        f"## rewardctl {report.kind}: {report.spec.name} ({verdict})", "", "| | |", "|---|---|",
        f"| model | `{report.spec.model}` |",
        f"| data | `{report.data.path}`{shard} |",
        f"| rows | {s.count} ({s.errors} errors{extra}) |",
        f"| reward | **{_fmt(s.reward)}** ± {_fmt(report.stats.reward.stderr)} (stderr) |",
        f"| wall time | {report.wall_time_s:.1f} s |",
    ]
    if report.repeats is not None:
        lines.append(f"| repeats | {repeats_line(report)} |")
    if report.usage is not None:
        u = report.usage
        lines.append(f"| requests | {u.requests} ({u.cached_rows} rows from cache{_judge_requests(u)}) |")
        lines.append(f"| tokens | {u.prompt_tokens} prompt, {u.completion_tokens} completion |")
        lines.append(f"| cost | {_cost(u.cost_usd)}{_judge_cost(u)} |")
    return lines


ROW_RULE_WORDS = {"mean": "their mean sample", "all": "every sample", "any": "any sample"}


def repeats_line(report: EvalReport) -> str:
    r = report.repeats
    assert r is not None
    return (f"{r.samples} samples of {r.rows} rows: mean {_fmt(r.mean)}, best-of-{r.samples} {_fmt(r.best)}, "
            f"all pass (pass^{r.samples}) {_fmt(r.all_pass)}, any passes (pass@{r.samples}) {_fmt(r.any_pass)}; "
            f"rows passing ({ROW_RULE_WORDS[r.row_rule]} >= {r.threshold:g}) {_fmt(r.row_pass_rate)}")


def _cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:.4g}"


def _judge_requests(u: Usage) -> str:
    """The LM judges' share of the requests (counted in the total too)."""
    j = u.judge
    return "" if j is None else f"; {j.requests} by LM judges, {j.cached} of their grades from cache"


def _judge_cost(u: Usage) -> str:
    j = u.judge
    return "" if j is None else f" ({_cost(j.cost_usd)} by LM judges, {j.prompt_tokens + j.completion_tokens} tokens)"


def _score_tables(report: EvalReport) -> list[str]:
    lines: list[str] = []
    for section, stats in (("rewards", report.stats.rewards), ("metrics", report.stats.metrics)):
        if not stats:
            continue
        lines += ["", f"### {section.capitalize()}", ""]
        head = "| name | weight | mean | stderr | 95% CI | min | max | n |" if section == "rewards" else \
            "| name | mean | stderr | 95% CI | min | max | n |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for name, st in stats.items():
            cells = [name] + ([f"{report.weights.get(name, 1.0):g}"] if section == "rewards" else [])
            cells += [_mean(st), *_spread(st), _count(st)]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


FAILING_SHOWN = 20  # failing rows listed in report.md (fewer when the comment would be too long)


def _label_tables(report: EvalReport) -> list[str]:
    """Per-label precision, recall, F1 and support of each classification metric."""
    lines: list[str] = []
    for name, st in report.stats.metrics.items():
        per_label = (st.model_extra or {}).get("per_label") if isinstance(st, RunMetricStats) else None
        if not isinstance(per_label, dict) or not per_label:
            continue
        lines += ["", f"### {name}: per label", "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for label, row in per_label.items():
            lines.append(f"| {label} | {_fmt(row.get('precision'))} | {_fmt(row.get('recall'))} | "
                         f"{_fmt(row.get('f1'))} | {row.get('support', '')} |")
    return lines


def failing_row_lines(record: PredictionRecord) -> list[str]:
    """A failing row: why, its inputs, and each output field with the expected and predicted value
    (a failed prediction: its error and the start of the reply it could not use)."""
    where = f"row {record.index} (line {record.line})" + (f" sample {record.sample}" if record.sample is not None else "")
    if not record.ok:
        lines = [f"**{where}**: error: {cell(record.error or 'failed', 300)}; inputs `{cell(record.inputs, 200)}`"]
        if record.raw:
            lines += ["", f"reply: `{cell(record.raw, 300)}`"]
        return lines + [""]
    lines = [f"**{where}**: reward {_fmt(record.reward)}; inputs `{cell(record.inputs, 200)}`"]
    if record.y_true:
        lines += ["", "| field | y_true | y_pred |", "|---|---|---|"]
        pred = record.y_pred or {}
        for field in record.y_true:
            mark = " ≠" if pred.get(field) != record.y_true[field] else ""
            lines.append(f"| {field} | {cell(record.y_true[field])} | {cell(pred.get(field))}{mark} |")
    return lines + [""]


def _failing(rows: list[PredictionRecord], shown: int, total: int) -> list[str]:
    if not rows:
        return []
    lines = ["", f"### Failing rows ({total})", ""]
    for record in rows[:shown]:
        lines += failing_row_lines(record)
    if total > min(shown, len(rows)):
        lines.append(f"_{total - min(shown, len(rows))} more failing rows: see predictions.jsonl or report.html._")
    return lines


def _is_failing(line: dict) -> bool:
    """A predictions line (as parsed JSON) that failed, or scored below 0.5 (row_status's rule)."""
    if line.get("status") == "error" or line.get("y_pred") is None:
        return True
    reward = line.get("reward")
    return reward is not None and reward < 0.5


def failing_rows(report: EvalReport, limit: int = FAILING_SHOWN) -> tuple[list[PredictionRecord], int]:
    """The first ``limit`` failed or failing lines of the predictions file the report names, and
    how many there are in all. Lines are only parsed (orjson) to count; the listed ones are read
    as records."""
    path = report.outputs.get("predictions")
    if not path or not Path(path).is_file():
        return [], 0
    rows: list[PredictionRecord] = []
    total = 0
    with open(path, "rb") as lines:
        for raw in lines:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(line, dict) and _is_failing(line):
                total += 1
                if len(rows) < limit:
                    rows.append(PredictionRecord.model_validate(line))
    return rows, total


@renders(EvalReport, "markdown")
def render_markdown(report: EvalReport) -> str:
    """report.md, the CI comment: the summary, then the failing rows (fewer until it fits a
    GitHub comment)."""
    rows, total = failing_rows(report)
    summary = summary_markdown(report)
    return fit_comment(lambda shown: summary + "\n".join(_failing(rows, shown, total)), len(rows))


def summary_markdown(report: EvalReport) -> str:
    lines = _header(report) + _score_tables(report) + _label_tables(report)
    if report.thresholds:
        lines += ["", "### Thresholds", "", "| check | threshold | value | result |", "|---|---|---|---|"]
        for t in report.thresholds:
            lines.append(f"| {t.name} | {t.threshold:g} | {_threshold_value(t)} | {'pass' if t.passed else '**fail**'} |")
    if report.warnings:
        lines += ["", "### Warnings", ""]
        lines += [f"- {warning}" for warning in report.warnings[:10]]
    if report.errors:
        lines += ["", "### First errors", ""]
        lines += [f"- row {err.index} (line {err.line}): {err.error}" for err in report.errors[:5]]
    return "\n".join(lines) + "\n"


@renders(EvalReport, "html")
def render_html(report: EvalReport) -> str:
    """report.html: the Markdown summary, each score's distribution and every row of the
    predictions file the report names, in a table that sorts and filters (rewardctl.report.page)."""
    return eval_page(report, summary_markdown(report))


def print_summary(console: Console, report: EvalReport) -> None:
    """The table and lines an eval, score or merge prints on stderr."""
    s = report.summary
    table = Table(title=f"{report.kind} · {report.spec.name} · {report.spec.model}",
                  title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("score")
    for column in ("weight", "mean", "± stderr", "95% CI", "min", "max"):
        table.add_column(column, justify="right")
    table.add_row("[bold]reward[/bold]", "", f"[bold]{_fmt(s.reward, missing='-')}[/bold]",
                  *_spread(report.stats.reward, "-"))
    for name, st in report.stats.rewards.items():
        table.add_row(f"  {name}", f"{report.weights.get(name, 1.0):g}", _mean(st, missing="-"),
                      *_spread(st, "-"))
    for name, st in report.stats.metrics.items():
        kind = "metric" if isinstance(st, SeriesStats) else "run metric"
        table.add_row(f"  {name}", kind, _mean(st, missing="-"), *_spread(st, "-"))
    console.print(table)
    console.print(" · ".join(_summary_parts(report)))
    if report.repeats is not None:
        console.print(f"repeats: {repeats_line(report)}", highlight=False)
    for warning in report.warnings[:5]:
        console.print(f"[yellow]warning:[/yellow] {warning}", markup=True, highlight=False)
    for err in report.errors[:3]:
        console.print(f"[yellow]row {err.index} (line {err.line}):[/yellow] {err.error}",
                      markup=True, highlight=False)
    for t in report.thresholds:
        mark = "[green]pass[/green]" if t.passed else "[red]FAIL[/red]"
        op = "<=" if t.kind == "max_error_rate" else ">="
        console.print(f"threshold {t.name}: {_threshold_value(t, missing='-')} {op} {t.threshold:g} {mark}")
    if report.outputs:
        console.print(f"wrote {', '.join(report.outputs.values())}")


def _summary_parts(report: EvalReport) -> list[str]:
    s = report.summary
    parts = [f"{s.count} rows", f"{s.errors} errors"]
    if s.ungraded:
        parts.append(f"{s.ungraded} ungraded")
    if s.skipped:
        parts.append(f"{s.skipped} invalid lines skipped")
    if report.usage is not None:
        judge = f" ({report.usage.judge.requests} by LM judges)" if report.usage.judge is not None else ""
        parts.append(f"{report.usage.requests} requests{judge}, {report.usage.cached_rows} rows from cache")
        if report.usage.cost_usd:
            parts.append(f"${report.usage.cost_usd:.4g}")
    parts.append(f"{report.wall_time_s:.1f} s")
    return parts
