"""``rewardctl eval``: run a program over a dataset, score every output, write predictions and a report.

The pipeline streams: rows are read lazily, at most ``concurrency`` requests are in flight and
at most a bounded window of rows is held in memory; results are written in input order, scored
in batches (so batched rewards such as embeddings batch), and flushed as they go. Every input row
appears in predictions.jsonl, failed ones with their error.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardctl.dataset import ReadStats, Row, count_lines, read_rows
from rewardctl.errors import RunError
from rewardctl.io import JsonlWriter
from rewardctl.lm.cache import ResponseCache
from rewardctl.lm.client import LMClient
from rewardctl.paths import responses_dir
from rewardctl.program import Prediction, Program
from rewardctl.report import EvalReport, Usage, build_report, write_outputs
from rewardctl.scoring import RunStats, Scorer
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


ProgressCallback = Callable[[int, int | None, RunStats], None]


def prediction_record(row: Row, pred: Prediction, scores, sample: int | None = None) -> dict[str, Any]:
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
    for _ in read_rows(options.data, spec.inputs, spec.outputs, skip_invalid=options.skip_invalid,
                       limit=options.limit, required_outputs=required, stats=stats):
        count += 1
    return count


async def evaluate(spec: ProgramSpec, options: EvalOptions, *, spec_path: str | None = None,
                   program: Program | None = None, state: ProgramState | None = None,
                   on_progress: ProgressCallback | None = None,
                   on_start: Callable[[int | None], None] | None = None) -> EvalReport:
    started = time.perf_counter()
    scorer = Scorer.from_spec(spec, spec_path=spec_path, use_cache=options.use_cache,
                              cache_dir=options.cache_dir)
    scorer.check_ready()
    required = scorer.required_outputs(spec.outputs)
    total = prevalidate(spec, options, required)
    if total is None:
        total = count_lines(options.data, options.limit)
    if on_start is not None:
        on_start(total)
    program = program or Program(spec, state)
    cache = ResponseCache(options.cache_dir or responses_dir()) if options.use_cache else None
    client = LMClient(spec.model, cache)
    read_stats = ReadStats()
    stats = RunStats(scorer)
    repeat = max(1, options.repeat)
    warnings: list[str] = []
    if repeat > 1 and spec.model.temperature == 0:
        warnings.append("--repeat with temperature 0: greedy samples of a row are identical")
    out_dir = Path(options.out_dir) if options.out_dir else None
    writer = JsonlWriter(out_dir / "predictions.jsonl") if out_dir else None
    concurrency = max(1, options.concurrency)
    window = asyncio.Semaphore(concurrency * 4)  # rows read but not yet written
    in_flight = asyncio.Semaphore(concurrency)
    pending: deque[tuple[Row, int, asyncio.Task]] = deque()
    arrived = asyncio.Event()
    producing_done = False
    fatal: list[str] = []

    async def predict(row: Row, sample: int) -> Prediction:
        async with in_flight:
            if fatal:
                return Prediction(None, error=f"not run: {fatal[0]}")
            overrides = None
            if repeat > 1:  # distinct, reproducible seeds per sample
                base = spec.model.seed if spec.model.seed is not None else 0
                overrides = {"seed": base + sample}
            pred = await program.predict(row.inputs, client, use_cache=options.use_cache,
                                         overrides=overrides, sample=sample)
            if pred.fatal and not fatal:
                fatal.append(pred.error or "provider error")
            return pred

    async def produce() -> None:
        nonlocal producing_done
        try:
            for row in read_rows(options.data, spec.inputs, spec.outputs,
                                 skip_invalid=options.skip_invalid, limit=options.limit,
                                 required_outputs=required, stats=read_stats):
                for sample in range(repeat):
                    await window.acquire()
                    pending.append((row, sample, asyncio.create_task(predict(row, sample))))
                    arrived.set()
                if fatal:
                    break
        finally:
            producing_done = True
            arrived.set()

    async def flush(batch: list[tuple[Row, int, Prediction]]) -> None:
        if not batch:
            return
        scores = await scorer.score([r.y_true or {} for r, _, _ in batch],
                                    [p.y_pred if p.ok else None for _, _, p in batch],
                                    [r.inputs for r, _, _ in batch])
        for (row, sample, pred), row_scores in zip(batch, scores, strict=True):
            if writer is not None:
                writer.write(prediction_record(row, pred, row_scores, sample if repeat > 1 else None))
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

    async def consume() -> None:
        batch: list[tuple[Row, int, Prediction]] = []
        last_flush = time.perf_counter()
        while True:
            while not pending:
                # Rows in the batch hold window slots the producer may be waiting for.
                await flush(batch)
                if producing_done:
                    return
                arrived.clear()
                await arrived.wait()
            row, sample, task = pending.popleft()
            batch.append((row, sample, await task))
            # Score in batches (embedding and reward-model rewards batch), but do not sit on
            # finished rows while the next one is still generating.
            waiting = not pending or not pending[0][2].done()
            if len(batch) >= SCORE_BATCH or (waiting and time.perf_counter() - last_flush >= FLUSH_SECONDS):
                await flush(batch)
                last_flush = time.perf_counter()

    producer = asyncio.create_task(produce())
    try:
        await asyncio.gather(producer, consume())
    except BaseException as exc:
        producer.cancel()
        for _, _, task in pending:
            task.cancel()
        if writer is not None:
            writer.close()
        if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
            kept = f"; {writer.lines} finished rows are in {writer.partial}" if writer is not None else ""
            raise RunError(f"interrupted after {stats.rows} rows{kept}") from None
        raise
    finally:
        if cache is not None:
            cache.close()

    if fatal:
        if writer is not None:
            writer.close()
        raise RunError(f"stopped: {fatal[0]}")
    outputs: dict[str, str] = {}
    if writer is not None and out_dir is not None:
        writer.commit()
        outputs = {"predictions": str(out_dir / "predictions.jsonl"),
                   "report": str(out_dir / "report.json"), "markdown": str(out_dir / "report.md")}
    usage = Usage(requests=client.requests, cached_rows=stats.cached_rows,
                  prompt_tokens=client.prompt_tokens, completion_tokens=client.completion_tokens)
    report = build_report(kind="eval", spec=spec, spec_path=spec_path, data_path=options.data,
                          stats=stats, read_stats=read_stats, scorer=scorer,
                          wall=time.perf_counter() - started, limit=options.limit,
                          fail_under=options.fail_under, usage=usage, outputs=outputs,
                          warnings=warnings)
    if out_dir is not None:
        write_outputs(out_dir, report)
    if stats.rows and stats.errors == stats.rows:
        first = stats.error_rows[0]["error"] if stats.error_rows else "unknown error"
        raise RunError(f"every row failed ({stats.rows}); first error: {first}")
    return report
