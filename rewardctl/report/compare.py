"""Rendering of ``rewardctl compare``: report.md (the CI comment), the stderr table, and the
verdict line a CI log shows."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rewardctl.io import atomic_write_text
from rewardctl.records.compare import CompareReport, FlippedRow, ScoreComparison
from rewardctl.report.comment import fit_comment
from rewardctl.report.html import markdown_to_html, page
from rewardctl.report.render import render, renders

FLIPS_SHOWN = 20


def _num(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _ci(s: ScoreComparison) -> str:
    return "n/a" if s.ci95 is None else f"{s.ci95[0]:+.3f} to {s.ci95[1]:+.3f}"


def _label(s: ScoreComparison) -> str:
    return "reward" if s.group == "reward" else f"  {s.name}"


def verdict_line(report: CompareReport) -> str:
    """One line: the total reward's verdict, what the gate decided."""
    total = report.score("reward")
    if total is None or total.diff is None:
        return "no rows scored on both sides: nothing to compare"
    text = (f"reward {_num(total.base_mean)} -> {_num(total.new_mean)} ({_num(total.diff, signed=True)}, "
            f"95% CI {_ci(total)}, p {_p(total.p_value)}, {total.pairs} pairs, {total.pass_to_fail} pass -> fail, "
            f"{total.fail_to_pass} fail -> pass): {total.verdict}")
    if total.verdict == "no significant change" and total.min_detectable_effect is not None:
        text += f" (these pairs detect a change of {total.min_detectable_effect:.3f} or more)"
    if report.margin is not None:
        gated = [s.name for s in report.scores if s.regression]
        text += f"; gate (margin {report.margin:g}): " + (f"FAIL ({', '.join(gated)} regressed)" if gated else "pass")
    return text


