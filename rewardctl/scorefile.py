"""``rewardctl score``: re-score predictions that already exist, without calling the program's model.

Input: JSONL, one prediction per line with ``y_true`` and ``y_pred`` objects and optional
``inputs`` (eval's predictions.jsonl is one). ``y_pred: null`` or ``status: "error"`` is a failed
prediction. The file is streamed in batches: memory stays flat however long it is. Rewards whose
minmax/zscore normalization has no parameters are fitted on the file first (a streamed pass that
computes their raw values), and the fitted parameters go into the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rewardctl.datamodel import DataModel, ValueProblem, check_fields
from rewardctl.dataset import ReadStats, count_lines, iter_json_objects
from rewardctl.errors import InputError
from rewardctl.io import JsonlWriter
from rewardctl.options import ScoreOptions
from rewardctl.progress import Progress, ProgressCallback
from rewardctl.records.eval import EvalReport
from rewardctl.records.prediction import PredictionRecord
from rewardctl.results import build_report
from rewardctl.rewards.base import fit_normalization
from rewardctl.scoring import RunStats, Scorer
from rewardctl.spec import ProgramSpec, build_scorer

BATCH = 256


@dataclass(slots=True)
class PredictionRow:
    index: int  # position among the file's valid lines
    line: int
    record: PredictionRecord

    @property
    def y_true(self) -> dict[str, Any]:
        return self.record.y_true or {}

    @property
    def y_pred(self) -> dict[str, Any] | None:
        """None for a failed prediction (``y_pred: null`` or ``status: "error"``)."""
        return self.record.y_pred if self.record.ok else None

    @property
    def inputs(self) -> dict[str, Any] | None:
        return self.record.inputs


def _check_line(obj: dict[str, Any], outputs: DataModel, required: dict[str, str]) -> PredictionRecord:
    """A predictions line as a record, its reference checked against the outputs data model."""
    y_true = obj.get("y_true")
    if not isinstance(y_true, dict):
        raise ValueProblem("y_true", "expected an object (the reference outputs)")
    for name, reader in required.items():
        if name not in y_true:
            raise ValueProblem(f"y_true.{name}", f"missing (read by '{reader}')")
    present = {n: s for n, s in outputs.items() if n in y_true}
    check_fields(y_true, present, prefix="y_true", lax=False)
    for key, what in (("y_pred", "an object or null"), ("inputs", "an object or null")):
        if obj.get(key) is not None and not isinstance(obj[key], dict):
            raise ValueProblem(key, f"expected {what}")
    try:
        return PredictionRecord.model_validate(obj)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ValueProblem(".".join(str(p) for p in error["loc"]), error["msg"]) from None


def read_predictions(path: str, outputs: DataModel, required: dict[str, str], *,
                     skip_invalid: bool = False, limit: int | None = None,
                     stats: ReadStats | None = None) -> Iterator[PredictionRow]:
    stats = stats if stats is not None else ReadStats()
    label = "<stdin>" if path == "-" else path
    if limit is not None and limit <= 0:
        return
    for line_no, obj in iter_json_objects(path, skip_invalid=skip_invalid, stats=stats):
        try:
            record = _check_line(obj, outputs, required)
        except ValueProblem as problem:
            if not skip_invalid:
                raise InputError(problem.message, path=label, line=line_no, field=problem.path) from None
            stats.skip(f"{label}:{line_no}: {problem}")
            continue
        yield PredictionRow(stats.rows, line_no, record)
        stats.rows += 1
        if limit is not None and stats.rows >= limit:
            return


def _batches(rows: Iterator[PredictionRow], size: int = BATCH) -> Iterator[list[PredictionRow]]:
    batch: list[PredictionRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _fit_missing(scorer: Scorer, options: ScoreOptions, outputs: DataModel,
                       required: dict[str, str]) -> dict[str, dict[str, float | str]]:
    """Fit minmax/zscore parameters that the spec leaves out, on this file's raw values."""
    targets = [(s, parents) for s, parents in scorer.walk()
               if s.config.normalization is not None and not s.config.normalization.fitted]
    if not targets:
        return {}
    if options.predictions == "-":
        raise InputError("fitting normalization parameters needs a file, not stdin (it reads it twice)")
    raw: dict[int, list[float]] = {id(s): [] for s, _ in targets}
    rows = read_predictions(options.predictions, outputs, required, skip_invalid=options.skip_invalid,
                            limit=options.limit)
    for batch in _batches(rows):
        for score, parents in targets:
            y_trues = [r.y_true for r in batch]
            y_preds = [r.y_pred for r in batch]
            for parent in parents:  # a part sees what its composite or ensemble passes it
                y_trues = [parent.apply_masks(t) or {} for t in y_trues]
                y_preds = [None if p is None else parent.apply_masks(p) or {} for p in y_preds]
            values = await score.raw_scores(y_trues, y_preds, [r.inputs for r in batch])
            raw[id(score)].extend(v for v in values if v is not None)
    fitted = {}
    fitted_objects = set()
    for score, parents in targets:
        params = fit_normalization(score.config.normalization.method, raw[id(score)])
        score.set_normalization(params)
        fitted[".".join([*(p.name for p in parents), score.name])] = params.model_dump(exclude_none=True)
        fitted_objects.add(id(score))
    for score in scorer.all_scores():  # ensembles keep their members' scale in a sidecar file
        if any(id(part) in fitted_objects for part in score.parts):
            score.write_sidecar()
    return fitted


