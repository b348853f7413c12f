"""Running a program state over rows held in memory, and scoring its outputs (optimize and
inspect-rewards use it; eval streams files instead)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rewardctl.dataset import Row
from rewardctl.errors import InputError, RunError
from rewardctl.kl import sequence_kl
from rewardctl.lm.client import GIVE_UP_CONNECTIONS, LMClient
from rewardctl.program import Prediction, Program
from rewardctl.prompting import ParseError
from rewardctl.scoring import RowScores, Scorer
from rewardctl.spec import ProgramSpec
from rewardctl.state import ProgramState


class Runner:
    """Runs a program state over rows and scores the outputs (model calls cached, concurrent)."""

    def __init__(self, spec: ProgramSpec, scorer: Scorer, client: LMClient, concurrency: int, use_cache: bool):
        self.spec = spec
        self.signature = spec.signature()
        self.scorer = scorer
        self.client = client
        self.limit = asyncio.Semaphore(max(1, concurrency))
        self.use_cache = use_cache
        self.failed_fatal: str | None = None
        self.calls = 0  # model replies, cached ones included: a budget that a rerun spends alike

    async def run(self, state: ProgramState, rows: list[Row], *,
                  on_row: Callable[[int], None] | None = None) -> list[tuple[Prediction, RowScores]]:
        """``on_row(n)`` hears of each finished prediction (n of them so far)."""
        program = Program(self.signature, state)
        finished = 0

        async def one(row: Row) -> Prediction:
            nonlocal finished
            async with self.limit:
                pred = await program.predict(row.inputs, self.client, use_cache=self.use_cache)
            finished += 1
            if on_row is not None:
                on_row(finished)
            return pred

        preds = await asyncio.gather(*(one(r) for r in rows))
        self.calls += sum(max(1, p.replies) for p in preds)
        for pred in preds:
            if pred.fatal:
                raise RunError(f"stopped: {pred.error}")
        unreachable = [p for p in preds if p.error_kind == "connection"]
        if unreachable and self.client.connection_failures >= GIVE_UP_CONNECTIONS:
            # An outage, not a quality drop: never averaged into a score.
            raise RunError(f"stopped: {unreachable[0].error}; the server could not be reached")
        scores = await self.scorer.score([r.y_true or {} for r in rows],
                                         [p.y_pred if p.ok else None for p in preds], [r.inputs for r in rows],
                                         where=[(r.path, r.line) for r in rows])
        # A row the provider failed is left out of every mean: an outage is not a quality drop.
        scores = [self.scorer.unscored() if not p.ok and p.error_kind not in (None, "unparseable") else s
                  for p, s in zip(preds, scores, strict=True)]
        return list(zip(preds, scores, strict=True))

    async def mean(self, state: ProgramState, rows: list[Row]) -> float:
        return mean_reward(await self.run(state, rows))

    async def sample(self, state: ProgramState, reference: ProgramState | None, rows: list[Row], *,
                     n: int, max_tokens: int, seed: int,
                     on_row: Callable[[int], None] | None = None) -> list[Any]:
        """``n`` outputs per row sampled from ``state`` at temperature 1, each with its reward and
        with the reference's log-probabilities of exactly its tokens; ``on_row(i)`` hears of each
        finished row (i of them so far)."""
        program = Program(self.signature, state)
        ref_program = Program(self.signature, reference or state)
        out = []
        for i, row in enumerate(rows):
            request = program.request(row.inputs)
            if not request.completion:
                raise InputError("KL estimation needs a completion-style prompt (a local model)", field="model")
            samples = await self.client.sample_tokens(request.messages[0]["content"], n=n, max_tokens=max_tokens,
                                                      stop=request.stop, seed=seed + i)
            ref_prompt = ref_program.request(row.inputs).messages[0]["content"]
            for sample, ref_logprobs in zip(samples, await self.client.score_sampled(ref_prompt, samples),
                                            strict=True):
                sample.ref_logprobs = ref_logprobs
            y_preds = []
            for sample in samples:
                try:
                    y_preds.append(program.format.parse(sample.text))
                except ParseError:
                    y_preds.append(None)
            scores = await self.scorer.score([row.y_true or {}] * n, y_preds, [row.inputs] * n,
                                             where=[(row.path, row.line)] * n)
            for sample, score in zip(samples, scores, strict=True):
                sample.reward = score.reward
            out.extend(samples)
            self.calls += n  # sampled outputs count toward an optimizer's max_calls
            if on_row is not None:
                on_row(i + 1)
        return out


async def kl_to_reference(runner: Runner, state: ProgramState, reference: ProgramState, rows: list[Row],
                          seed: int, n: int = 2, max_tokens: int = 48,
                          on_row: Callable[[int], None] | None = None) -> dict[str, Any]:
    """KL(state || reference) from ``n`` sampled outputs per row: k1 and k3, with standard
    errors. A state that is the reference has a KL of exactly 0: nothing is sampled."""
    if state.key() == reference.key():
        # Same prompt, same procedure: every sample's log-probabilities would be the reference's.
        return {"rows": 0, "samples_per_row": n, "samples": 0, "k1": 0.0, "k1_stderr": 0.0, "k3": 0.0,
                "k3_stderr": 0.0, "entropy": None, "identical": True}
    # numpy costs start-up time that only this computation needs.
    import numpy as np

    samples = await runner.sample(state, reference, rows, n=n, max_tokens=max_tokens, seed=seed, on_row=on_row)
    k1 = np.array([sequence_kl(s.logprobs, s.ref_logprobs, "k1") for s in samples])
    k3 = np.array([sequence_kl(s.logprobs, s.ref_logprobs, "k3") for s in samples])
    def se(a):
        return (float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0)
    entropies = [np.mean(s.entropies) for s in samples if s.entropies]
    return {"rows": len(rows), "samples_per_row": n, "samples": len(samples), "k1": float(k1.mean()),
            "k1_stderr": se(k1), "k3": float(k3.mean()), "k3_stderr": se(k3),
            "entropy": float(np.mean(entropies)) if entropies else None}


def mean_reward(results: list[tuple[Prediction, RowScores]]) -> float:
    values = [s.reward for _, s in results if s.reward is not None]
    return sum(values) / len(values) if values else 0.0


def score_means(results: list[tuple[Prediction, RowScores]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    if not results:
        return out
    for name in [*results[0][1].rewards, *results[0][1].metrics]:
        values = [v for _, s in results for v in [s.rewards.get(name, s.metrics.get(name))] if v is not None]
        out[name] = sum(values) / len(values) if values else None
    return out
