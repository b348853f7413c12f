"""LM worker processes: litellm calls to remote models spread over several processes.

Why: litellm.acompletion spends 2.5-4.5 ms of CPU on every call (building the request, through
the OpenAI SDK on openai/, pricing the response, logging), so one Python process tops out near
250-400 calls/s however many are in flight. Each worker runs its own event loop and its own
litellm, so the calls use every core; the main process keeps everything else (prompts, parsing,
the cache, retries, scoring, writing), so behaviour is the same with or without workers. Chat
calls to an OpenAI-compatible server take rewardctl.lm.served's route instead, about 0.3 ms a
call: passing one to a worker and back costs as much, so eval starts none for them unless asked
(evaluate.lm_workers); a worker sends them on that route too.

Protocol: JSON lines over the worker's stdin/stdout. A request is ``{"id", "op", ...}``; ops are
``call`` (rewardctl.lm.litellm_setup.send, or a Router's acompletion, with the given keyword
arguments), ``prices`` (the model's per-token prices from litellm's offline map) and ``schema``
(whether litellm says the model supports a JSON Schema response_format). A reply is ``{"id", "ok": true, ...}`` or
``{"id", "ok": false, "name", "status", "message", "retry_after"}`` describing the exception, so
that the main process retries exactly as it would have in-process. Keys travel only over the
pipe. Workers ignore Ctrl-C (the main process handles it) and exit when their stdin closes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import warnings
from typing import Any

from rewardctl.errors import RunError
from rewardctl.lm.client import (
    _network_reason,
    _retry_after,
    _status,
    fault_kind,
    request_deadline,
)
from rewardctl.lm.litellm_setup import close_clients, get_litellm, missing_keys, send
from rewardctl.lm.reply import read_reply

STREAM_LIMIT = 64 * 1024 * 1024  # a request holds whole prompts


class WorkerError(Exception):
    """An exception raised in a worker, described well enough to classify and retry it."""

    def __init__(self, name: str, status: int | None, message: str, retry_after: float | None,
                 kind: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.name = name
        self.status_code = status
        self.retry_after = retry_after
        self.kind = kind  # rewardctl.lm.client.fault_kind, found where the cause chain is
        self.reason = reason  # the network's reason, for a connection failure


class WorkerDied(RunError):
    """An LM worker process exited while requests were in flight."""


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.pending: dict[int, asyncio.Future] = {}
        self.reader: asyncio.Task | None = None

    async def read(self) -> None:
        assert self.process.stdout is not None
        try:
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    break
                reply = json.loads(line)
                future = self.pending.pop(reply.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(reply)
        finally:
            error = WorkerDied(f"an LM worker process exited (code {self.process.returncode})")
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(error)
            self.pending.clear()


class WorkerPool:
    """``size`` worker processes, started at the first request (each imports litellm: ~3.5 s of
    CPU, side by side; a run answered from the cache starts none); a request goes to the worker
    with the fewest in flight."""

    def __init__(self, size: int):
        self.size = size
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._started: asyncio.Task | None = None

    def start(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._spawn())

    async def _spawn(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for _ in range(self.size):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "rewardctl.lm.workers", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, limit=STREAM_LIMIT, env=env)
            worker = _Worker(process)
            worker.reader = asyncio.ensure_future(worker.read())
            self._workers.append(worker)

    async def ready(self) -> None:
        """Start every worker and wait until each has litellm loaded (for callers that run several
        evals on one pool and keep start-up out of their timings)."""
        self.start()
        await asyncio.shield(self._started)
        await asyncio.gather(*(self.request("ping", _worker=w) for w in self._workers))

    async def request(self, op: str, _worker: _Worker | None = None, **fields: Any) -> dict[str, Any]:
        self.start()
        await asyncio.shield(self._started)
        worker = _worker or min(self._workers, key=lambda w: len(w.pending))
        if worker.reader is not None and worker.reader.done():
            raise WorkerDied(f"an LM worker process exited (code {worker.process.returncode})")
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        worker.pending[request_id] = future
        assert worker.process.stdin is not None
        worker.process.stdin.write(json.dumps({"id": request_id, "op": op, **fields}).encode() + b"\n")
        try:
            return await future
        finally:
            worker.pending.pop(request_id, None)

    async def call(self, kwargs: dict[str, Any], router: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        reply = await self.request("call", kwargs=kwargs, router=router)
        if not reply["ok"]:
            raise WorkerError(reply["name"], reply.get("status"), reply["message"], reply.get("retry_after"),
                              reply.get("kind"), reply.get("reason"))
        return reply

    async def close(self) -> None:
        if self._started is None:
            return
        self._started.cancel()
        for worker in self._workers:
            if worker.process.stdin is not None and not worker.process.stdin.is_closing():
                worker.process.stdin.close()
        for worker in self._workers:
            # Nothing is pending (every call was answered or cancelled): a worker still importing
            # litellm has nothing to finish, so it is not waited for.
            try:
                await asyncio.wait_for(worker.process.wait(), timeout=0.5)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            if worker.reader is not None:
                worker.reader.cancel()
        self._workers.clear()


# --- the worker side ------------------------------------------------------------------------------

def _describe(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "name": type(exc).__name__, "status": _status(exc), "message": str(exc),
            "retry_after": _retry_after(exc), "kind": fault_kind(exc), "reason": _network_reason(exc)}


async def _read(pending: Any) -> tuple[str, str, int, int]:
    return read_reply(await pending)


async def _serve(out: Any) -> None:
    litellm = get_litellm()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STREAM_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    routers: dict[str, Any] = {}
    tasks: set[asyncio.Task] = set()

    def reply(message: dict[str, Any]) -> None:
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    async def handle(request: dict[str, Any]) -> None:
        request_id = request["id"]
        try:
            if request["op"] == "ping":
                reply({"id": request_id, "ok": True})
                return
            if request["op"] == "prices":
                try:
                    info = litellm.get_model_info(model=request["model"])
                    prices = [info.get("input_cost_per_token"), info.get("output_cost_per_token")]
                except Exception:  # noqa: BLE001 (litellm raises when its map lacks the model)
                    prices = None
                reply({"id": request_id, "ok": True, "prices": prices})
                return
            if request["op"] == "env":
                reply({"id": request_id, "ok": True, "missing": missing_keys(litellm, request["model"])})
                return
            if request["op"] == "schema":
                try:
                    supported = bool(litellm.supports_response_schema(model=request["model"]))
                except Exception:  # noqa: BLE001 (unknown models raise)
                    supported = False
                reply({"id": request_id, "ok": True, "supported": supported})
                return
            kwargs = request["kwargs"]
            if request.get("router"):
                key = json.dumps(request["router"], sort_keys=True)
                if key not in routers:
                    routers[key] = litellm.Router(model_list=request["router"], routing_strategy="simple-shuffle",
                                                  num_retries=0, allowed_fails=2, cooldown_time=5)
                pending = _read(routers[key].acompletion(**kwargs))
            else:
                pending = send(kwargs)  # rewardctl.lm.served's route, or litellm.acompletion
            # model.timeout bounds the whole request here too (the main process gives up at the
            # same deadline; this frees the worker's connection).
            text, finish_reason, prompt_tokens, completion_tokens = await asyncio.wait_for(
                pending, request_deadline(float(kwargs.get("timeout") or 600)))
            reply({"id": request_id, "ok": True, "text": text, "finish_reason": finish_reason,
                   "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens})
        except Exception as exc:  # noqa: BLE001 (every failure goes back to the main process)
            reply({"id": request_id, **_describe(exc)})

    while True:
        line = await reader.readline()
        if not line:
            break
        task = asyncio.ensure_future(handle(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    await close_clients()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    # The protocol owns the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warnings.filterwarnings("ignore")
    asyncio.run(_serve(out))


if __name__ == "__main__":
    main()
