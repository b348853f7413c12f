"""The report layer: every report rewardctl writes (eval, score, merge, optimize, inspect) is
rendered here, to JSON, Markdown and HTML, and written atomically. Runs build typed reports
(rewardctl.records); they never render or write them.

Importing the package loads the eval report's renderers (eval, score and merge use them). The
other kinds' modules (compare, inspect, optimize) load on first use: one of their names below,
or ``render`` given one of their reports. Their records cost more start-up time than eval's whole
report layer, and a cached eval needs none of them."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from rewardctl.io import atomic_write_text
from rewardctl.records.eval import EvalReport
from rewardctl.report import eval as _eval  # noqa: F401  (registers the eval renderers)
from rewardctl.report.eval import print_summary
from rewardctl.report.render import FORMATS, render_json, renders
from rewardctl.report.render import render as render_registered

__all__ = ["FORMATS", "print_compare", "print_inspection", "print_summary", "render", "render_json", "renders",
           "verdict_line", "write_compare_outputs", "write_eval_outputs", "write_inspect_outputs",
           "write_optimize_outputs"]

# File name of each format, for reports written to a folder.
FILE_NAMES = {"json": "report.json", "markdown": "report.md", "html": "report.html"}


# The key each written file has in a report's ``outputs``.
OUTPUT_KEYS = {"json": "report", "markdown": "markdown", "html": "html"}

# The other kinds' names this package exports, by the module that defines them.
_ON_FIRST_USE = {"print_compare": "compare", "verdict_line": "compare", "write_compare_outputs": "compare",
                 "print_inspection": "inspect", "write_inspect_outputs": "inspect",
                 "write_optimize_outputs": "optimize"}


def _other_kinds() -> dict[str, ModuleType]:
    """The compare, inspect and optimize report modules (importing one registers its renderers)."""
    # Start-up time: their records (and compare's statistics, JUnit's XML) are not eval's.
    from rewardctl.report import compare, inspect, optimize

    return {"compare": compare, "inspect": inspect, "optimize": optimize}


def __getattr__(name: str) -> Any:
    """``print_compare``, ``write_optimize_outputs``...: the other kinds' functions (PEP 562)."""
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_other_kinds()[_ON_FIRST_USE[name]], name)


def render(report: BaseModel, fmt: str) -> str:
    """``report`` as text in ``fmt`` (json, markdown or html), by the renderer of its type."""
    if not isinstance(report, EvalReport):
        _other_kinds()
    return render_registered(report, fmt)


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
