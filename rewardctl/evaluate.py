"""``rewardctl eval``: run a program over a dataset, score every output, write predictions and a report.

The pipeline streams: rows are read lazily, at most ``concurrency`` requests are in flight and
at most a bounded window of rows is held in memory; results are written in input order, scored
in batches (so batched rewards such as embeddings batch), and flushed as they go. Every input row
appears in predictions.jsonl, failed ones with their error.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardctl.dataset import ReadStats, Row, count_lines, read_rows
from rewardctl.errors import InputError, RunError
from rewardctl.io import JsonlWriter
from rewardctl.lm.cache import ResponseCache
from rewardctl.lm.client import LMClient
from rewardctl.merge import in_shard
from rewardctl.paths import responses_dir
from rewardctl.program import Prediction, Program
from rewardctl.report import EvalReport, Usage, build_report, write_outputs
from rewardctl.scoring import RowScores, RunStats, Scorer
from rewardctl.spec import ProgramSpec
from rewardctl.state import ProgramState

SCORE_BATCH = 64
FLUSH_SECONDS = 0.25


@dataclass
class EvalOptions:
    data: str
    out_dir: str | None = None
    limit: int | None = None
    concurrency: int = 8
    use_cache: bool = True
    cache_dir: str | None = None
    skip_invalid: bool = False
    fail_under: float | None = None
    repeat: int = 1  # samples per row (pass@k); each is a separate prediction line
    max_errors: str | None = None  # "N" failed rows, or "P%" of the rows; past it the run stops
    resume: bool = False  # finish an interrupted run in out_dir
    shard: tuple[int, int] | None = None  # (K, N): evaluate the K-th of N round-robin shards
    max_cost: float | None = None  # USD; once spent, no further call starts
    workers: int | None = None  # LM worker processes for remote models; None: auto (see lm_workers)


AUTO_WORKER_ROWS = 1000  # below this, starting workers (each imports litellm) costs more than it saves


def lm_workers(spec: ProgramSpec, options: EvalOptions, total: int | None) -> int:
    """Worker processes for litellm calls. Auto: one per core (at most 4) for a remote model at
    concurrency 32 or more over 1,000 rows or more, where litellm's per-call CPU is the limit;
    none otherwise, and never for local/ models (they run in this process)."""
    if spec.model.is_local:
        return 0
    if options.workers is not None:
        return options.workers
    cores = os.cpu_count() or 1
    big = total is not None and total * max(1, options.repeat) >= AUTO_WORKER_ROWS
    return min(cores, 4) if cores >= 2 and options.concurrency >= 32 and big else 0


def _over_budget(budget: tuple[str, float], failures: int, rows: int, total: int | None) -> bool:
    kind, limit = budget
    if kind == "count":
        return failures > limit
    if total:  # a share of the whole dataset, when its size is known
        return failures > limit * total
    return rows >= 20 and failures / rows > limit


def parse_error_budget(value: str | None) -> tuple[str, float] | None:
    """'25' -> ('count', 25); '10%' -> ('share', 0.10)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100
            if not 0 <= share <= 1:
                raise ValueError
            return ("share", share)
        count = int(text)
        if count < 0:
            raise ValueError
        return ("count", float(count))
    except ValueError:
        raise InputError("expected a number of rows (25) or a percentage (10%)", field="--max-errors") from None


def load_partial(out_dir: Path, repeat: int) -> list[dict[str, Any]]:
    """The finished lines of an interrupted run's predictions.jsonl.partial. A last line cut short
    (kill -9 mid-write) is dropped, and so is an incomplete group of --repeat samples; the file is
    truncated to what is kept, so new lines append cleanly."""
    partial = out_dir / "predictions.jsonl.partial"
    if not partial.exists():
        if (out_dir / "predictions.jsonl").exists():
            raise InputError("this run already finished; nothing to resume", path=str(out_dir))
        raise InputError("nothing to resume: no predictions.jsonl.partial", path=str(out_dir))
    data = partial.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]  # whatever follows the last newline is a torn line
    records, size = [], 0
    for number, raw in enumerate(complete, start=1):
        try:
            records.append(json.loads(raw))
        except ValueError:
            raise InputError("an unreadable line in the middle of the file", path=str(partial), line=number) from None
        size += len(raw) + 1
    keep = len(records) - len(records) % repeat
    size -= sum(len(raw) + 1 for raw in complete[keep:])
    with open(partial, "r+b") as handle:
        handle.truncate(size)
    return records[:keep]


