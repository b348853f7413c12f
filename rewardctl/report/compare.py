"""Rendering of ``rewardctl compare``: report.md (the CI comment), the stderr table, and the
verdict line a CI log shows."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rewardctl.compare import TOTAL, PairedRow
from rewardctl.io import atomic_write_text
from rewardctl.records.compare import CompareReport, FlippedRow, ScoreComparison
from rewardctl.report.comment import cell, fit_comment
from rewardctl.report.html import markdown_to_html, page
from rewardctl.report.junit import JUnitCase, JUnitSuite, clip, junit_xml
from rewardctl.report.page import RowView, lazy_page
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
        gate = "" if report.margin is None else "; gate: FAIL (nothing to compare)"
        return "no rows scored on both sides: nothing to compare" + gate
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
        lines.append(f"| {s.name if s.group != 'reward' else 'reward (total)'}{gate} | {_num(s.base_mean)} | {_num(s.new_mean)} | {_num(s.diff, signed=True)} | "
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


def flip_lines(flip: FlippedRow) -> list[str]:
    """A flipped row: its inputs, a failed side's error, and each output field of both predictions
    (marked ≠ where the new one differs from the reference)."""
    lines = [f"**{flip.direction}** on {flip.score} ({_num(flip.base.value)} -> {_num(flip.new.value)}), "
             f"row {flip.new.index} (line {flip.new.line}): inputs `{cell(flip.inputs, 200)}`", ""]
    for label, side in (("base", flip.base), ("new", flip.new)):
        if side.y_pred is None:
            lines += [f"{label} failed: {cell(side.error or 'no prediction', 300)}", ""]
    truth = flip.y_true or {}
    fields = list(truth)
    for pred in (flip.base.y_pred or {}, flip.new.y_pred or {}):
        fields += [f for f in pred if f not in fields]
    lines += ["| field | y_true | base | new |", "|---|---|---|---|"]
    for f in fields:
        base = cell(flip.base.y_pred.get(f)) if flip.base.y_pred is not None else "-"
        new = cell(flip.new.y_pred.get(f)) if flip.new.y_pred is not None else "-"
        mark = " ≠" if f in truth and flip.new.y_pred is not None and flip.new.y_pred.get(f) != truth[f] else ""
        lines.append(f"| {f} | {cell(truth[f]) if f in truth else '-'} | {base} | {new}{mark} |")
    return lines + [""]


def _flips(report: CompareReport, shown: int) -> list[str]:
    if not report.flips or shown < 0:
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
    lines += [f"- {r.side}: row {r.index} (line {r.line}) `{cell(r.inputs, 160)}`" for r in report.one_side_rows]
    return lines


def render_compare_markdown(report: CompareReport, flips_shown: int = FLIPS_SHOWN) -> str:
    """The Markdown report, listing ``flips_shown`` flipped rows (-1: no flips section)."""
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
        style = {"regression": "red", "improvement": "green", "borderline": "yellow"}.get(s.verdict)
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


def _pair_case(pair: PairedRow, flips: dict[str, list[str]], classname: str) -> JUnitCase:
    """A paired row: an error when the new prediction failed, a failure when a score flipped
    pass -> fail; only those are read again for their output."""
    n = pair.new
    case = JUnitCase(f"row {n.index} (line {n.line})", classname)
    if not n.ok:
        r = n.first
        case.error, case.kind = r.error or "failed prediction", r.error_kind or "error"
    elif flips.get(pair.key):
        case.failure, case.kind = "; ".join(flips[pair.key]), "pass -> fail"
    if case.outcome is not None:  # a passing row needs no output
        r = n.first
        case.system_out = clip(json.dumps({"inputs": r.inputs, "y_true": r.y_true, "base": pair.base.first.y_pred,
                                           "new": r.y_pred}, ensure_ascii=False), 4000)
    return case


def _score_case(s: ScoreComparison, classname: str) -> JUnitCase:
    text = (f"{s.name}: {_num(s.base_mean)} -> {_num(s.new_mean)} ({_num(s.diff, signed=True)}, 95% CI {_ci(s)}, "
            f"p {_p(s.p_value)}, {s.pairs} pairs): {s.verdict}")
    case = JUnitCase(f"score {s.name}", classname, system_out=text)
    if s.regression or (s.gated and s.verdict == "regression"):
        case.failure, case.kind = text, "regression"
    return case


def compare_junit(report: CompareReport, pairs: list[PairedRow]) -> str:
    """Suite "<name>: compared rows", a case per paired row; suite "<name>: compared scores", a
    case per score (a failure when a gated score regressed)."""
    name, classname = report.new.spec.name, f"rewardctl.compare.{report.new.spec.name}"
    flips: dict[str, list[str]] = {}
    for pair in pairs:
        for s in report.scores:
            before, after = pair.base.mean(s.name), pair.new.mean(s.name)
            if before is not None and after is not None and before >= s.pass_threshold > after:
                flips.setdefault(pair.key, []).append(f"{s.name} {before:.3f} -> {after:.3f} (pass -> fail)")
    rows = [_pair_case(pair, flips, classname) for pair in pairs]
    scores = [_score_case(s, classname) for s in report.scores]
    return junit_xml([JUnitSuite(f"{name}: compared rows", rows, timestamp=report.created_at,
                                 properties={"base": report.base.path, "new": report.new.path}),
                      JUnitSuite(f"{name}: compared scores", scores, timestamp=report.created_at)])


def _pair_status(pair: PairedRow, threshold: float) -> str:
    value = pair.new.mean(TOTAL)
    if not pair.new.ok:
        return "error"
    return "ungraded" if value is None else "pass" if value >= threshold else "fail"


def _pair_view(pair: PairedRow, report: CompareReport, status: str, values: dict[str, float | None],
               threshold: float) -> RowView:
    """The table row of a pair: the new prediction beside the base one, and which way it flipped."""
    r, b = pair.new.first, pair.base.first
    new_value, base_value = pair.new.mean(TOTAL), pair.base.mean(TOTAL)
    flip = ""
    if new_value is not None and base_value is not None and (base_value >= threshold) != (new_value >= threshold):
        flip = "pass -> fail" if base_value >= threshold else "fail -> pass"
    return RowView(key=pair.key if r.index is None else str(r.index), index=r.index, status=status, scores=values,
                   inputs=r.inputs, y_true=r.y_true, y_pred=r.y_pred, y_pred_base=b.y_pred, raw=r.raw,
                   error=r.error or b.error, extra={"flip": flip, "base reward": _num(base_value)})


def compare_page(report: CompareReport, pairs: list[PairedRow]) -> str:
    """report.html: the summary, and the paired rows (the new prediction beside the base one,
    changed fields marked; a 'flip' column) in a table that sorts and filters. Only the rows the
    page keeps are read again."""
    names = [s.name for s in report.scores] + ["diff"]
    thresholds = {s.name: s.pass_threshold for s in report.scores}
    threshold = thresholds.get(TOTAL, 0.5)
    statuses = [_pair_status(p, threshold) for p in pairs]

    def rows():
        for pair, status in zip(pairs, statuses, strict=True):
            values = {s.name: pair.new.mean(s.name) for s in report.scores}
            new_value, base_value = pair.new.mean(TOTAL), pair.base.mean(TOTAL)
            values["diff"] = None if new_value is None or base_value is None else new_value - base_value
            yield status, list(values.values()), \
                lambda p=pair, s=status, v=values: _pair_view(p, report, s, v, threshold)

    return lazy_page(f"rewardctl compare: {report.new.spec.name}", render_compare_markdown(report, -1), rows(),
                     names, thresholds, failing=sum(1 for s in statuses if s != "pass"))


def write_compare_outputs(out_dir: str | Path | None, report: CompareReport, pairs: list[PairedRow],
                          junit: str | Path | None = None) -> None:
    """report.json, report.md and report.html in ``out_dir`` (each written atomically, listed in
    ``outputs``), and the JUnit XML at ``junit``; either may be None."""
    if out_dir is not None:
        out = Path(out_dir)
        files = {"report": ("json", "report.json"), "markdown": ("markdown", "report.md"), "html": ("html", "report.html")}
        for key, (_, name) in files.items():
            report.outputs[key] = str(out / name)
        for fmt, name in files.values():
            text = compare_page(report, pairs) if fmt == "html" else render(report, fmt)
            atomic_write_text(out / name, text)
    if junit is not None:
        atomic_write_text(Path(junit), compare_junit(report, pairs))
