"""The interactive report.html: one self-contained file (inline CSS and script, no network, no
CDN) with the summary, each score's distribution and every row in a table that sorts, filters
and opens a row's details (inputs, y_true beside y_pred with the differing fields marked, the raw
reply and the error).

:func:`interactive_page` is generic: it takes :class:`RowView` rows, so ``compare`` builds its page
with it too (a row there carries the base run's prediction in ``y_pred_base``). :func:`eval_page`
is the page of an eval, score or merge report, its rows read back from predictions.jsonl.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from math import isfinite
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from rewardctl.records.eval import EvalReport, SeriesStats
from rewardctl.records.prediction import PredictionRecord
from rewardctl.report.html import markdown_to_html

JSON = dict[str, Any]
STATUSES = ("fail", "error", "ungraded", "pass")  # the order of the status filter
PAGE_ROWS = 200  # rows the table adds at a time ("show more")
CLIP = 4000  # longer strings in the page are clipped (predictions.jsonl keeps them whole)
BINS = 20
BATCH = 1 << 16  # values a histogram bins at once
MAX_ROWS = 20_000  # rows a page holds at most (10,000 rows: 6.4 MB, see bench/html_report.py)
TOTAL = "reward"  # the total reward's name among the scores


@dataclass
class RowView:
    """One row of the table. ``scores``: the total reward first, then each reward and metric by
    name (None: no value). ``y_pred_base``: the base run's prediction (compare), shown beside
    y_pred with the fields that changed marked. ``extra``: free labels, one column each
    (compare's ``'flip': 'pass -> fail'``)."""

    key: str
    index: int | None
    status: str
    scores: dict[str, float | None]
    inputs: JSON | None = None
    y_true: JSON | None = None
    y_pred: JSON | None = None
    y_pred_base: JSON | None = None
    raw: str | None = None
    error: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown row status {self.status!r} (one of {', '.join(STATUSES)})")


def field_diffs(reference: JSON | None, other: JSON | None, *, both_ways: bool = False) -> list[str]:
    """The fields of ``reference`` whose value ``other`` does not match (missing counts);
    ``both_ways``: the fields only ``other`` has count too. Nothing when either side is None."""
    if reference is None or other is None:
        return []
    names = list(reference) + ([k for k in other if k not in reference] if both_ways else [])
    return [k for k in names if k not in other or k not in reference or other[k] != reference[k]]


# --- the page ---


@cache
def _assets() -> tuple[str, str]:
    here = files("rewardctl.report")
    return (here / "page.css").read_text(encoding="utf-8"), (here / "page.js").read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _clip(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= CLIP else value[:CLIP] + f"\u2026 [clipped: {len(value):,} characters]"
    if isinstance(value, dict):
        return {k: _clip(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clip(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _score(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _row_data(row: RowView, score_names: list[str]) -> JSON:
    """The row as the page's script reads it (short keys: 10,000 rows stay small)."""
    out: JSON = {"k": row.key, "s": row.status, "v": [_score(row.scores.get(n)) for n in score_names]}
    optional = {"i": row.index, "in": row.inputs, "t": row.y_true, "p": row.y_pred, "b": row.y_pred_base,
                "r": row.raw, "e": row.error, "x": row.extra or None,
                "d": field_diffs(row.y_true, row.y_pred) or None,
                "db": field_diffs(row.y_true, row.y_pred_base) or None,
                "dc": (field_diffs(row.y_pred_base, row.y_pred, both_ways=True) or None)
                if row.y_pred_base is not None else None}
    out.update((k, v) for k, v in optional.items() if v is not None)
    return out


def _escape(text: str) -> str:
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits, a type orjson does not know
        return json.dumps(_clip(value), ensure_ascii=False, separators=(",", ":"), default=str)


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' (so no '</script>' and no '<!--');
    NaN and infinities are written null, strings over CLIP characters clipped."""
    text = _dumps(value)
    if len(text) > CLIP:  # a string in it may be too long (a shorter text holds none)
        text = _dumps(_clip(value))
    return _escape(text)


def _span(lo: float, hi: float) -> tuple[float, float]:
    """The histogram's range: [0, 1] for scores inside it (most are), else the values' own."""
    return (0.0, 1.0) if lo >= 0 and hi <= 1 else (lo, hi)


class Histogram:
    """One score's distribution, counted as the rows stream by. With ``span`` known (an eval
    report's min and max) the values are binned a batch at a time (memory stays flat), else kept
    (8 bytes each) until :meth:`bins`."""

    def __init__(self, span: tuple[float, float] | None = None) -> None:
        self.count = self.missing = 0
        self.total = 0.0
        self.known = span is not None
        self.buffer = array("d")
        self._range(*(span if span is not None else (0.0, 0.0)))

    def _range(self, lo: float, hi: float) -> None:
        self.lo, self.hi = _span(lo, hi)
        self.counts = [0] * (1 if self.hi == self.lo else BINS)

    def add(self, value: float | None) -> None:
        """One row's value (None, NaN or infinite: a row without one)."""
        if value is None:
            self.missing += 1
            return
        self.buffer.append(value)
        if self.known and len(self.buffer) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        import numpy as np  # binning a batch at once: a million rows cost no more than their parsing

        if not self.buffer:
            return
        values = np.frombuffer(self.buffer, dtype=np.float64)
        finite = values[np.isfinite(values)]
        self.buffer = array("d")
        self.missing += len(values) - len(finite)
        self.count += len(finite)
        self.total += float(finite.sum())
        if len(self.counts) == 1:
            self.counts[0] += len(finite)
            return
        where = np.clip(np.floor((finite - self.lo) * (BINS / (self.hi - self.lo))), 0, BINS - 1)
        added = np.bincount(where.astype(np.intp), minlength=BINS)
        self.counts = [old + int(new) for old, new in zip(self.counts, added, strict=True)]

    def bins(self) -> tuple[float, float, list[int]]:
        """(lo, hi, counts): BINS equal bins over [lo, hi] (one when every value is the same);
        ``count``, ``missing`` and ``total`` are complete once it is called."""
        if not self.known:
            finite = [v for v in self.buffer if isfinite(v)]
            if finite:
                self._range(min(finite), max(finite))
            self.known = True
        self._flush()
        return self.lo, self.hi, self.counts


def histogram_svg(index: int, name: str, hist: Histogram, threshold: float | None) -> str:
    """A small inline SVG histogram of one score; a bar, clicked, filters the table to its range."""
    label = html.escape(name)
    lo, hi, counts = hist.bins()
    note = f", {hist.missing:,} without a value" if hist.missing else ""
    if not hist.count:
        return f'<figure class="hist"><figcaption>{label}: no values{note}</figcaption></figure>'
    width, height = 240.0, 80.0
    top, step = max(counts), width / len(counts)
    parts = [f'<svg viewBox="-2 -12 {width + 4:g} {height + 26:g}" width="{width + 4:g}" height="{height + 26:g}" '
             f'role="img" aria-label="distribution of {label}">']
    for k, count in enumerate(counts):
        a, b = lo + (hi - lo) * k / len(counts), lo + (hi - lo) * (k + 1) / len(counts)
        bar = height * count / top
        parts.append(f'<rect class="bar" data-score="{index}" data-lo="{a:.6g}" data-hi="{b:.6g}" x="{k * step:.1f}" '
                     f'y="{height - bar:.1f}" width="{max(step - 1, 1):.1f}" height="{bar:.1f}">'
                     f"<title>{a:.3g} to {b:.3g}: {count:,} rows</title></rect>")
    if threshold is not None and lo <= threshold <= hi and hi > lo:
        x = width * (threshold - lo) / (hi - lo)
        parts.append(f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="-8" y2="{height}">'
                     f"<title>pass threshold {threshold:g}</title></line>")
    parts.append(f'<text x="0" y="{height + 12:g}">{lo:.3g}</text>'
                 f'<text x="{width:g}" y="{height + 12:g}" text-anchor="end">{hi:.3g}</text>'
                 f'<text x="0" y="-2">{top:,}</text></svg>')
    line = f"; dashed: pass threshold {threshold:g}" if threshold is not None and lo <= threshold <= hi else ""
    caption = f"{label}: mean {hist.total / hist.count:.3f} over {hist.count:,} rows{note}{line}"
    return f'<figure class="hist">{"".join(parts)}<figcaption>{caption}</figcaption></figure>'


def _columns(score_names: list[str], extras: list[str], compare: bool) -> list[tuple[str, str]]:
    """(data-col, label) of each column of the table; the script fills the cells in this order."""
    predictions = [("t", "y_true"), ("b", "y_pred (base)"), ("p", "y_pred (new)")] if compare else \
        [("t", "y_true"), ("p", "y_pred")]
    return [("key", "row"), ("status", "status"), *((f"score:{j}", n) for j, n in enumerate(score_names)),
            *((f"extra:{j}", n) for j, n in enumerate(extras)), ("in", "inputs"), *predictions, ("e", "error")]


def _filters(score_names: list[str], counts: dict[str, int]) -> str:
    boxes = "".join(f'<label><input type="checkbox" name="status" value="{s}" checked> {s} '
                    f'<span class="n">({counts.get(s, 0):,})</span></label>' for s in STATUSES)
    ranges = "".join(f'<label>{html.escape(n)} <input id="min-{j}" type="number" step="any" placeholder="min" '
                     f'aria-label="{html.escape(n)} min"> to <input id="max-{j}" type="number" step="any" '
                     f'placeholder="max" aria-label="{html.escape(n)} max"></label>' for j, n in enumerate(score_names))
    return (f'<form id="filters" autocomplete="off"><fieldset><legend>status</legend>{boxes}</fieldset>'
            '<fieldset><legend>text in inputs, y_true, y_pred, error, raw reply</legend>'
            '<input id="search" type="search" placeholder="search" aria-label="search"></fieldset>'
            f'<fieldset><legend>score ranges (inclusive)</legend>{ranges}</fieldset>'
            '<button type="button" id="clear">reset</button></form>')


def _table(columns: list[tuple[str, str]], total: int) -> str:
    head = "".join(f'<th data-col="{col}" tabindex="0" title="sort by {html.escape(label)}">{html.escape(label)}</th>'
                   for col, label in columns)
    return (f'<p id="count" aria-live="polite">showing {total:,} of {total:,} rows</p>'
            f'<div class="table-wrap"><table id="rows"><thead><tr>{head}</tr></thead><tbody></tbody></table></div>'
            '<p id="paging"><span id="on-screen"></span><button type="button" id="more" hidden>show more</button>'
            '<button type="button" id="all" hidden>show all</button></p>'
            "<noscript><p>The row table needs JavaScript; predictions.jsonl holds every row.</p></noscript>")


class _Collector:
    """The rows as they stream by: each kept as its JSON text (up to ``max_rows``: failed, errored
    and ungraded rows take the place of passing ones), each score's histogram, the status counts."""

    def __init__(self, score_names: list[str], spans: dict[str, tuple[float, float]], max_rows: int,
                 passing_budget: int | None = None) -> None:
        self.score_names, self.max_rows = score_names, max_rows
        # When the caller knows how many rows do not pass, the passing rows past this many are
        # skipped unbuilt, instead of built and later given up for a failing one.
        self.passing_budget = passing_budget
        self.rows: list[tuple[int, str]] = []  # (position in the stream, the row's JSON)
        self.passing: list[int] = []  # where the kept passing rows are in self.rows
        self.hists = {n: Histogram(spans.get(n)) for n in score_names}
        self.hist_list = list(self.hists.values())
        self.counts: dict[str, int] = dict.fromkeys(STATUSES, 0)  # of the kept rows
        self.seen = 0
        self.extras: list[str] = []
        self.compare = False

    def add(self, row: RowView) -> None:
        self.offer(row.status, [row.scores.get(n) for n in self.score_names], lambda: row)

    def offer(self, status: str, values: list[float | None], make_row: Callable[[], RowView]) -> None:
        """Count a row's scores (``values``: in the order of the score names); build and keep the
        row only when the page has room for it (a run of a million rows builds no more than
        ``max_rows`` and the failed rows past them)."""
        for hist, value in zip(self.hist_list, values, strict=True):
            hist.add(value)
        if status == "pass" and self.passing_budget is not None and self.counts["pass"] >= self.passing_budget:
            self.seen += 1
            return
        if len(self.rows) < self.max_rows:
            slot = len(self.rows)
            self.rows.append((0, ""))
        elif status != "pass" and self.passing:
            slot = self.passing.pop()  # the latest passing row gives way
            self.counts["pass"] -= 1
        else:
            self.seen += 1
            return
        row = make_row()
        self.rows[slot] = (self.seen, script_json(_row_data(row, self.score_names)))
        self.counts[row.status] += 1
        if row.status == "pass":
            self.passing.append(slot)
        self.compare = self.compare or row.y_pred_base is not None
        self.extras += [k for k in row.extra if k not in self.extras]
        self.seen += 1

    def rows_json(self) -> str:
        return "[" + ",".join(text for _, text in sorted(self.rows)) + "]"


def interactive_page(title: str, summary_markdown: str, rows: Iterable[RowView], score_names: list[str],
                     pass_thresholds: dict[str, float], *, spans: dict[str, tuple[float, float]] | None = None,
                     max_rows: int = MAX_ROWS) -> str:
    """One HTML file, nothing to fetch: the summary (Markdown, rendered), a histogram per score
    (the pass threshold marked), and the rows in a table (failed and errored rows first) that
    sorts by any column, filters by status, score ranges and text, and opens a row's details.
    ``rows`` is read once, as it streams. ``spans``: each score's (min, max), when known, so the
    histograms need not keep the values. Past ``max_rows`` rows the page keeps that many (failed,
    errored and ungraded ones first) and says so."""
    collector = _Collector(score_names, spans or {}, max_rows)
    for row in rows:
        collector.add(row)
    return _page(title, summary_markdown, collector, pass_thresholds)


def lazy_page(title: str, summary_markdown: str, rows: Iterable[tuple[str, list[float | None], Callable[[], RowView]]],
              score_names: list[str], pass_thresholds: dict[str, float], *, failing: int,
              max_rows: int = MAX_ROWS) -> str:
    """interactive_page for rows given as (status, score values, a function that builds the row):
    only the rows the page keeps are built. ``failing``: how many rows do not pass (the passing
    ones past the room they leave are skipped unbuilt)."""
    collector = _Collector(score_names, {}, max_rows, passing_budget=max(0, max_rows - failing))
    for status, values, make_row in rows:
        collector.offer(status, values, make_row)
    return _page(title, summary_markdown, collector, pass_thresholds)


def _capped(got: _Collector) -> str:
    if got.seen <= len(got.rows):
        return ""
    return (f'<p id="capped" class="note">This page holds {len(got.rows):,} of the {got.seen:,} rows (failed, '
            "errored and ungraded rows before passing ones); the predictions file has every row.</p>")


def _page(title: str, summary_markdown: str, got: _Collector, pass_thresholds: dict[str, float]) -> str:
    css, script = _assets()
    names = got.score_names
    hists = "".join(histogram_svg(j, n, got.hists[n], pass_thresholds.get(n)) for j, n in enumerate(names))
    meta = {"scores": names, "thresholds": pass_thresholds, "extras": got.extras, "compare": got.compare,
            "page": PAGE_ROWS}
    data = script_json(meta)[:-1] + ',"rows":' + got.rows_json() + "}"
    policy = (f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(script)}; "
              "img-src data:; form-action 'none'; base-uri 'none'")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{css}</style></head><body>\n"
            f'<section id="summary">{markdown_to_html(summary_markdown)}</section>\n'
            f'<section id="distributions"><h3>Distributions</h3><div class="hists">{hists}</div></section>\n'
            f'<section id="rows-section"><h3>Rows</h3>{_capped(got)}{_filters(names, got.counts)}'
            f"{_table(_columns(names, got.extras, got.compare), len(got.rows))}</section>\n"
            f'<script type="application/json" id="rows-data">{data}</script>\n'
            f"<script>{script}</script>\n</body></html>\n")


# --- eval, score and merge: the rows of predictions.jsonl ---


def row_status(record: PredictionRecord, threshold: float = 0.5) -> str:
    """'error': the prediction failed; 'ungraded': no total reward; else 'pass' or 'fail' by the
    total reward against ``threshold``."""
    if not record.ok:
        return "error"
    if record.reward is None:
        return "ungraded"
    return "pass" if record.reward >= threshold else "fail"


def eval_score_names(report: EvalReport) -> list[str]:
    """The per-row scores: the total reward, each reward, each per-example metric."""
    return [TOTAL, *report.stats.rewards,
            *(n for n, st in report.stats.metrics.items() if isinstance(st, SeriesStats))]


def eval_thresholds(report: EvalReport) -> dict[str, float]:
    stats: dict[str, Any] = {TOTAL: report.stats.reward, **report.stats.rewards, **report.stats.metrics}
    out = {n: st.pass_threshold for n, st in stats.items()
           if isinstance(st, SeriesStats) and st.pass_threshold is not None}
    out.setdefault(TOTAL, 0.5)
    return out


def _record_scores(record: PredictionRecord, score_names: list[str]) -> list[float | None]:
    """The line's value of each score (the total reward first)."""
    rewards, metrics = record.rewards, record.metrics
    return [record.reward, *(rewards[n] if n in rewards else metrics.get(n) for n in score_names[1:])]


def prediction_row(record: PredictionRecord, position: int, score_names: list[str], threshold: float = 0.5) -> RowView:
    """A predictions line as a row of the table; ``position``: its place in the file."""
    index = record.index if record.index is not None else position
    key = str(index) if record.sample is None else f"{index}#{record.sample}"
    extra = {"error kind": record.error_kind} if record.error_kind else {}
    if record.ungraded:
        extra["ungraded"] = "; ".join(f"{k}: {v}" for k, v in record.ungraded.items())
    return RowView(key=key, index=record.index, status=row_status(record, threshold),
                   scores=dict(zip(score_names, _record_scores(record, score_names), strict=True)), inputs=record.inputs, y_true=record.y_true,
                   y_pred=record.y_pred, raw=record.raw, error=record.error, extra=extra)


def read_predictions(path: str | Path, unreadable: list[int] | None = None) -> Iterator[tuple[int, PredictionRecord]]:
    """(position, record) of each line of a predictions file, streamed; the numbers of lines that
    do not parse go to ``unreadable`` (when given) and are left out."""
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield number - 1, PredictionRecord.model_validate_json(line)
            except ValidationError:
                if unreadable is not None:
                    unreadable.append(number)


def eval_spans(report: EvalReport) -> dict[str, tuple[float, float]]:
    """Each per-row score's (min, max) over the run, from the report's statistics."""
    stats: dict[str, Any] = {TOTAL: report.stats.reward, **report.stats.rewards, **report.stats.metrics}
    return {n: (st.min, st.max) for n, st in stats.items()
            if isinstance(st, SeriesStats) and st.min is not None and st.max is not None}


def eval_page(report: EvalReport, summary_markdown: str) -> str:
    """report.html of an eval, score or merge: the summary and the rows of the predictions file
    the report names (``outputs['predictions']``, streamed); the summary alone when it names none."""
    names, thresholds = eval_score_names(report), eval_thresholds(report)
    path = report.outputs.get("predictions")
    unreadable: list[int] = []
    total = report.stats.reward
    passing = round((total.pass_rate or 0.0) * total.count)
    collector = _Collector(names, eval_spans(report), MAX_ROWS,
                           passing_budget=max(0, MAX_ROWS - (report.summary.count - passing)))
    if path and Path(path).is_file():
        for position, record in read_predictions(path, unreadable):
            collector.offer(row_status(record, thresholds[TOTAL]), _record_scores(record, names),
                            lambda r=record, p=position: prediction_row(r, p, names, thresholds[TOTAL]))
    else:
        summary_markdown += "\nThe report names no predictions file (no `--out`): the rows are not shown.\n"
    if unreadable:
        summary_markdown += (f"\n{len(unreadable):,} lines of `{path}` could not be read and are not shown "
                             f"(first: line {unreadable[0]}).\n")
    return _page(f"rewardctl {report.kind}: {report.spec.name}", summary_markdown, collector, thresholds)