ProgressCallback = Callable[[int, int | None, RunStats], None]


def prediction_record(row: Row, pred: Prediction, scores, sample: int | None = None,
                      priced: bool = True) -> dict[str, Any]:
    record = {
        "index": row.index,
        "line": row.line,
        **({"sample": sample} if sample is not None else {}),
        "inputs": row.inputs,
        "y_true": row.y_true,
        "y_pred": pred.y_pred,
        "rewards": scores.rewards,
        "metrics": scores.metrics,
        "reward": scores.reward,
        **({"components": scores.components} if scores.components else {}),
        "status": "ok" if pred.ok else "error",
        "error": pred.error,
        "latency_s": round(pred.latency_s, 4),
        "tokens": {"prompt": pred.prompt_tokens, "completion": pred.completion_tokens},
        "cost_usd": round(pred.cost_usd, 12) if priced else None,
        "cached": pred.cached,
        "calls": pred.calls,
    }
    if pred.raw is not None:
        record["raw"] = pred.raw
    if row.meta:
        record["meta"] = row.meta
    return record


def prevalidate(spec: ProgramSpec, options: EvalOptions, required: dict[str, str]) -> int | None:
    """Check every line of a dataset file before spending any model call on it; returns the row
    count (for the progress bar). Streams, so memory stays flat. Skipped for stdin."""
    if options.data == "-":
        return None
    stats = ReadStats()
    count = 0
    for row in read_rows(options.data, spec.inputs, spec.outputs, skip_invalid=options.skip_invalid,
                         limit=options.limit, required_outputs=required, stats=stats):
        count += in_shard(row.index, options.shard)
    return count


async def evaluate(spec: ProgramSpec, options: EvalOptions, *, spec_path: str | None = None,
                   program: Program | None = None, state: ProgramState | None = None,
                   on_progress: ProgressCallback | None = None,
                   on_start: Callable[[int | None], None] | None = None,
                   pool: Any = None) -> EvalReport:
    """``pool``: a rewardctl.lm.workers.WorkerPool to use (and leave open) instead of starting
    one; for callers that run many evals."""
    started = time.perf_counter()
    scorer = Scorer.from_spec(spec, spec_path=spec_path, use_cache=options.use_cache,
                              cache_dir=options.cache_dir)
    scorer.check_ready()
    required = scorer.required_outputs(spec.outputs)
    total = prevalidate(spec, options, required)
    if total is None and options.shard is None:
        total = count_lines(options.data, options.limit)
    if on_start is not None:
        on_start(total)
    cache = ResponseCache(options.cache_dir or responses_dir()) if options.use_cache else None
    own_pool = None
    workers = lm_workers(spec, options, total) if pool is None else 0
    if workers:
        from rewardctl.lm.workers import WorkerPool

        pool = own_pool = WorkerPool(workers)
    client = LMClient(spec.model, cache, pool=None if spec.model.is_local else pool)
    try:
        return await _evaluate(spec, options, spec_path=spec_path, program=program, state=state,
                               on_progress=on_progress, started=started, scorer=scorer, required=required,
                               total=total, cache=cache, client=client)
    finally:
        if own_pool is not None:
            await own_pool.close()


