"""``rewardctl compare``: two runs (eval, score or merge output folders), paired row by row.

Rows are paired by a key: a hash of the input fields by default, so a reordered or resharded
dataset pairs correctly, or a field the user names. A row's --repeat samples are averaged. For
the total reward and every reward and per-example metric, the paired difference gets a seeded
bootstrap CI and a paired test: exact McNemar when the score is pass/fail (every value 0 or 1),
the Wilcoxon signed-rank test otherwise. The gate reads the CI: a gated score regresses when the
CI's upper end is below -margin.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist, pstdev

from pydantic import ValidationError

from rewardctl.errors import InputError
from rewardctl.metrics.stats import bootstrap_ci
from rewardctl.options import CompareOptions
from rewardctl.records.compare import (
    CompareReport,
    FlippedRow,
    OneSideRow,
    RowSide,
    RunInfo,
    ScoreComparison,
)
from rewardctl.records.eval import EvalReport, SeriesStats
from rewardctl.records.prediction import PredictionRecord

TOTAL = "reward"
ONE_SIDE_LISTED = 20
Z_POWER = 0.8416212335729143  # the normal quantile of 80% power


@dataclass(slots=True)
class RowAgg:
    """The lines of one key on one side: its first line (kept as the JSON text, read again when a
    report shows it: a million rows would not fit as records), and each score's mean over its
    samples (None when a sample has no value: a provider failure or an ungraded row leaves the
    row out)."""

    text: bytes
    line: int
    index: int | None
    ok: bool  # the first line's prediction did not fail
    reference: int  # a hash of y_true: is it the same on both sides?
    sums: dict[str, float] = field(default_factory=dict)
    missing: set[str] | None = None  # made on the first missing value: most rows have none
    samples: int = 0

    @property
    def first(self) -> PredictionRecord:
        record = PredictionRecord.model_validate_json(self.text)
        if record.line is None:
            record.line = self.line
        return record

    def add(self, record: PredictionRecord, names: list[tuple[str, str]]) -> None:
        self.samples += 1
        for group, name in names:
            value = score_value(record, group, name)
            if value is None:
                self.missing = (self.missing or set()) | {name}
            else:
                self.sums[name] = self.sums.get(name, 0.0) + value

    def mean(self, name: str) -> float | None:
        if (self.missing and name in self.missing) or name not in self.sums:
            return None
        return self.sums[name] / self.samples


@dataclass
class Run:
    folder: Path
    report: EvalReport
    rows: dict[str, RowAgg]
    lines: int
    repeated_inputs: int = 0  # keys with several lines that are not --repeat samples


@dataclass
class PairedRow:
    """A row found on both sides, with both sides' lines aggregated (for the reports' row tables)."""

    key: str
    base: RowAgg
    new: RowAgg


def score_value(record: PredictionRecord, group: str, name: str) -> float | None:
    if group == TOTAL:
        return record.reward
    return (record.rewards if group == "rewards" else record.metrics).get(name)


def score_names(report: EvalReport) -> list[tuple[str, str]]:
    """(group, name) of every per-row score: the total reward, each reward, each per-example metric."""
    names = [(TOTAL, TOTAL)]
    names += [("rewards", n) for n in report.stats.rewards]
    names += [("metrics", n) for n, st in report.stats.metrics.items() if isinstance(st, SeriesStats)]
    return names


def pass_threshold(report: EvalReport, group: str, name: str) -> float:
    st = report.stats.reward if group == TOTAL else getattr(report.stats, group).get(name)
    threshold = st.pass_threshold if isinstance(st, SeriesStats) else None
    return 0.5 if threshold is None else threshold


def row_key(record: PredictionRecord, key: str | None, path: str, line: int) -> str:
    """The pairing key: a hash of the inputs, or the value of the field ``key`` (the line's index
    or line, else looked up in the inputs, then y_true, then the dataset's other keys)."""
    if key is None:
        if record.inputs is None:
            raise InputError("the line has no 'inputs' to pair rows by: name a field with --key "
                             "(--key index pairs by the row's position in the dataset)", path=path, line=line)
        text = json.dumps(record.inputs, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]
    if key in ("index", "line") and getattr(record, key) is not None:
        return str(getattr(record, key))
    for source in (record.inputs, record.y_true, record.meta, record.model_extra):
        if source and key in source:
            value = source[key]
            return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    raise InputError(f"no field '{key}' in the line's inputs, y_true or other keys", path=path, line=line,
                     field="--key")


def load_report(folder: Path) -> EvalReport:
    path = folder / "report.json"
    if not folder.is_dir():
        raise InputError("no such folder (expected the --out folder of eval, score or merge)", path=str(folder))
    if not path.is_file():
        partial = (folder / "predictions.jsonl.partial").exists()
        why = " (the run was interrupted: finish it with eval --resume)" if partial else \
            " (expected the --out folder of eval, score or merge)"
        raise InputError(f"no report.json{why}", path=str(folder))
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise InputError(f"not JSON: {exc}", path=str(path)) from None
    if not isinstance(data, dict) or data.get("kind") not in ("eval", "score"):
        kind = data.get("kind") if isinstance(data, dict) else None
        raise InputError(f"a {kind or 'non-rewardctl'} report: compare reads those of eval, score and merge",
                         path=str(path))
    try:
        return EvalReport.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"not a rewardctl report: {str(exc).splitlines()[0]}", path=str(path)) from None