async def score_predictions(spec: ProgramSpec, options: ScoreOptions, *, spec_path: str | None = None,
                            on_progress: ProgressCallback | None = None,
                            write_report: Callable[[EvalReport], None] | None = None) -> EvalReport:
    started = time.perf_counter()
    scorer = build_scorer(spec, spec_path=spec_path, use_cache=options.use_cache,
                              cache_dir=options.cache_dir)
    required = scorer.required_outputs(spec.outputs)
    total = count_lines(options.predictions, options.limit)
    if on_progress is not None:
        on_progress(Progress("score", 0, total))
    fitted = await _fit_missing(scorer, options, spec.outputs, required)
    scorer.check_ready()

    read_stats = ReadStats()
    stats = RunStats(scorer)
    label = "<stdin>" if options.predictions == "-" else options.predictions
    out_dir = Path(options.out_dir) if options.out_dir else None
    writer = JsonlWriter(out_dir / "predictions.jsonl") if out_dir else None
    try:
        rows = read_predictions(options.predictions, spec.outputs, required,
                                skip_invalid=options.skip_invalid, limit=options.limit, stats=read_stats)
        for batch in _batches(rows):
            scores = await scorer.score([r.y_true for r in batch], [r.y_pred for r in batch],
                                        [r.inputs for r in batch], where=[(label, r.line) for r in batch])
            for row, row_scores in zip(batch, scores, strict=True):
                record = row.record
                if record.provider_failed:
                    row_scores = scorer.unscored()  # the provider failed it: not a quality drop
                record.set_scores(row_scores.rewards, row_scores.metrics, row_scores.reward, row_scores.components,
                                  row_scores.ungraded)
                if writer is not None:
                    writer.write_line(record.to_line())
                stats.add(record, index=row.index, line=row.line, calls=False)
            if writer is not None:
                writer.flush()
            if on_progress is not None:
                on_progress(Progress("score", stats.rows, total, stats.total.running_mean))
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    outputs: dict[str, str] = {}
    if writer is not None and out_dir is not None:
        writer.commit()
        outputs = {"predictions": str(writer.path)}
    report = build_report(kind="score", spec=spec, spec_path=spec_path, data_path=options.predictions,
                          stats=stats, read_stats=read_stats, scorer=scorer,
                          wall=time.perf_counter() - started, limit=options.limit,
                          fail_under=options.fail_under, usage=None, outputs=outputs,
                          normalization=fitted)
    if write_report is not None:
        write_report(report)
    return report
