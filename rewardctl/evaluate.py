"""``rewardctl eval``: run a program over a dataset, score every output, write predictions and a report.

The pipeline streams: rows are read lazily, at most ``concurrency`` requests are in flight and
at most a bounded window of rows is held in memory; results are written in input order, scored
in batches (so batched rewards such as embeddings batch), and flushed as they go. Every input row
appears in predictions.jsonl, failed ones with their error.

The run is split the way inspect_ai splits one: generate (:class:`EvalRun` ``_predict``), score
and record (``_flush``), results (``_finish``, through rewardctl.results); rendering and writing
the report belong to the report layer, which the caller passes in as ``write_report``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewardctl.dataset import ReadStats, Row, count_lines, read_rows
from rewardctl.errors import InputError, RunError, warn
from rewardctl.io import JsonlWriter, atomic_write_bytes
from rewardctl.lm import served
from rewardctl.lm.cache import ResponseCache
from rewardctl.lm.calllog import CallLog, set_row
from rewardctl.lm.client import LMClient
from rewardctl.lm.workers import WorkerDied, WorkerPool
from rewardctl.options import EvalOptions
from rewardctl.partial import compact_partial, load_partial, read_usage
from rewardctl.paths import responses_dir
from rewardctl.program import Prediction, Program
from rewardctl.progress import Progress, ProgressCallback
from rewardctl.records.eval import EvalReport, Usage
from rewardctl.records.prediction import PredictionRecord, TokenCounts
from rewardctl.results import build_report
from rewardctl.scoring import RowScores, RunStats, Scorer
from rewardctl.shards import in_shard
from rewardctl.spec import ProgramSpec, build_scorer
from rewardctl.state import ProgramState

SCORE_BATCH = 64
FLUSH_SECONDS = 0.25
AUTO_WORKER_ROWS = 1000  # below this, starting workers (each imports litellm) costs more than it saves
INTERRUPTED = "not run: interrupted"
OUTAGE_ROWS = 3  # rows in a row that could not reach the server: an outage, and the run stops
USAGE_FILE = "usage.partial.json"  # an unfinished run's usage so far, for --resume to add to

ReportWriter = Callable[[EvalReport], None]


def lm_workers(spec: ProgramSpec, options: EvalOptions, total: int | None) -> int:
    """Worker processes for litellm calls. Auto: one per core (at most 4) for a remote model at
    concurrency 32 or more over 1,000 rows or more, where litellm's per-call CPU is the limit;
    none otherwise, and never for local/ models (they run in this process). None either for chat
    calls to an OpenAI-compatible server (rewardctl.lm.served): there a call costs about 0.3 ms
    of CPU, no more than passing it to a worker and back, and each worker holds ~170 MB."""
    if spec.model.is_local:
        return 0
    if options.workers is not None:
        return options.workers
    if served.takes(spec.model):
        return 0
    cores = os.cpu_count() or 1
    big = total is not None and total * max(1, options.repeat) >= AUTO_WORKER_ROWS
    return min(cores, 4) if cores >= 2 and options.concurrency >= 32 and big else 0


def to_record(row: Row, pred: Prediction, scores: RowScores, sample: int | None, priced: bool) -> PredictionRecord:
    """The predictions.jsonl line of one prediction."""
    optional: dict[str, Any] = {}  # given only when they hold something (see PredictionRecord.to_line)
    if sample is not None:
        optional["sample"] = sample
    if scores.components:
        optional["components"] = scores.components
    if pred.raw is not None:
        optional["raw"] = pred.raw
    if row.meta:
        optional["meta"] = row.meta
    if row.file is not None:
        optional["file"] = row.file
    if pred.error_kind is not None:
        optional["error_kind"] = pred.error_kind
    if scores.ungraded:
        optional["ungraded"] = scores.ungraded
    given = dict(
        index=row.index, line=row.line, inputs=row.inputs, y_true=row.y_true, y_pred=pred.y_pred,
        rewards=scores.rewards, metrics=scores.metrics, reward=scores.reward,
        status="ok" if pred.ok else "error", error=pred.error, latency_s=round(pred.latency_s, 4),
        tokens=TokenCounts.model_construct(prompt=pred.prompt_tokens, completion=pred.completion_tokens),
        cost_usd=round(pred.cost_usd, 12) if priced else None, cached=pred.cached, calls=pred.calls,
        **optional)
    # Built from values this process made and typed, so not validated again (a hot path); every
    # field is passed, the ones not given at their defaults, so that pydantic does not make each
    # default again (a third of the record's cost), and the given ones are its fields set.
    return PredictionRecord.model_construct(_fields_set=set(given), **{**_record_defaults(), **given})


def _record_defaults() -> dict[str, Any]:
    """PredictionRecord's defaults, each factory's called afresh (a record owns its own dict)."""
    fixed, factories = _record_default_sources()
    return {**fixed, **{name: factory() for name, factory in factories.items()}}


@functools.cache
def _record_default_sources() -> tuple[dict[str, Any], dict[str, Callable[[], Any]]]:
    fields = PredictionRecord.model_fields
    return ({name: f.default for name, f in fields.items() if f.default_factory is None},
            {name: f.default_factory for name, f in fields.items() if f.default_factory is not None})


def from_record(record: PredictionRecord) -> Prediction:
    """A finished prediction read back from an interrupted run (no model call)."""
    ok = record.status == "ok"
    tokens = record.tokens or TokenCounts()
    return Prediction(record.y_pred if ok else None, error=None if ok else record.error,
                      latency_s=record.latency_s or 0.0, prompt_tokens=tokens.prompt,
                      completion_tokens=tokens.completion, calls=record.calls, cached=record.cached,
                      cost_usd=record.cost_usd or 0.0, error_kind=None if ok else record.error_kind)


def prevalidate(spec: ProgramSpec, options: EvalOptions, required: dict[str, str]) -> int | None:
    """Check every line of a dataset file before spending any model call on it; returns the row
    count (for the progress bar). Streams, so memory stays flat. Skipped for stdin."""
    if options.data == "-":
        return None
    count = 0
    for row in read_rows(options.data, spec.inputs, spec.outputs, skip_invalid=options.skip_invalid,
                         limit=options.limit, required_outputs=required, stats=ReadStats(),
                         data=spec.data_options(options.columns, options.data_format)):
        count += in_shard(row.index, options.shard)
    return count


async def evaluate(spec: ProgramSpec, options: EvalOptions, *, spec_path: str | None = None,
                   program: Program | None = None, state: ProgramState | None = None,
                   on_progress: ProgressCallback | None = None,
                   write_report: ReportWriter | None = None,
                   pool: WorkerPool | None = None) -> EvalReport:
    """Run, score and record every row. ``write_report`` (the report layer's writer) receives the
    report once predictions.jsonl is published, also when the run then stops with an error.
    ``pool``: LM worker processes to use (and leave open) instead of starting them; for callers
    that run many evals."""
    started = time.perf_counter()
    scorer = build_scorer(spec, spec_path=spec_path, use_cache=options.use_cache,
                              cache_dir=options.cache_dir)
    scorer.check_ready()
    required = scorer.required_outputs(spec.outputs)
    total = prevalidate(spec, options, required)
    if total is None and options.shard is None:
        total = count_lines(options.data, options.limit)
    if on_progress is not None:
        on_progress(Progress("eval", 0, total))
    cache = ResponseCache(options.cache_dir or responses_dir()) if options.use_cache else None
    workers = lm_workers(spec, options, total) if pool is None else 0
    own_pool = WorkerPool(workers) if workers else None
    client = LMClient(spec.model, cache, pool=None if spec.model.is_local else (own_pool or pool))
    if options.log_requests:
        client.log = CallLog(options.log_requests, client.secrets, append=options.resume or options.retry_errors)
    run = EvalRun(spec, options, scorer=scorer, client=client, total=total, required=required,
                  program=program or Program(spec.signature(), state), on_progress=on_progress)
    try:
        await run.check_cost_budget()
        await run.execute()
    finally:
        if cache is not None:
            cache.close()
        if own_pool is not None:
            await own_pool.close()
        if client.log is not None:
            client.log.close()
    return run.finish(spec_path, time.perf_counter() - started, write_report)


class EvalRun:
    """One eval's moving parts: a producer reads rows and starts their predictions (at most
    ``concurrency`` in flight, a bounded window read ahead); a consumer takes them in row order,
    scores them in batches and writes them."""

    def __init__(self, spec: ProgramSpec, options: EvalOptions, *, scorer: Scorer, client: LMClient,
                 total: int | None, required: dict[str, str], program: Program,
                 on_progress: ProgressCallback | None):
        self.spec, self.options, self.scorer, self.client = spec, options, scorer, client
        self.total, self.required, self.program, self.on_progress = total, required, program, on_progress
        self.repeat = max(1, options.repeat)
        self.read_stats = ReadStats()
        self.data = spec.data_options(options.columns, options.data_format)
        self.stats = RunStats(scorer)
        self.warnings: list[str] = []
        route = spec.model.route_warning()
        if route is not None:
            self.warnings.append(route)
            warn(route)
        if self.repeat > 1 and spec.model.temperature == 0:
            self.warnings.append("--repeat with temperature 0: greedy samples of a row are identical")
        self.out_dir = Path(options.out_dir) if options.out_dir else None
        self.budget = options.budget
        self.done = self._load_done()
        self.writer = JsonlWriter(self.out_dir / "predictions.jsonl",
                                                append=options.resume or options.retry_errors) if self.out_dir else None
        concurrency = max(1, options.concurrency)
        self.window = asyncio.Semaphore(concurrency * 4)  # rows read but not yet written
        self.in_flight = asyncio.Semaphore(concurrency)
        self.pending: deque[tuple[Row, int, asyncio.Task[Prediction], bool]] = deque()
        self.batch: list[tuple[Row, int, Prediction, bool]] = []  # finished, not yet scored and written
        self.arrived = asyncio.Event()
        self.producing_done = False
        self.stopped: list[str] = []  # why the run stopped calling the model (a fatal error, a budget)
        self.failures = 0  # rows whose prediction failed (not counting rows not run)
        self.predicted = 0  # predictions that called the model
        self.unreachable = 0  # rows in a row whose server could not be reached
        self.redone = 0  # failed rows of the earlier run asked again (--resume, --retry-errors)
        self.runner: asyncio.Task | None = None
        self.usage_before = self._usage_before()

    def _load_done(self) -> list[PredictionRecord]:
        if not (self.options.resume or self.options.retry_errors) or self.out_dir is None:
            return []
        return load_partial(self.out_dir, self.repeat, reopen=self.options.retry_errors)

    def _usage_before(self) -> Usage | None:
        """What the earlier run spent (--resume, --retry-errors), so that usage covers the whole."""
        if not self.done or self.out_dir is None:
            return None
        return read_usage(self.out_dir / USAGE_FILE) or read_usage(self.out_dir / "report.json", key="usage")

    def _redo(self, record: PredictionRecord) -> bool:
        return not record.ok and (self.options.retry_errors or record.redo_on_resume)

    async def check_cost_budget(self) -> None:
        if self.options.max_cost is None:
            return
        if await self.client.resolve_prices() is None:
            raise InputError(f"a budget needs the model's price, and litellm's price map has none for "
                             f"{self.spec.model.name}: set model.input_cost_per_token and "
                             "model.output_cost_per_token", field="--max-cost")

    # --- generate ---

    def _over_cost(self) -> bool:
        max_cost = self.options.max_cost
        if max_cost is not None and self.client.cost_usd >= max_cost and not self.stopped:
            self.stopped.append(f"cost budget spent (${self.client.cost_usd:.4g} of --max-cost ${max_cost:g})")
        return bool(self.stopped)

    async def _predict(self, row: Row, sample: int, refresh: bool = False) -> Prediction:
        async with self.in_flight:
            if self.runner is not None and self.runner.cancelling():
                # Interrupted: the run is shutting down; a row that starts now would be asked
                # again by --resume.
                return Prediction(None, error=INTERRUPTED)
            if self.stopped or self._over_cost():
                return Prediction(None, error=f"not run: {self.stopped[0]}", error_kind="not_run")
            set_row(row.index, row.line, sample if self.repeat > 1 else None)  # for --log-requests
            overrides = None
            if self.repeat > 1:  # distinct, reproducible seeds per sample
                base = self.spec.model.seed if self.spec.model.seed is not None else 0
                overrides = {"seed": base + sample}
            pred = await self.program.predict(row.inputs, self.client, use_cache=self.options.use_cache,
                                              overrides=overrides, sample=sample, refresh=refresh)
            self._count(pred)
            return pred

    def _count(self, pred: Prediction) -> None:
        """The budgets are counted as predictions finish, not as rows are written, so that no
        further call starts once one is spent."""
        if pred.fatal and not self.stopped:
            self.stopped.append(pred.error or "provider error")
        self.unreachable = self.unreachable + 1 if pred.error_kind == "connection" else 0
        if self.unreachable >= OUTAGE_ROWS and not self.stopped:
            self.stopped.append(f"{pred.error}; {OUTAGE_ROWS} rows in a row could not reach the server")
        self.predicted += 1
        self._over_cost()
        if not pred.ok:
            self.failures += 1
            if self.budget is not None and not self.stopped and \
                    self.budget.exceeded(self.failures, self.predicted, self.total):
                self.stopped.append(f"error budget exceeded ({self.failures} failed rows; "
                                    f"--max-errors {self.options.max_errors})")

    async def _restored(self, record: PredictionRecord) -> Prediction:
        return from_record(record)

    def _start(self, row: Row, sample: int, position: int) -> None:
        if position < len(self.done):  # finished before the interruption: no model call
            record = self.done[position]
            if record.index != row.index or record.inputs != row.inputs:
                raise InputError("the interrupted run's predictions do not match this dataset "
                                 f"(row {row.index})", path=str(self.writer.partial) if self.writer else None)
            if self._redo(record):  # its new line is appended; compact_partial keeps the last
                self.redone += 1
                self.pending.append((row, sample, asyncio.create_task(self._predict(row, sample, True)), False))
                return
            self.pending.append((row, sample, asyncio.create_task(self._restored(record)), True))
        else:
            self.pending.append((row, sample, asyncio.create_task(self._predict(row, sample)), False))

    async def _produce(self) -> None:
        position = 0  # this run's own rows (a shard's), in order; --resume counts in them
        options = self.options
        try:
            for row in read_rows(options.data, self.spec.inputs, self.spec.outputs,
                                 skip_invalid=options.skip_invalid, limit=options.limit,
                                 required_outputs=self.required, stats=self.read_stats, data=self.data):
                if not in_shard(row.index, options.shard):
                    continue
                for sample in range(self.repeat):
                    await self.window.acquire()
                    self._start(row, sample, position)
                    position += 1
                    self.arrived.set()
        finally:
            self.producing_done = True
            self.arrived.set()

    # --- score and record ---

    def _record(self, row: Row, sample: int, pred: Prediction, scores: RowScores) -> PredictionRecord:
        return to_record(row, pred, scores, sample if self.repeat > 1 else None,
                         priced=self.client.prices(lookup=False) is not None)

    async def _flush(self) -> None:
        batch = self.batch
        if not batch:
            return
        scores = await self.scorer.score([r.y_true or {} for r, _, _, _ in batch],
                                         [p.y_pred if p.ok else None for _, _, p, _ in batch],
                                         [r.inputs for r, _, _, _ in batch],
                                         where=[(r.path, r.line) for r, _, _, _ in batch])
        for (row, sample, pred, was_done), row_scores in zip(batch, scores, strict=True):
            if not pred.ok and pred.error_kind not in (None, "unparseable"):
                row_scores = self.scorer.unscored()  # the provider failed it: not a quality drop
            record = self._record(row, sample, pred, row_scores)
            if self.writer is not None and not was_done:
                self.writer.write_line(record.to_line())
            self.stats.add(record)
            self.window.release()
        if self.writer is not None:
            self.writer.flush()
            # Not fsynced: rewritten every batch, as predictions.jsonl's lines are flushed, not
            # fsynced (at 50 ms a call an fsync a batch held the event loop for 3% of the run).
            atomic_write_bytes(self.out_dir / USAGE_FILE, self._usage(final=False).model_dump_json().encode(),
                               sync=False)
        if self.on_progress is not None:
            self.on_progress(Progress("eval", self.stats.rows, self.total, self.stats.total.running_mean))
        batch.clear()

    async def _consume(self) -> None:
        last_flush = time.perf_counter()
        while True:
            while not self.pending:
                # Rows in the batch hold window slots the producer may be waiting for.
                await self._flush()
                if self.producing_done:
                    return
                self.arrived.clear()
                await self.arrived.wait()
            row, sample, task, was_done = self.pending[0]
            prediction = await task
            self.pending.popleft()
            self.batch.append((row, sample, prediction, was_done))
            # Score in batches (embedding and reward-model rewards batch), but do not sit on
            # finished rows while the next one is still generating.
            waiting = not self.pending or not self.pending[0][2].done()
            if len(self.batch) >= SCORE_BATCH or (waiting and time.perf_counter() - last_flush >= FLUSH_SECONDS):
                await self._flush()
                last_flush = time.perf_counter()

    async def execute(self) -> None:
        self.runner = asyncio.current_task()
        producer = asyncio.create_task(self._produce())
        try:
            await asyncio.gather(producer, self._consume())
        except BaseException as exc:
            producer.cancel()
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
                self._abort("interrupted")
            elif isinstance(exc, WorkerDied):
                self._abort(str(exc))
            self._abort(None)
            raise

    def _abort(self, why: str | None) -> None:
        """Stop: keep what is finished (on an interruption, or a worker process that died) and
        say how to continue."""
        if self.writer is not None and why is not None:
            self._keep_finished()
        for _, _, task, _ in self.pending:
            task.cancel()
        if self.writer is not None:
            self.writer.close()
        if why is not None:
            writer = self.writer
            kept = (f"; {writer.lines} finished rows are in {writer.partial}: continue with the same "
                    "command and --resume") if writer is not None else ""
            raise RunError(f"{why} after {writer.lines if writer is not None else self.stats.rows} rows{kept}") from None

    def _keep_finished(self) -> None:
        """On interruption, write the predictions already made but not yet scored (in row order,
        up to the first unfinished row), so that --resume does not ask for them again; resume
        scores them."""
        assert self.writer is not None
        finished = list(self.batch)
        for row, sample, task, was_done in self.pending:
            if not task.done() or task.cancelled() or task.exception() is not None:
                break
            finished.append((row, sample, task.result(), was_done))
        unscored = RowScores({}, {}, None)
        for row, sample, pred, was_done in finished:
            if pred.error == INTERRUPTED:
                break
            if not was_done:
                self.writer.write_line(self._record(row, sample, pred, unscored).to_line())

    # --- results ---

    def finish(self, spec_path: str | None, wall: float, write_report: ReportWriter | None) -> EvalReport:
        """Publish predictions.jsonl, build the report, hand it to the writer, then raise when
        the run stopped early or every row failed."""
        if self.stopped:
            self.warnings.append(f"stopped calling the model: {self.stopped[0]}; the rows after it are "
                                 "recorded as not run")
        if len(self.done) > self.redone:
            self.warnings.append(f"resumed: {len(self.done) - self.redone} finished rows were kept from the earlier run")
        if self.redone:
            self.warnings.append(f"asked {self.redone} failed rows of the earlier run again")
        if self.stats.provider_failed:
            self.warnings.append(f"{self.stats.provider_failed} rows failed at the provider: recorded with "
                                 "their error and left out of every score")
        outputs: dict[str, str] = {}
        if self.writer is not None:
            if self.redone:
                compact_partial(self.writer.partial)
            self.writer.commit()
            outputs = {"predictions": str(self.writer.path)}
        report = build_report(kind="eval", spec=self.spec, spec_path=spec_path, data_path=self.options.data,
                              stats=self.stats, read_stats=self.read_stats, scorer=self.scorer, wall=wall,
                              limit=self.options.limit, fail_under=self.options.fail_under,
                              usage=self._usage(), outputs=outputs, warnings=self.warnings,
                              row_rule=self.options.row_pass)
        if self.options.shard is not None:
            report.data.shard = f"{self.options.shard[0]}/{self.options.shard[1]}"
        if write_report is not None:
            write_report(report)
        if self.out_dir is not None:
            (self.out_dir / USAGE_FILE).unlink(missing_ok=True)  # report.json holds it now
        if self.stopped:
            where = (" (every row is in predictions.jsonl; the same command with --resume asks the rows "
                     "not run)") if self.out_dir is not None else ""
            raise RunError(f"stopped: {self.stopped[0]}{where}")
        if self.stats.rows and self.stats.errors == self.stats.rows:
            first = self.stats.error_rows[0]["error"] if self.stats.error_rows else "unknown error"
            raise RunError(f"every row failed ({self.stats.rows}); first error: {first}")
        failed = self.stats.provider_failed
        if failed and self.budget is None:
            first = next((r["error"] for r in self.stats.error_rows if not r["error"].startswith("unparseable")), "")
            raise RunError(f"{failed} rows failed at the provider and are not scored (first: {first}); "
                           "eval --retry-errors asks them again, --max-errors tolerates them")
        return report

    def _usage(self, final: bool = True) -> Usage:
        """Usage of the whole run: this process's requests plus the earlier run's (--resume)."""
        client = self.client
        cost = client.run_cost()
        if cost is None and final:
            self.warnings.append(f"no price for {self.spec.model.name} in litellm's price map: the cost is "
                                 "unknown (set model.input_cost_per_token and model.output_cost_per_token)")
        usage = Usage(requests=client.requests, failed_requests=client.failed_requests,
                      cached_rows=self.stats.cached_rows, prompt_tokens=client.prompt_tokens,
                      completion_tokens=client.completion_tokens, retries=client.retried,
                      faults=dict(client.faults), resumed_rows=len(self.done) - self.redone, cost_usd=cost)
        usage = usage.with_judge(self.scorer.usage())  # the LM judges' requests, tokens and cost
        return usage.after(self.usage_before)