async def _evaluate(spec: ProgramSpec, options: EvalOptions, *, spec_path: str | None, program: Program | None,
                    state: ProgramState | None, on_progress: ProgressCallback | None, started: float,
                    scorer: Scorer, required: dict[str, str], total: int | None,
                    cache: ResponseCache | None, client: LMClient) -> EvalReport:
    program = program or Program(spec, state)
    if options.max_cost is not None:
        if options.max_cost < 0:
            raise InputError("expected a budget in USD, 0 or more", field="--max-cost")
        if await client.resolve_prices() is None:
            raise InputError(f"a budget needs the model's price, and litellm's price map has none for "
                             f"{spec.model.name}: set model.input_cost_per_token and "
                             "model.output_cost_per_token", field="--max-cost")
    read_stats = ReadStats()
    stats = RunStats(scorer)
    repeat = max(1, options.repeat)
    warnings: list[str] = []
    if repeat > 1 and spec.model.temperature == 0:
        warnings.append("--repeat with temperature 0: greedy samples of a row are identical")
    out_dir = Path(options.out_dir) if options.out_dir else None
    budget = parse_error_budget(options.max_errors)
    done: list[dict[str, Any]] = []
    if options.resume:
        if out_dir is None:
            raise InputError("--resume needs --out DIR (the interrupted run's folder)")
        done = load_partial(out_dir, repeat)
    writer = JsonlWriter(out_dir / "predictions.jsonl", append=options.resume) if out_dir else None
    concurrency = max(1, options.concurrency)
    window = asyncio.Semaphore(concurrency * 4)  # rows read but not yet written
    in_flight = asyncio.Semaphore(concurrency)
    pending: deque[tuple[Row, int, asyncio.Task, bool]] = deque()
    arrived = asyncio.Event()
    producing_done = False
    stopped: list[str] = []  # why the run stopped calling the model (a fatal error, the error budget)
    failures = 0  # rows whose prediction failed (not counting rows not run)
    predicted = 0  # predictions that called the model

    def over_cost() -> bool:
        if options.max_cost is not None and client.cost_usd >= options.max_cost and not stopped:
            stopped.append(f"cost budget spent (${client.cost_usd:.4g} of --max-cost ${options.max_cost:g})")
        return bool(stopped)

    runner = asyncio.current_task()

    async def predict(row: Row, sample: int) -> Prediction:
        async with in_flight:
            if runner is not None and runner.cancelling():
                # Interrupted: the run is shutting down; a row that starts now would be asked
                # again by --resume.
                return Prediction(None, error="not run: interrupted")
            if stopped or over_cost():
                return Prediction(None, error=f"not run: {stopped[0]}")
            overrides = None
            if repeat > 1:  # distinct, reproducible seeds per sample
                base = spec.model.seed if spec.model.seed is not None else 0
                overrides = {"seed": base + sample}
            pred = await program.predict(row.inputs, client, use_cache=options.use_cache,
                                         overrides=overrides, sample=sample)
            if pred.fatal and not stopped:
                stopped.append(pred.error or "provider error")
            # The budget is counted as predictions finish, not as rows are written, so that no
            # further call starts once it is spent.
            nonlocal failures, predicted
            predicted += 1
            over_cost()
            if not pred.ok:
                failures += 1
                if budget is not None and not stopped and _over_budget(budget, failures, predicted, total):
                    stopped.append(f"error budget exceeded ({failures} failed rows; "
                                   f"--max-errors {options.max_errors})")
            return pred

    async def restored(record: dict[str, Any]) -> Prediction:
        ok = record.get("status") == "ok"
        tokens = record.get("tokens") or {}
        return Prediction(record.get("y_pred") if ok else None, error=None if ok else record.get("error"),
                          latency_s=record.get("latency_s") or 0.0, prompt_tokens=tokens.get("prompt", 0),
                          completion_tokens=tokens.get("completion", 0), calls=record.get("calls", 0),
                          cached=bool(record.get("cached")), cost_usd=record.get("cost_usd") or 0.0)

    async def produce() -> None:
        nonlocal producing_done
        position = 0  # this run's own rows (a shard's), in order; --resume counts in them
        try:
            for row in read_rows(options.data, spec.inputs, spec.outputs,
                                 skip_invalid=options.skip_invalid, limit=options.limit,
                                 required_outputs=required, stats=read_stats):
                if not in_shard(row.index, options.shard):
                    continue
                for sample in range(repeat):
                    await window.acquire()
                    if position < len(done):  # finished before the interruption: no model call
                        record = done[position]
                        if record.get("index") != row.index or record.get("inputs") != row.inputs:
                            raise InputError("the interrupted run's predictions do not match this dataset "
                                             f"(row {row.index})", path=str(writer.partial) if writer else None)
                        pending.append((row, sample, asyncio.create_task(restored(record)), True))
                    else:
                        pending.append((row, sample, asyncio.create_task(predict(row, sample)), False))
                    position += 1
                    arrived.set()
        finally:
            producing_done = True
            arrived.set()

    async def flush(batch: list[tuple[Row, int, Prediction, bool]]) -> None:
        if not batch:
            return
        scores = await scorer.score([r.y_true or {} for r, _, _, _ in batch],
                                    [p.y_pred if p.ok else None for _, _, p, _ in batch],
                                    [r.inputs for r, _, _, _ in batch])
        for (row, sample, pred, was_done), row_scores in zip(batch, scores, strict=True):
            if writer is not None and not was_done:
                writer.write(prediction_record(row, pred, row_scores, sample if repeat > 1 else None,
                                               priced=client.prices(lookup=False) is not None))
            stats.add(row_scores, y_true=row.y_true or {}, y_pred=pred.y_pred, inputs=row.inputs,
                      ok=pred.ok, error=pred.error, index=row.index, line=row.line,
                      latency_s=pred.latency_s, cached=pred.cached,
                      prompt_tokens=pred.prompt_tokens, completion_tokens=pred.completion_tokens)
            window.release()
        if writer is not None:
            writer.flush()
        if on_progress is not None:
            on_progress(stats.rows, total, stats)
        batch.clear()

    batch: list[tuple[Row, int, Prediction, bool]] = []  # finished, not yet scored and written

    async def consume() -> None:
        last_flush = time.perf_counter()
        while True:
            while not pending:
                # Rows in the batch hold window slots the producer may be waiting for.
                await flush(batch)
                if producing_done:
                    return
                arrived.clear()
                await arrived.wait()
            row, sample, task, was_done = pending[0]
            prediction = await task
            pending.popleft()
            batch.append((row, sample, prediction, was_done))
            # Score in batches (embedding and reward-model rewards batch), but do not sit on
            # finished rows while the next one is still generating.
            waiting = not pending or not pending[0][2].done()
            if len(batch) >= SCORE_BATCH or (waiting and time.perf_counter() - last_flush >= FLUSH_SECONDS):
                await flush(batch)
                last_flush = time.perf_counter()

    def keep_finished() -> None:
        """On interruption, write the predictions already made but not yet scored (in row order,
        up to the first unfinished row), so that --resume does not ask for them again; resume
        scores them."""
        finished = list(batch)
        for row, sample, task, was_done in pending:
            if not task.done() or task.cancelled() or task.exception() is not None:
                break
            finished.append((row, sample, task.result(), was_done))
        unscored = RowScores({}, {}, None)
        for row, sample, pred, was_done in finished:
            if pred.error == "not run: interrupted":
                break
            if not was_done:
                writer.write(prediction_record(row, pred, unscored, sample if repeat > 1 else None,
                                               priced=client.prices(lookup=False) is not None))

    producer = asyncio.create_task(produce())
    try:
        await asyncio.gather(producer, consume())
    except BaseException as exc:
        producer.cancel()
        interrupted = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
        if writer is not None and interrupted:
            keep_finished()
        for _, _, task, _ in pending:
            task.cancel()
        if writer is not None:
            writer.close()
        if interrupted:
            kept = (f"; {writer.lines} finished rows are in {writer.partial}: continue with the same "
                    "command and --resume") if writer is not None else ""
            raise RunError(f"interrupted after {writer.lines if writer is not None else stats.rows} rows{kept}") from None
        raise
    finally:
        if cache is not None:
            cache.close()

    if stopped:
        warnings.append(f"stopped calling the model: {stopped[0]}; the rows after it are recorded as not run")
    if done:
        warnings.append(f"resumed: {len(done)} finished rows were kept from the interrupted run")
    outputs: dict[str, str] = {}
    if writer is not None and out_dir is not None:
        writer.commit()
        outputs = {"predictions": str(out_dir / "predictions.jsonl"),
                   "report": str(out_dir / "report.json"), "markdown": str(out_dir / "report.md")}
    cost = client.run_cost()
    if cost is None:
        warnings.append(f"no price for {spec.model.name} in litellm's price map: the cost is unknown "
                        "(set model.input_cost_per_token and model.output_cost_per_token)")
    usage = Usage(requests=client.requests, cached_rows=stats.cached_rows,
                  prompt_tokens=client.prompt_tokens, completion_tokens=client.completion_tokens,
                  retries=client.retried, faults=client.faults, resumed_rows=len(done), cost_usd=cost)
    report = build_report(kind="eval", spec=spec, spec_path=spec_path, data_path=options.data,
                          stats=stats, read_stats=read_stats, scorer=scorer,
                          wall=time.perf_counter() - started, limit=options.limit,
                          fail_under=options.fail_under, usage=usage, outputs=outputs,
                          warnings=warnings)
    if options.shard is not None:
        report.data.shard = f"{options.shard[0]}/{options.shard[1]}"
    if out_dir is not None:
        write_outputs(out_dir, report)
    if stopped:
        where = " (every row is in predictions.jsonl)" if out_dir is not None else ""
        raise RunError(f"stopped: {stopped[0]}{where}")
    if stats.rows and stats.errors == stats.rows:
        first = stats.error_rows[0]["error"] if stats.error_rows else "unknown error"
        raise RunError(f"every row failed ({stats.rows}); first error: {first}")
    return report