def _records(path: Path) -> Iterator[tuple[int, bytes, PredictionRecord]]:
    """(line number, its text, record) of each line, parsed and checked in one step (pydantic's JSON parser)."""
    with open(path, "rb") as lines:
        for line_no, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                yield line_no, raw, PredictionRecord.model_validate_json(raw)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"])
                raise InputError(f"not a prediction line: {error['msg']}" + (f" ({where})" if where else ""),
                                 path=str(path), line=line_no) from None


def load_run(folder: str, key: str | None) -> Run:
    root = Path(folder)
    report = load_report(root)
    predictions = root / "predictions.jsonl"
    if not predictions.is_file():
        raise InputError("no predictions.jsonl beside report.json", path=str(root))
    names = score_names(report)
    rows: dict[str, RowAgg] = {}
    lines = repeated = 0
    for line_no, raw, record in _records(predictions):
        k = row_key(record, key, str(predictions), line_no)
        agg = rows.get(k)
        if agg is None:
            reference = hash(json.dumps(record.y_true, sort_keys=True, ensure_ascii=False))
            agg = rows[k] = RowAgg(raw, record.line if record.line is not None else line_no, record.index,
                                   record.ok, reference)
        elif record.sample is None:
            repeated += 1
        agg.add(record, names)
        lines += 1
    return Run(root, report, rows, lines, repeated)


def run_info(run: Run) -> RunInfo:
    return RunInfo(path=str(run.folder), kind=run.report.kind, spec=run.report.spec, data=run.report.data,
                   lines=run.lines, rows=len(run.rows),
                   samples=max((a.samples for a in run.rows.values()), default=1),
                   created_at=run.report.created_at)


def differences(base: Run, new: Run) -> list[str]:
    """What differs between the runs, each side by side: never mixed silently."""
    b, n = base.report, new.report
    out = []
    for label, left, right in (("spec", b.spec.name, n.spec.name), ("model", b.spec.model, n.spec.model),
                               ("spec fingerprint", b.spec.fingerprint, n.spec.fingerprint),
                               ("dataset", b.data.path, n.data.path), ("rows", str(len(base.rows)), str(len(new.rows))),
                               ("shard", str(b.data.shard), str(n.data.shard)),
                               ("samples per row", str(run_info(base).samples), str(run_info(new).samples))):
        if left != right:
            out.append(f"{label}: {left} (base) vs {right} (new)")
    base_names, new_names = {x[1] for x in score_names(b)}, {x[1] for x in score_names(n)}
    for name in sorted(base_names - new_names):
        out.append(f"score '{name}' only in base: not compared")
    for name in sorted(new_names - base_names):
        out.append(f"score '{name}' only in new: not compared")
    return out


