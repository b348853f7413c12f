"""Rendering of optimize reports: Markdown (report.md, also printed on stderr), HTML, and the
learning-curve and KL plots (PNG)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rewardctl.io import atomic_write_bytes, atomic_write_text
from rewardctl.records.optimize import OptimizeReport
from rewardctl.report.html import markdown_to_html, page
from rewardctl.report.render import render_json, renders


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ci(ci95: list[float] | None) -> str:
    return f"{ci95[0]:+.3f} to {ci95[1]:+.3f}" if ci95 else "n/a"


def _comparisons(report: OptimizeReport) -> list[str]:
    lines = ["| | initial program | best state | difference | 95% CI | rows |", "|---|---|---|---|---|---|"]
    for label, cmp in (("validation", report.validation), ("test", report.test)):
        if cmp is not None:
            ci = _ci(cmp.ci95)
            diff = "n/a" if cmp.difference is None else f"{cmp.difference:+.3f}"
            lines.append(f"| {label} | {_fmt(cmp.baseline)} | {_fmt(cmp.optimized)} | {diff} | {ci} | {cmp.rows} |")
    scores = (report.test or report.validation).scores
    if scores:
        label = "test" if report.test is not None else "validation"
        lines += ["", f"| score ({label}) | initial program | best state |", "|---|---|---|"]
        lines += [f"| {name} | {_fmt(v.baseline)} | {_fmt(v.optimized)} |" for name, v in scores.items()]
    return lines


def _baselines(report: OptimizeReport) -> list[str]:
    """Each simple baseline beside the best state, on the held-out split when there is one."""
    if not report.baselines:
        return []
    split = "test" if report.test is not None else "validation"
    lines = ["", f"| baseline | demos | validation | {split} | best − baseline ({split}) | 95% CI |",
             "|---|---|---|---|---|---|"]
    for b in report.baselines:
        cmp = b.test if b.test is not None else b.validation
        diff = "n/a" if cmp.difference is None else f"{cmp.difference:+.3f}"
        lines.append(f"| {b.name} | {b.demos} | {_fmt(b.val_objective)} | {_fmt(cmp.baseline)} | {diff} | "
                     f"{_ci(cmp.ci95)} |")
    best = report.baselines[0].test or report.baselines[0].validation
    lines.append(f"| **best state** | {report.best.demos} | {_fmt(report.best.val_objective)} | "
                 f"{_fmt(best.optimized)} | | |")
    return lines


def _selection_line(report: OptimizeReport) -> str:
    sel = report.selection
    assert sel is not None
    if sel.candidate_mean is None:
        return f"Selection: no searched candidate; the best baseline, {sel.baseline}, is kept."
    gain = "n/a" if sel.difference is None else f"{sel.difference:+.3f} (95% CI {_ci(sel.ci95)})"
    kept = ("the candidate replaces it" if sel.chose == "candidate"
            else "not a confident gain, so the baseline is kept")
    return (f"Selection on {sel.rows} validation and training rows: the best searched candidate "
            f"({sel.candidate_demos} demo{'' if sel.candidate_demos == 1 else 's'}) {_fmt(sel.candidate_mean)} vs "
            f"the best baseline, {sel.baseline}, "
            f"{_fmt(sel.baseline_mean)}: {gain}; {kept}.")


def _history(report: OptimizeReport) -> list[str]:
    lines = ["", "| epoch | train reward | val reward | val objective | best objective | candidates | demos |",
             "|---|---|---|---|---|---|---|"]
    for row in report.history:
        lines.append(f"| {row.epoch} | {_fmt(row.train_reward)} | {_fmt(row.val_reward)} | "
                     f"{_fmt(row.val_objective)} | {_fmt(row.best_val_objective)} | {row.candidates} | "
                     f"{row.demos} |")
    kl_steps = [s for s in report.steps if s.kl is not None]
    if kl_steps:
        lines += ["", "| step | score | kl | beta | non-score reward | objective | entropy |",
                  "|---|---|---|---|---|---|---|"]
        for s in kl_steps:
            flag = "" if s.kl_in_band is not False else " ⚠"
            lines.append(f"| {s.epoch}.{s.step} | {s.score:.3f} | {s.kl:.2f}{flag} | {s.beta:.3f} | "
                         f"{s.non_score_reward:.3f} | {s.objective:.3f} | {s.entropy:.2f} |")
    return lines


def _kl_line(report: OptimizeReport) -> str:
    kl = report.kl_to_reference
    assert kl is not None
    if kl.identical:
        return "KL(best || reference) is 0: the best state is the reference (nothing sampled)."
    where = ""
    if kl.rows is not None:
        of = f" of {kl.val_rows}" if kl.val_rows is not None and kl.val_rows != kl.rows else ""
        where = f" on {kl.rows}{of} validation rows"
    took = f", {kl.seconds:.1f} s" if kl.seconds is not None else ""
    return (f"KL(best || reference) from {kl.samples} sampled outputs{where}{took}: k1 {kl.k1:.2f} ± "
            f"{kl.k1_stderr:.2f}, k3 {kl.k3:.2f} ± {kl.k3_stderr:.2f} nats (± one standard error).")


@renders(OptimizeReport, "markdown")
def render_markdown(report: OptimizeReport) -> str:
    lines = [f"## rewardctl optimize: {report.spec.name} ({report.optimizer['type']})", ""]
    if report.verdict is not None:
        lines += [report.verdict.text, ""]
    if report.selection is not None:
        lines += [_selection_line(report), ""]
    lines += [*_comparisons(report), *_baselines(report)]
    best = report.best
    resumed = ""
    if report.resumed_wall_time_s is not None:
        resumed = (f" ({report.resumed_wall_time_s:.1f} s of it before --resume, which continued from "
                   f"epoch {report.resumed_from_epoch})")
    lines += ["", f"Best: epoch {best.epoch}, {best.demos} demos, validation objective "
              f"{_fmt(best.val_reward)}. {len(report.history)} epochs"
              f"{' (stopped early)' if report.early_stopped else ''}"
              f"{' (the budget of max_calls was spent)' if report.budget_exhausted else ''}, "
              f"{report.calls} model calls in the search, {report.wall_time_s:.1f} s{resumed}."]
    if report.kl_to_reference is not None:
        lines.append(_kl_line(report))
    lines += _history(report)
    for warning in report.warnings:
        lines.append(f"\nwarning: {warning}")
    return "\n".join(lines) + "\n"


@renders(OptimizeReport, "html")
def render_html(report: OptimizeReport) -> str:
    return page(f"rewardctl optimize: {report.spec.name}", markdown_to_html(render_markdown(report)))


def _pyplot() -> Any:
    # matplotlib costs start-up time that only a run writing plots needs.
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib is slow to import: only plots need it.
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def learning_curve_png(report: OptimizeReport) -> bytes:
    """Train and validation reward per epoch, with the baseline."""
    plt = _pyplot()
    epochs = [row.epoch for row in report.history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    if epochs:
        ax.plot(epochs, [row.train_reward for row in report.history], marker="o", label="train reward")
        ax.plot(epochs, [row.val_reward for row in report.history], marker="o", label="validation reward")
    if report.validation.baseline is not None:
        ax.axhline(report.validation.baseline, color="grey", linestyle="--", label="baseline (validation)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean reward")
    ax.set_title(f"{report.spec.name}: {report.optimizer['type']}")
    if epochs:
        ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return _png(fig)


def kl_curve_png(report: OptimizeReport) -> bytes:
    """Reward (of sampled outputs) and KL to the reference for every step, with the [0, 10] band."""
    plt = _pyplot()
    steps = [s for s in report.steps if s.kl is not None]
    x = list(range(1, len(steps) + 1))
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=110)
    ax.plot(x, [s.score for s in steps], marker="o", color="tab:blue", label="reward (sampled)")
    ax.plot(x, [s.objective for s in steps], marker=".", color="tab:green", label="objective")
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    other = ax.twinx()
    other.plot(x, [s.kl for s in steps], marker="s", color="tab:red", label="KL (nats)")
    other.axhspan(0, 10, color="tab:red", alpha=0.06)
    other.set_ylabel("KL to reference (nats)")
    handles = ax.get_legend_handles_labels()[0] + other.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + other.get_legend_handles_labels()[1]
    ax.legend(handles, labels, loc="best", fontsize="small")
    ax.set_title(f"{report.spec.name}: reward and KL per step")
    fig.tight_layout()
    return _png(fig)


def write_optimize_outputs(out_dir: str | Path, report: OptimizeReport) -> None:
    """report.json, report.md, learning_curve.png (and kl_curve.png for the kl optimizer), each
    written atomically and listed in the report's ``outputs``."""
    out = Path(out_dir)
    report.outputs = {"best": str(out / "best.json"), "report": str(out / "report.json"),
                      "markdown": str(out / "report.md"), "learning_curve": str(out / "learning_curve.png")}
    plots = {"learning_curve.png": learning_curve_png(report)}
    if any(step.kl is not None for step in report.steps):
        plots["kl_curve.png"] = kl_curve_png(report)
        report.outputs["kl_curve"] = str(out / "kl_curve.png")
    atomic_write_text(out / "report.md", render_markdown(report))
    for name, data in plots.items():
        atomic_write_bytes(out / name, data)
    atomic_write_text(out / "report.json", render_json(report))