def _score_table(report: CompareReport) -> list[str]:
    lines = ["| score | base | new | diff | 95% CI | test | p | pass->fail | fail->pass | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in report.scores:
        verdict = f"**{s.verdict}**" if s.verdict in ("regression", "improvement") else s.verdict
        if s.verdict == "no significant change" and s.min_detectable_effect is not None:
            verdict += f" (detects ≥{s.min_detectable_effect:.3f})"
        gate = " (gated)" if s.gated and report.margin is not None else ""
        lines.append(f"| {_label(s)}{gate} | {_num(s.base_mean)} | {_num(s.new_mean)} | {_num(s.diff, signed=True)} | "
                     f"{_ci(s)} | {s.test or 'n/a'} | {_p(s.p_value)} | {s.pass_to_fail} | {s.fail_to_pass} | {verdict} |")
    return lines


def _runs_table(report: CompareReport) -> list[str]:
    b, n = report.base, report.new
    return ["| | base | new |", "|---|---|---|",
            f"| folder | `{b.path}` | `{n.path}` |",
            f"| spec | {b.spec.name} (`{b.spec.fingerprint[:12]}`) | {n.spec.name} (`{n.spec.fingerprint[:12]}`) |",
            f"| model | `{b.spec.model}` | `{n.spec.model}` |",
            f"| data | `{b.data.path}` | `{n.data.path}` |",
            f"| rows | {b.rows} ({b.lines} lines) | {n.rows} ({n.lines} lines) |"]


def _cell(value: object, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def flip_lines(flip: FlippedRow) -> list[str]:
    """A flipped row: its inputs, and each output field whose prediction changed or is wrong."""
    lines = [f"**{flip.direction}** on {flip.score} ({_num(flip.base.value)} -> {_num(flip.new.value)}), "
             f"row {flip.new.index} (line {flip.new.line}): inputs `{_cell(flip.inputs, 200)}`", "",
             "| field | y_true | base | new |", "|---|---|---|---|"]
    fields = list((flip.y_true or {}).keys())
    for extra in (flip.base.y_pred or {}, flip.new.y_pred or {}):
        fields += [f for f in extra if f not in fields]
    for f in fields:
        truth = (flip.y_true or {}).get(f)
        base = (flip.base.y_pred or {}).get(f) if flip.base.y_pred is not None else flip.base.error
        new = (flip.new.y_pred or {}).get(f) if flip.new.y_pred is not None else flip.new.error
        mark = " ≠" if new != truth else ""
        lines.append(f"| {f} | {_cell(truth)} | {_cell(base)} | {_cell(new)}{mark} |")
    return lines + [""]


def _flips(report: CompareReport, shown: int) -> list[str]:
    if not report.flips:
        return []
    lines = ["", "### Rows that flipped", ""]
    for flip in report.flips[:shown]:
        lines += flip_lines(flip)
    left = len(report.flips) - shown + report.flips_left_out
    if left > 0:
        lines.append(f"_{left} more flipped rows: see report.json or report.html._")
    return lines


def _one_side(report: CompareReport) -> list[str]:
    if not (report.only_base or report.only_new):
        return []
    lines = ["", f"### Rows on one side only: {report.only_base} in base, {report.only_new} in new", ""]
    lines += [f"- {r.side}: row {r.index} (line {r.line}) `{_cell(r.inputs, 160)}`" for r in report.one_side_rows]
    return lines


def render_compare_markdown(report: CompareReport, flips_shown: int = FLIPS_SHOWN) -> str:
    gate = "" if report.margin is None else (" (FAIL)" if not report.passed else " (pass)")
    lines = [f"## rewardctl compare: {report.new.spec.name}{gate}", "", verdict_line(report), ""]
    lines += _runs_table(report)
    if report.differences:
        lines += ["", "### The runs differ", ""] + [f"- {d}" for d in report.differences]
    lines += ["", f"### Scores ({report.paired} rows paired by {report.key}; alpha {report.alpha:g}, seed {report.seed})", ""]
    lines += _score_table(report)
    lines += _flips(report, flips_shown) + _one_side(report)
    if report.warnings:
        lines += ["", "### Warnings", ""] + [f"- {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"


@renders(CompareReport, "markdown")
def render_markdown(report: CompareReport) -> str:
    return fit_comment(lambda shown: render_compare_markdown(report, shown), FLIPS_SHOWN)


def print_compare(console: Console, report: CompareReport) -> None:
    """The table and verdict compare prints on stderr."""
    table = Table(title=f"compare · {report.base.path} -> {report.new.path} · {report.paired} rows paired",
                  title_justify="left", show_edge=False, pad_edge=False)
    for column in ("score", "base", "new", "diff", "95% CI", "p", "verdict"):
        table.add_column(column, justify="left" if column in ("score", "verdict") else "right",
                         no_wrap=column != "score")
    for s in report.scores:
        style = {"regression": "red", "improvement": "green"}.get(s.verdict)
        short = {"no significant change": "not sig.", "improvement": "improved"}.get(s.verdict, s.verdict)
        verdict = f"[{style}]{short}[/{style}]" if style else short
        ci = "-" if s.ci95 is None else f"{s.ci95[0]:+.2f}..{s.ci95[1]:+.2f}"
        table.add_row(_label(s), _num(s.base_mean), _num(s.new_mean), _num(s.diff, signed=True), ci,
                      _p(s.p_value), verdict)
    console.print(table)
    for d in report.differences:
        console.print(f"[yellow]differs:[/yellow] {d}", markup=True, highlight=False)
    for w in report.warnings[:5]:
        console.print(f"[yellow]warning:[/yellow] {w}", markup=True, highlight=False)
    console.print(verdict_line(report), highlight=False)
    if report.outputs:
        console.print(f"wrote {', '.join(report.outputs.values())}")


@renders(CompareReport, "html")
def render_html(report: CompareReport) -> str:
    return page(f"rewardctl compare: {report.new.spec.name}", markdown_to_html(render_compare_markdown(report, len(report.flips))))


def write_compare_outputs(out_dir: str | Path, report: CompareReport) -> None:
    """report.json, report.md and report.html, each written atomically and listed in ``outputs``."""
    out = Path(out_dir)
    names = {"report": "report.json", "markdown": "report.md", "html": "report.html"}
    for key, name in names.items():
        report.outputs[key] = str(out / name)
    for fmt, name in (("json", "report.json"), ("markdown", "report.md"), ("html", "report.html")):
        atomic_write_text(out / name, render(report, fmt))
