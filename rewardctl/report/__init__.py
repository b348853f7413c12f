"""The report layer: every report rewardctl writes (eval, score, merge, optimize, inspect) is
rendered here, to JSON, Markdown and HTML, and written atomically. Runs build typed reports
(rewardctl.records); they never render or write them."""

from __future__ import annotations

from pathlib import Path

from rewardctl.io import atomic_write_text
from rewardctl.records.eval import EvalReport
from rewardctl.report import eval as _eval  # noqa: F401  (registers the eval renderers)
from rewardctl.report.compare import print_compare, verdict_line, write_compare_outputs
from rewardctl.report.eval import print_summary
from rewardctl.report.inspect import print_inspection, write_inspect_outputs
from rewardctl.report.optimize import write_optimize_outputs
from rewardctl.report.render import FORMATS, render, render_json, renders

__all__ = ["FORMATS", "print_compare", "print_inspection", "print_summary", "render", "render_json", "renders",
           "verdict_line", "write_compare_outputs", "write_eval_outputs", "write_inspect_outputs",
           "write_optimize_outputs"]

# File name of each format, for reports written to a folder.
FILE_NAMES = {"json": "report.json", "markdown": "report.md", "html": "report.html"}


# The key each written file has in a report's ``outputs``.
OUTPUT_KEYS = {"json": "report", "markdown": "markdown", "html": "html"}


def write_eval_outputs(out_dir: str | Path, report: EvalReport,
                       formats: tuple[str, ...] = ("json", "markdown", "html")) -> None:
    """report.json, report.md and report.html (eval, score and merge), each written atomically,
    and listed in the report's ``outputs``. report.html is interactive and self-contained: its
    rows are read back from the predictions file the report names (``outputs['predictions']``)."""
    out = Path(out_dir)
    for fmt in formats:
        report.outputs[OUTPUT_KEYS[fmt]] = str(out / FILE_NAMES[fmt])
    for fmt in formats:
        atomic_write_text(out / FILE_NAMES[fmt], render(report, fmt))