def paired_test(base: list[float], new: list[float], threshold: float) -> tuple[str, float]:
    """Exact McNemar on pass/fail when every value is 0 or 1; the Wilcoxon signed-rank test otherwise."""
    from scipy import stats  # scipy costs start-up time only compare needs

    if all(v in (0.0, 1.0) for v in base) and all(v in (0.0, 1.0) for v in new):
        worse = sum(1 for b, n in zip(base, new, strict=True) if b >= threshold > n)
        better = sum(1 for b, n in zip(base, new, strict=True) if n >= threshold > b)
        if worse + better == 0:
            return "mcnemar_exact", 1.0
        return "mcnemar_exact", float(stats.binomtest(worse, worse + better, 0.5).pvalue)
    diffs = [n - b for b, n in zip(base, new, strict=True)]
    if not any(diffs):
        return "wilcoxon", 1.0
    return "wilcoxon", float(stats.wilcoxon(diffs, zero_method="wilcox").pvalue)


def min_detectable_effect(base: list[float], new: list[float], alpha: float) -> float | None:
    """The |mean difference| these pairs detect with 80% power (normal approximation), from the
    spread of the paired differences; with no difference at all, from the spread of the scores."""
    n = len(base)
    if n < 2:
        return None
    diffs = [b - a for a, b in zip(base, new, strict=True)]
    spread = pstdev(diffs) or math.sqrt(pstdev(base) ** 2 + pstdev(new) ** 2)
    if spread == 0:  # every row the same on both sides: one changed row in n is the least change
        spread = math.sqrt(1 / n)
    z = NormalDist().inv_cdf(1 - alpha / 2) + Z_POWER
    return z * spread / math.sqrt(n)


def _verdict(diff: float | None, ci: tuple[float, float] | None, significant: bool, margin: float) -> tuple[str, bool]:
    """The verdict, and whether the gate sees a regression (the CI's upper end below -margin).
    A change is called when the CI and the paired test agree; 'borderline' when only one says so."""
    if diff is None or ci is None:
        return "no pairs", False
    regression = ci[1] < -margin
    excludes_zero = ci[1] < 0 or ci[0] > 0
    if excludes_zero and significant:
        return ("regression" if diff < 0 else "improvement"), regression
    if excludes_zero or significant:
        return "borderline", regression
    return "no significant change", regression


def compare_score(group: str, name: str, base: Run, new: Run, keys: list[str], options: CompareOptions,
                  gated: bool) -> tuple[ScoreComparison, list[tuple[str, str]]]:
    """One score's comparison, and the keys that flipped ((key, direction))."""
    threshold = pass_threshold(new.report, group, name)
    pairs: list[tuple[str, float, float]] = []
    for k in keys:
        b, n = base.rows[k].mean(name), new.rows[k].mean(name)
        if b is not None and n is not None:
            pairs.append((k, b, n))
    bv, nv = [p[1] for p in pairs], [p[2] for p in pairs]
    flips = [(k, "pass -> fail" if b >= threshold else "fail -> pass")
             for k, b, n in pairs if (b >= threshold) != (n >= threshold)]
    result = ScoreComparison(name=name, group=group, pairs=len(pairs), unpaired=len(keys) - len(pairs),
                             pass_threshold=threshold, base_mean=None, new_mean=None, diff=None,
                             gated=gated, verdict="no pairs",
                             pass_to_fail=sum(1 for _, d in flips if d == "pass -> fail"),
                             fail_to_pass=sum(1 for _, d in flips if d == "fail -> pass"))
    if not pairs:
        return result, flips
    diffs = [n - b for b, n in zip(bv, nv, strict=True)]
    lo, hi, method = bootstrap_ci(diffs, seed=options.seed)
    test, p = paired_test(bv, nv, threshold)
    result.base_mean, result.new_mean = math.fsum(bv) / len(bv), math.fsum(nv) / len(nv)
    result.base_pass_rate = sum(v >= threshold for v in bv) / len(bv)
    result.new_pass_rate = sum(v >= threshold for v in nv) / len(nv)
    result.diff, result.ci95, result.ci_method = math.fsum(diffs) / len(diffs), [lo, hi], method
    result.test, result.p_value, result.significant = test, p, p < options.alpha
    result.min_detectable_effect = min_detectable_effect(bv, nv, options.alpha)
    result.verdict, regression = _verdict(result.diff, (lo, hi), result.significant, options.margin or 0.0)
    result.regression = regression and gated
    return result, flips


def gated_names(base: Run, new: Run) -> set[str]:
    """The total reward, and the rewards and metrics either spec's thresholds name."""
    names = {TOTAL}
    for report in (base.report, new.report):
        names |= {t.name for t in report.thresholds if t.kind in ("rewards", "metrics")}
    return names


