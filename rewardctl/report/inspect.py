"""The pages of an inspect-rewards report: report.md, a self-contained report.html (plots inlined
as base64 PNGs), the PNG plots, and report.json."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rewardctl.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from rewardctl.records.inspect import AgreementCheck, InspectReport, InspectSeries
from rewardctl.report.render import renders

ORDER = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}
COLORS = {"fail": "#c0392b", "warn": "#d68910", "pass": "#1e8449", "skip": "#7f8c8d"}


def _counts(report: InspectReport) -> str:
    return ", ".join(f"{report.counts.get(k, 0)} {k}" for k in ("fail", "warn", "pass", "skip"))


@renders(InspectReport, "markdown")
def render_markdown(report: InspectReport) -> str:
    lines = [f"## rewardctl inspect-rewards: {report.spec.name}", "",
             f"Source: {report.source}, {report.rows} rows. " + _counts(report) + ".", "",
             "| check | score | status | finding |", "|---|---|---|---|"]
    for c in sorted(report.checks, key=lambda c: (ORDER[c.status], c.check)):
        status = f"**{c.status}**" if c.status in ("fail", "warn") else c.status
        lines.append(f"| {c.check} | {c.score or ''} | {status} | {c.summary.replace('|', '/')} |")
    if report.recommended_normalization:
        lines += ["", "### Recommended normalization", "", "| score | method | parameters | why |", "|---|---|---|---|"]
        for name, rec in report.recommended_normalization.items():
            fitted = rec.parameters()
            params = ", ".join(f"{k} {fitted[k]:.4g}" for k in ("min", "max", "mean", "std") if k in fitted)
            lines.append(f"| {name} | {rec.method} | {params} | {rec.reason} |")
    return "\n".join(lines) + "\n"


def render_html(report: InspectReport, plots: dict[str, bytes]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c.check)}</td><td>{html.escape(c.score or '')}</td>"
        f"<td style='color:{COLORS[c.status]};font-weight:bold'>{c.status}</td><td>{html.escape(c.summary)}"
        f"<details><summary>evidence</summary><pre>{html.escape(_evidence_json(c))}</pre></details></td></tr>"
        for c in sorted(report.checks, key=lambda c: (ORDER[c.status], c.check)))
    images = "".join(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' src='data:image/png;base64,"
                     f"{base64.b64encode(data).decode()}'>" for name, data in plots.items())
    name = html.escape(report.spec.name)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inspect-rewards: {name}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}}th{{background:#f4f4f4}}
pre{{white-space:pre-wrap;font-size:12px}}img{{max-width:100%}}</style></head><body>
<h1>inspect-rewards: {name}</h1>
<p>Source: {report.source}, {report.rows} rows, {report.created_at}. {_counts(report)}.</p>
<table><tr><th>check</th><th>score</th><th>status</th><th>finding</th></tr>{rows}</table>
{images}
</body></html>
"""


def _evidence_json(check: Any) -> str:
    return json.dumps(check.evidence.model_dump(mode="json"), indent=1, ensure_ascii=False)[:6000]


# --- plots ---------------------------------------------------------------------------------------

def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt  # matplotlib takes a second to import: only when plotting

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _grid(plt: Any, n: int) -> tuple[Any, list[Any]]:
    """A figure with one panel per score (three a row); panels left over are hidden."""
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), dpi=100, squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _correlation_plot(plt: Any, agreement: AgreementCheck) -> bytes:
    import numpy as np  # start-up time: of this report, only the correlation plot needs numpy

    labels = agreement.evidence.scores
    rho = agreement.evidence.spearman
    matrix = np.array([[rho[a].get(b) if rho[a].get(b) is not None else np.nan for b in labels] for a in labels],
                      dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2.5, 1.0 * len(labels) + 2), dpi=100)
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if not np.isnan(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title("Spearman correlation", fontsize=9)
    fig.tight_layout()
    return _png(fig)


@renders(InspectReport, "html")
def render_html_without_plots(report: InspectReport) -> str:
    return render_html(report, {})


def make_plots(report: InspectReport, series: InspectSeries) -> dict[str, bytes]:
    """histograms.png, reward_vs_length.png and correlation.png (when scores were correlated),
    by file name; nothing without outputs."""
    if not series.has_outputs:
        return {}
    import matplotlib  # matplotlib takes a second to import: only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib takes a second to import: only when plotting

    plots: dict[str, bytes] = {}
    fig, axes = _grid(plt, len(series.scores))
    for ax, name in zip(axes, series.scores, strict=True):
        ax.hist([v for v in series.values[name] if _finite(v)], bins=20, color="tab:blue")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    plots["histograms.png"] = _png(fig)

    fig, axes = _grid(plt, len(series.scores))
    for ax, name in zip(axes, series.scores, strict=True):
        pts = [(n, v) for v, n in zip(series.values[name], series.output_lengths, strict=True)
               if _finite(v) and n is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.6)
        ax.set_title(f"{name} vs output length", fontsize=9)
        ax.set_xlabel("characters", fontsize=8)
    fig.tight_layout()
    plots["reward_vs_length.png"] = _png(fig)

    agreement = next((c for c in report.checks if isinstance(c, AgreementCheck) and c.evidence.spearman is not None),
                     None)
    if agreement is not None:
        plots["correlation.png"] = _correlation_plot(plt, agreement)
    return plots


# --- the files -----------------------------------------------------------------------------------

def write_inspect_outputs(out_dir: str | Path, report: InspectReport, series: InspectSeries) -> None:
    """Write the plots, report.json, report.md and report.html to ``out_dir``; list them among the
    report's outputs."""
    out = Path(out_dir)
    plots = make_plots(report, series)
    for name, data in plots.items():
        atomic_write_bytes(out / name, data)
        report.outputs[name.removesuffix(".png")] = str(out / name)
    report.outputs.update(report=str(out / "report.json"), markdown=str(out / "report.md"),
                          html=str(out / "report.html"))
    atomic_write_json(out / "report.json", report.model_dump(mode="json"))
    atomic_write_text(out / "report.md", render_markdown(report))
    atomic_write_text(out / "report.html", render_html(report, plots))


def print_inspection(console: Console, report: InspectReport) -> None:
    """The table of checks inspect-rewards prints on stderr."""
    colors = {"fail": "red", "warn": "yellow", "pass": "green", "skip": "bright_black"}
    order = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}
    table = Table(title=f"inspect-rewards · {report.spec.name} · {report.source}, {report.rows} rows",
                  title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("check")
    table.add_column("score")
    table.add_column("status")
    table.add_column("finding", overflow="fold")
    for c in sorted(report.checks, key=lambda c: (order[c.status], c.check)):
        table.add_row(c.check, c.score or "", f"[{colors[c.status]}]{c.status}[/]", c.summary)
    console.print(table)
    console.print(", ".join(f"{report.counts.get(k, 0)} {k}" for k in ("fail", "warn", "pass", "skip")))
    if report.outputs:
        console.print(f"wrote {', '.join(report.outputs.values())}", highlight=False, soft_wrap=True)
