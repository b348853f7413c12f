"""What people see on stderr: progress and summaries (rich). Data goes to stdout only via --json."""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from rewardctl.report import EvalReport


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=False)


class DataChannel:
    """Keeps stdout for data alone.

    While a command runs, Python's ``sys.stdout`` and file descriptor 1 both point at stderr, so
    nothing a library prints (litellm's notices, llama.cpp's C-level logs) can corrupt ``--json``
    output. ``write()`` reaches the real stdout.
    """

    def __enter__(self) -> DataChannel:
        self._py_stdout = sys.stdout
        self._saved_fd: int | None = None
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            fd = None
        if fd == 1:
            sys.stdout.flush()
            self._saved_fd = os.dup(1)
            os.dup2(2, 1)
        sys.stdout = sys.stderr
        return self

    def write(self, text: str) -> None:
        if self._saved_fd is not None:
            data = text.encode("utf-8")
            while data:
                written = os.write(self._saved_fd, data)
                data = data[written:]
        else:
            self._py_stdout.write(text)
            self._py_stdout.flush()

    def __exit__(self, *exc: Any) -> None:
        sys.stdout = self._py_stdout
        if self._saved_fd is not None:
            sys.stderr.flush()
            os.dup2(self._saved_fd, 1)
            os.close(self._saved_fd)
            self._saved_fd = None


def print_inspection(console: Console, report: Any) -> None:
    colors = {"fail": "red", "warn": "yellow", "pass": "green", "skip": "bright_black"}
    order = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}
    table = Table(title=f"inspect-rewards · {report.spec['name']} · {report.source}, {report.rows} rows",
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


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_summary(console: Console, report: EvalReport) -> None:
    s = report.summary
    table = Table(title=f"{report.kind} · {report.spec.name} · {report.spec.model}",
                  title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("score")
    table.add_column("weight", justify="right")
    table.add_column("mean", justify="right")
    table.add_column("± stderr", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("min", justify="right")
    table.add_column("max", justify="right")

    def ci(st: dict) -> str:
        bounds = st.get("ci95")
        return f"{bounds[0]:.3f}-{bounds[1]:.3f}" if bounds else "-"

    total = report.stats.get("reward") or {}
    table.add_row("[bold]reward[/bold]", "", f"[bold]{_fmt(s.reward)}[/bold]",
                  _fmt(total.get("stderr")), ci(total), _fmt(total.get("min")), _fmt(total.get("max")))
    for section in ("rewards", "metrics"):
        for name, st in (report.stats.get(section) or {}).items():
            if section == "rewards":
                kind = f"{report.weights.get(name, 1.0):g}"
            else:
                kind = "metric" if "mean" in st else "run metric"
            value = st["mean"] if "mean" in st else st.get("value")
            table.add_row(f"  {name}", kind, _fmt(value), _fmt(st.get("stderr")), ci(st),
                          _fmt(st.get("min")), _fmt(st.get("max")))
    console.print(table)
    parts = [f"{s.count} rows", f"{s.errors} errors"]
    if s.skipped:
        parts.append(f"{s.skipped} invalid lines skipped")
    if report.usage is not None:
        parts.append(f"{report.usage.requests} requests, {report.usage.cached_rows} rows from cache")
        if report.usage.cost_usd:
            parts.append(f"${report.usage.cost_usd:.4g}")
    parts.append(f"{report.wall_time_s:.1f} s")
    console.print(" · ".join(parts))
    for warning in report.warnings[:5]:
        console.print(f"[yellow]warning:[/yellow] {warning}", markup=True, highlight=False)
    for err in report.errors[:3]:
        console.print(f"[yellow]row {err['index']} (line {err['line']}):[/yellow] {err['error']}",
                      markup=True, highlight=False)
    for t in report.thresholds:
        mark = "[green]pass[/green]" if t.passed else "[red]FAIL[/red]"
        op = "<=" if t.kind == "max_error_rate" else ">="
        console.print(f"threshold {t.name}: {_fmt(t.value)} {op} {t.threshold:g} {mark}")
    if report.outputs:
        console.print(f"wrote {', '.join(report.outputs.values())}")