def flipped_row(key: str, score: str, direction: str, base: Run, new: Run) -> FlippedRow:
    def side(agg: RowAgg) -> RowSide:
        r = agg.first
        return RowSide(index=r.index, line=r.line, value=agg.mean(score), y_pred=r.y_pred, error=r.error,
                       samples=agg.samples)

    b, n = base.rows[key], new.rows[key]
    first = n.first
    return FlippedRow(key=key, score=score, direction=direction, inputs=first.inputs, y_true=first.y_true,
                      base=side(b), new=side(n))


def one_side_rows(base: Run, new: Run) -> tuple[int, int, list[OneSideRow]]:
    only_base = [k for k in base.rows if k not in new.rows]
    only_new = [k for k in new.rows if k not in base.rows]
    def row(key: str, side: str, run: Run) -> OneSideRow:
        first = run.rows[key].first
        return OneSideRow(key=key, side=side, index=first.index, line=first.line, inputs=first.inputs)

    listed = [row(k, "base", base) for k in only_base[:ONE_SIDE_LISTED // 2]]
    listed += [row(k, "new", new) for k in only_new[:ONE_SIDE_LISTED - len(listed)]]
    return len(only_base), len(only_new), listed


def _warnings(base: Run, new: Run, report: CompareReport) -> list[str]:
    out = []
    for label, run in (("base", base), ("new", new)):
        if run.repeated_inputs:
            out.append(f"{label}: {run.repeated_inputs} lines repeat an earlier row's key: their scores are "
                       "averaged with it (name a unique field with --key to pair them one by one)")
        failed = run.report.summary.errors
        if failed:
            out.append(f"{label}: {failed} rows failed (their errors are in its predictions.jsonl)")
    if report.only_base or report.only_new:
        out.append(f"{report.only_base} rows only in base and {report.only_new} only in new: left out of the pairs")
    if report.reference_changed:
        out.append(f"{report.reference_changed} paired rows have a different y_true on each side")
    total = report.score(TOTAL)
    if total is not None and total.unpaired:
        out.append(f"{total.unpaired} paired rows have no total reward on one side (a provider failure or an "
                   "ungraded row): left out of the pairs")
    return out


def compare_runs(options: CompareOptions) -> tuple[CompareReport, list[PairedRow]]:
    """The report, and every paired row (new's order) for the reports that show them all."""
    base, new = load_run(options.base, options.key), load_run(options.new, options.key)
    keys = [k for k in new.rows if k in base.rows]
    base_names = {x for x in score_names(base.report)}
    gated = gated_names(base, new)
    scores, flips = [], []
    for group, name in score_names(new.report):
        if (group, name) not in base_names:
            continue
        result, flipped = compare_score(group, name, base, new, keys, options, name in gated)
        scores.append(result)
        flips += [(k, name, d) for k, d in flipped]
    only_base, only_new, listed = one_side_rows(base, new)
    report = CompareReport(
        base=run_info(base), new=run_info(new), key=options.key or "inputs", seed=options.seed,
        alpha=options.alpha, margin=options.margin, differences=differences(base, new), paired=len(keys),
        only_base=only_base, only_new=only_new, one_side_rows=listed,
        reference_changed=sum(1 for k in keys if base.rows[k].reference != new.rows[k].reference),
        scores=scores, flips=[flipped_row(k, s, d, base, new) for k, s, d in flips[:options.max_flips]],
        flips_left_out=max(0, len(flips) - options.max_flips))
    report.regression = any(s.regression for s in scores)
    total = report.score(TOTAL)
    nothing = total is None or total.pairs == 0  # a gate that saw no pair cannot vouch for anything
    report.passed = options.margin is None or not (report.regression or nothing)
    report.warnings = _warnings(base, new, report)
    return report, [PairedRow(k, base.rows[k], new.rows[k]) for k in keys]


def run_compare(options: CompareOptions,
                write_report: Callable[[CompareReport, list[PairedRow]], None] | None = None) -> CompareReport:
    """Compare, then hand the report and the paired rows to ``write_report`` (the command line's
    writer of report files and JUnit) when given."""
    report, pairs = compare_runs(options)
    if write_report is not None:
        write_report(report, pairs)
    return report
