"""`rewardctl optimize`: improve a program's demos and instructions on training data.

The loop (Synalinks's, made comparable and resumable): each epoch shuffles the training rows into
batches. Per batch, a parent is drawn from the population of best candidates and run on the batch
(the optimizer sees every row's reward), the optimizer proposes a candidate, and the candidate is
scored on a validation minibatch. At the end of the epoch the best new candidates are scored on the
whole validation set (minibatch scores of different batches are not comparable), the population
keeps the best `population_size`, the epoch goes into the history, and a checkpoint is written.
Training stops early after `patience` epochs without a better validation reward. At the end, the
best state and the initial program (the baseline) are evaluated on the same validation rows (and
test rows, when given), with the paired difference and its bootstrap CI, and the best state's KL
to the reference is estimated on a seeded sample of at most `--final-kl-rows` validation rows
(local models; exactly 0, with nothing sampled, when the best state is the reference).

Every random choice comes from one `random.Random(seed)` whose state is checkpointed, and model
calls are cached, so a resumed run ends where an uninterrupted run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardctl.checkpoint import (
    PARTIAL_FILE,
    fixed_fingerprint,
    load_state,
    read_checkpoint,
    read_run_so_far,
    rng_state,
    set_rng_state,
    write_checkpoint,
    write_run_so_far,
)
from rewardctl.dataset import Row, read_rows
from rewardctl.errors import InputError, RunError
from rewardctl.lm.cache import ResponseCache
from rewardctl.lm.client import LMClient
from rewardctl.metrics.stats import bootstrap_ci
from rewardctl.optimizers import OPTIMIZERS, Observation, Optimizer, OptimizerConfig
from rewardctl.options import OptimizeOptions
from rewardctl.paths import responses_dir
from rewardctl.program import Prediction
from rewardctl.progress import Progress, ProgressCallback
from rewardctl.records.eval import SpecInfo, Usage
from rewardctl.records.optimize import (
    BaselineResult,
    BestState,
    CandidateRecord,
    Checkpoint,
    Comparison,
    EpochRecord,
    KLEstimate,
    OptimizeData,
    OptimizeReport,
    RunSoFar,
    ScorePair,
    Selection,
    StateRecord,
    StepRecord,
    Verdict,
)
from rewardctl.runner import Runner, kl_to_reference, mean_reward, score_means
from rewardctl.scoring import RowScores
from rewardctl.spec import ProgramSpec, build_scorer
from rewardctl.state import Example, ProgramState

DEFAULT_OPTIMIZER = "demo_search"


@dataclass
class Candidate:
    state: ProgramState
    key: str
    val: float | None = None  # mean objective on the whole validation set
    mini: float | None = None  # mean objective on its validation minibatch
    epoch: int = 0
    baseline: str | None = None  # the simple baseline this is (zero-shot, k labeled demos...)

    def to_record(self) -> CandidateRecord:
        return CandidateRecord(state=state_record(self.state), val=self.val, mini=self.mini, epoch=self.epoch,
                               baseline=self.baseline)

    @classmethod
    def from_record(cls, record: CandidateRecord) -> Candidate:
        state = program_state(record.state)
        return cls(state, state.key(), record.val, record.mini, record.epoch, record.baseline)


def state_record(state: ProgramState) -> StateRecord:
    return StateRecord.model_validate(state.to_json())


def program_state(record: StateRecord) -> ProgramState:
    return ProgramState.from_json(record.model_dump(mode="json"))


def resolve_config(spec: ProgramSpec, options: OptimizeOptions) -> OptimizerConfig:
    """The optimizer's config: the spec's, or the named optimizer's defaults; CLI flags win."""
    config = spec.optimizer
    name = options.optimizer or (config.type if config is not None else DEFAULT_OPTIMIZER)
    if config is None or config.type != name:
        config = OPTIMIZERS.get(name, field="--optimizer").config_model()
    updates: dict[str, Any] = {}
    if options.epochs is not None:
        updates["epochs"] = options.epochs
    if options.seed is not None:
        updates["seed"] = options.seed
    if options.zero_shot:
        updates["start"] = "zero_shot"
    return config.model_copy(update=updates) if updates else config


def baseline_states(spec: ProgramSpec, config: OptimizerConfig,
                    labeled: list[Example]) -> list[tuple[str, ProgramState]]:
    """The simple baselines a run scores as candidates, the initial program first (the spec's demos,
    or zero-shot), then k labeled training demos for each k of ``baseline_demos`` (0: zero-shot;
    seeded). A baseline equal to an earlier one is left out."""
    start = [] if config.start == "zero_shot" else list(spec.examples)
    states = [("spec demos" if start else "zero-shot", ProgramState(spec.instructions, start))]
    for k in config.baseline_demos:
        if k == 0:
            states.append(("zero-shot", ProgramState(spec.instructions, [])))
        elif k <= len(labeled):
            picked = random.Random(f"{config.seed}:{k} labeled demos").sample(labeled, k)
            states.append((f"{k} labeled demos", ProgramState(spec.instructions, picked)))
    unique: dict[str, tuple[str, ProgramState]] = {}
    for name, state in states:
        unique.setdefault(state.key(), (name, state))
    return list(unique.values())


def check_model(spec: ProgramSpec, options: OptimizeOptions, config: OptimizerConfig) -> None:
    """Refuse an optimizer that cannot run the spec's model before any data is read or model
    called, naming where it was chosen (--optimizer, or the spec's optimizer)."""
    problem = OPTIMIZERS[config.type].model_problem(spec.model)
    if problem is None:
        option_problem = OPTIMIZERS[config.type].config_problem(config, spec.model)
        if option_problem is None:
            return
        option, message = option_problem
        if options.optimizer is not None and spec.optimizer is None:
            raise InputError(f"the {config.type} optimizer's {message}", field="--optimizer")
        raise spec.error_at(("optimizer", option), message)
    others = [name for name in OPTIMIZERS.names() if OPTIMIZERS[name].model_problem(spec.model) is None]
    use = ", ".join(others[:-1]) + f" or {others[-1]}" if len(others) > 1 else "".join(others)
    message = f"the {config.type} optimizer {problem}" + (f" (use {use})" if others else "")
    if options.optimizer is not None:
        raise InputError(message, field="--optimizer")
    raise spec.error_at(("optimizer", "type"), message)


def _load_rows(path: str, spec: ProgramSpec, required: dict[str, str], what: str,
               options: OptimizeOptions) -> list[Row]:
    rows = list(read_rows(path, spec.inputs, spec.outputs, required_outputs=required,
                          data=spec.data_options(options.columns, options.data_format)))
    if not rows:
        raise InputError(f"the {what} set is empty", path=path)
    return rows


@dataclass
class Splits:
    train: list[Row]
    val: list[Row]
    test: list[Row] | None

    def test_overlap(self) -> int:
        """Test rows whose inputs are also in the training or validation rows (not held out)."""
        if self.test is None:
            return 0
        seen = {json.dumps(r.inputs, sort_keys=True) for r in [*self.train, *self.val]}
        return sum(json.dumps(r.inputs, sort_keys=True) in seen for r in self.test)

    def fingerprint(self) -> str:
        payload = json.dumps([[r.inputs, r.y_true] for r in self.train] + [None]
                             + [[r.inputs, r.y_true] for r in self.val], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_splits(spec: ProgramSpec, options: OptimizeOptions, seed: int, required: dict[str, str]) -> Splits:
    """Training, validation (given, or split off the training set with ``seed``) and test rows."""
    train = _load_rows(options.train, spec, required, "training", options)
    if options.val is not None:
        val = _load_rows(options.val, spec, required, "validation", options)
    else:
        if len(train) < 2:
            raise InputError("needs at least 2 training rows to split off a validation set", path=options.train)
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_val = min(len(train) - 1, max(1, round(len(train) * options.val_split)))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    test = _load_rows(options.test, spec, required, "test", options) if options.test else None
    return Splits(train, val, test)


def compare(baseline: list[tuple[Prediction, RowScores]], optimized: list[tuple[Prediction, RowScores]],
            seed: int) -> Comparison:
    pairs = [(b.reward, o.reward) for (_, b), (_, o) in zip(baseline, optimized, strict=True)
             if b.reward is not None and o.reward is not None]
    base_means, opt_means = score_means(baseline), score_means(optimized)
    scores = {name: ScorePair(baseline=base_means.get(name), optimized=opt_means.get(name)) for name in base_means}
    if not pairs:
        return Comparison(rows=0, baseline=None, optimized=None, difference=None, scores=scores)
    diffs = [o - b for b, o in pairs]
    lo, hi, _ = bootstrap_ci(diffs, seed=seed)
    return Comparison(rows=len(pairs), baseline=sum(b for b, _ in pairs) / len(pairs),
                      optimized=sum(o for _, o in pairs) / len(pairs),
                      difference=sum(diffs) / len(diffs), ci95=[lo, hi], scores=scores)


def observation(row: Row, pred: Prediction, scores: RowScores) -> Observation:
    return Observation(row.inputs, row.y_true or {}, pred.y_pred if pred.ok else None, scores.reward,
                       scores={**scores.rewards, **scores.metrics}, error=pred.error, raw=pred.raw)


@dataclass
class LoopState:
    epoch: int = 0  # epochs completed
    population: list[Candidate] = field(default_factory=list)
    best: Candidate | None = None
    best_epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    no_improve: int = 0
    seen: set[str] = field(default_factory=set)
    baseline_val: float = 0.0
    baseline_vals: dict[str, float | None] = field(default_factory=dict)  # each baseline's, by name
    steps: list[StepRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


ReportWriter = Callable[[OptimizeReport], None]


async def optimize(spec: ProgramSpec, options: OptimizeOptions, *, spec_path: str | None = None,
                   on_progress: ProgressCallback | None = None,
                   write_report: ReportWriter | None = None) -> OptimizeReport:
    """Optimize, checkpointing every epoch; ``write_report`` (the report layer's writer) gets the
    final report."""
    started = time.perf_counter()
    config = resolve_config(spec, options)
    check_model(spec, options, config)
    scorer = build_scorer(spec, spec_path=spec_path, use_cache=options.use_cache, cache_dir=options.cache_dir)
    scorer.check_ready()
    splits = load_splits(spec, options, config.seed, scorer.required_outputs(spec.outputs))
    cache = ResponseCache(options.cache_dir or responses_dir()) if options.use_cache else None
    client = LMClient(spec.model, cache)
    run = OptimizeRun(spec, options, config, splits, Runner(spec, scorer, client, options.concurrency,
                                                            options.use_cache), on_progress, started)
    try:
        await run.start()
        await run.train()
        await run.select()
        report = await run.final(spec_path)
    except (asyncio.CancelledError, KeyboardInterrupt):
        run.save_so_far()
        raise RunError(run.interrupted_message()) from None
    finally:
        if cache is not None:
            cache.close()
    if write_report is not None:
        write_report(report)
    if run.out is not None:
        (run.out / PARTIAL_FILE).unlink(missing_ok=True)  # the report covers the whole run now
    return report


class OptimizeRun:
    """The loop's state and its stages: start (baseline or restore), search (epochs of steps),
    final (baseline and best compared on validation and test rows, the best's KL to the
    reference)."""

    def __init__(self, spec: ProgramSpec, options: OptimizeOptions, config: OptimizerConfig, splits: Splits,
                 runner: Runner, on_progress: ProgressCallback | None, started: float):
        self.spec, self.options, self.config, self.splits = spec, options, config, splits
        self.runner, self.on_progress = runner, on_progress
        self.optimizer: Optimizer = OPTIMIZERS[config.type](config, spec.outputs)
        labeled = [Example(input=r.inputs, output={k: r.y_true[k] for k in spec.outputs}) for r in splits.train
                   if r.y_true is not None and all(k in r.y_true for k in spec.outputs)]
        self.optimizer.set_labeled(labeled)
        self.baselines = baseline_states(spec, config, labeled)
        self.initial = self.baselines[0][1]
        self.reference = self.initial
        if options.reference is not None:
            self.reference = load_state(spec, options.reference)
        self.optimizer.set_reference(self.reference)
        self.rng = random.Random(config.seed)
        self.out = Path(options.out_dir) if options.out_dir else None
        self.loop = LoopState()
        self.resumed_from: int | None = None
        self.early_stopped = False
        self.budget_exhausted = False
        self.selection: Selection | None = None
        self.search_calls = 0  # the runner's calls when the search ended
        self.fingerprint, self.data_fingerprint = fixed_fingerprint(spec), splits.fingerprint()
        self.started = started  # this process's start (time.perf_counter)
        self.before_s = 0.0  # wall time the interrupted runs spent (--resume)
        self.usage_before: Usage | None = None  # what they spent
        self.stage = "baseline"  # "baseline", "search" or "final"
        self.phase = "baseline"  # what runs now, as the progress display names it

    def _progress(self, phase: str, done: int, total: int | None) -> None:
        self.phase = phase
        if self.on_progress is not None:
            best = self.loop.best.val if self.loop.best is not None else None
            self.on_progress(Progress(phase, done, total, best, label="best val"))

    def elapsed(self) -> float:
        """Wall time of the whole run so far: the interrupted runs' and this process's."""
        return self.before_s + time.perf_counter() - self.started

    def usage(self) -> Usage:
        clients = [self.runner.client, *self.optimizer.own_clients()]
        costs = [c.run_cost() for c in clients]
        faults: dict[str, int] = {}
        for client in clients:
            for kind, count in client.faults.items():
                faults[kind] = faults.get(kind, 0) + count
        return Usage(requests=sum(c.requests for c in clients), prompt_tokens=sum(c.prompt_tokens for c in clients),
                     completion_tokens=sum(c.completion_tokens for c in clients),
                     retries=sum(c.retried for c in clients), faults=faults,
                     cost_usd=None if None in costs else sum(costs)).after(self.usage_before)

    def save_so_far(self) -> None:
        """On interruption: what the run has spent, for --resume to add to its own."""
        if self.out is not None:
            with contextlib.suppress(OSError):  # the message on stderr matters more
                write_run_so_far(self.out, RunSoFar(elapsed_s=round(self.elapsed(), 2), usage=self.usage(),
                                                    where=self.phase))

    def interrupted_message(self) -> str:
        epochs = self.loop.epoch
        if self.stage == "final":
            when = f"in the final phase ({self.phase.removeprefix('final: ')}), after the search"
        elif self.stage == "baseline":
            when = "while scoring the baseline"
        else:
            when = f"during epoch {epochs + 1}"
        if self.out is None:
            return f"interrupted {when}"
        if epochs == 0:
            return f"interrupted {when}; no epoch had finished, nothing to resume in {self.out}: start again"
        return (f"interrupted {when}; {epochs} epoch{'s are' if epochs > 1 else ' is'} checkpointed in "
                f"{self.out}, continue with --resume")

    async def start(self) -> None:
        """The baseline's validation score, or the state of an interrupted run."""
        if self.options.resume:
            assert self.out is not None
            self.resumed_from = restore(self.out, self)
            return
        if self.out is not None:  # an earlier run's, in the same folder: not this run's time
            (self.out / PARTIAL_FILE).unlink(missing_ok=True)
        phase = "baselines: validation split"
        candidates = []
        for done, (name, state) in enumerate(self.baselines):
            self._progress(phase, done, len(self.baselines))
            candidate = Candidate(state, state.key(), epoch=0, baseline=name)
            candidate.val = (await self.optimizer.evaluate(self.runner, state, self.splits.val,
                                                           self.rng.getrandbits(31))).objective
            candidates.append(candidate)
        self._progress(phase, len(self.baselines), len(self.baselines))
        loop = self.loop
        loop.baseline_val = candidates[0].val or 0.0
        loop.baseline_vals = {c.baseline or "": c.val for c in candidates}
        ranked = sorted(candidates, key=lambda c: -(c.val or 0.0))  # stable: the initial program wins ties
        loop.population, loop.best, loop.seen = ranked[: self.config.population_size], ranked[0], \
            {c.key for c in candidates}

    async def train(self) -> None:
        loop, config = self.loop, self.config
        self.stage = "search"
        while loop.epoch < config.epochs:
            if config.patience is not None and loop.no_improve >= config.patience:
                self.early_stopped = True
                break
            if self.over_budget():
                break
            await self.epoch(loop.epoch + 1)
        self.search_calls = self.runner.calls

    def over_budget(self) -> bool:
        limit = self.config.max_calls
        if limit is not None and self.runner.calls >= limit:
            self.budget_exhausted = True
        return self.budget_exhausted

    async def epoch(self, epoch: int) -> None:
        epoch_started = time.perf_counter()
        self.optimizer.start_epoch()
        train = self.splits.train
        order = list(range(len(train)))
        self.rng.shuffle(order)
        size = self.config.batch_size
        steps = [order[i : i + size] for i in range(0, len(order), size)]
        train_rewards: list[float] = []
        fresh: list[Candidate] = []
        phase = f"search: epoch {epoch}/{self.config.epochs}, steps"
        self._progress(phase, 0, len(steps))
        for step, indices in enumerate(steps, start=1):
            if self.over_budget():
                break
            candidate = await self.step([train[i] for i in indices], epoch, step, train_rewards)
            if candidate is not None:
                fresh.append(candidate)
            self._progress(phase, step, len(steps))
        await self.end_epoch(epoch, fresh, train_rewards, epoch_started)

    async def step(self, batch: list[Row], epoch: int, step: int, train_rewards: list[float]) -> Candidate | None:
        """Run a parent on a training batch, let the optimizer propose, score a new proposal on a
        validation minibatch."""
        loop, rng = self.loop, self.rng
        parent = rng.choice(loop.population).state
        results = await self.runner.run(self.optimizer.teacher(parent, rng), batch)
        train_rewards += [s.reward for _, s in results if s.reward is not None]
        self.optimizer.observe([observation(r, p, s) for r, (p, s) in zip(batch, results, strict=True)])
        proposal = await self.optimizer.propose_with_model(self.runner, parent, rng)
        if proposal is None or proposal.key() in loop.seen:
            return None
        loop.seen.add(proposal.key())
        val, size = self.splits.val, self.config.val_batch_size
        mini_rows = val if size == 0 or size >= len(val) else rng.sample(val, size)
        return Candidate(proposal, proposal.key(), mini=await self.score_step(proposal, mini_rows, epoch, step),
                         epoch=epoch)

    async def score_step(self, state: ProgramState, rows: list[Row], epoch: int, step: int) -> float:
        """Score a candidate on a minibatch, record the step, let the optimizer adapt."""
        score = await self.optimizer.evaluate(self.runner, state, rows, self.rng.getrandbits(31))
        self.optimizer.after_step(score)
        self.loop.steps.append(StepRecord(epoch=epoch, step=step, rows=len(rows), **score.model_dump()))
        if score.kl is not None and score.kl_in_band is False:
            what = "negative (the estimate is noisy, or its samples were not drawn from the scored distribution)" \
                if score.kl < 0 else "above 10 nats (the candidate drifted far from the reference)"
            self.loop.warnings.append(f"epoch {epoch} step {step}: KL {score.kl:.2f} is {what}")
        return score.objective

    async def end_epoch(self, epoch: int, fresh: list[Candidate], train_rewards: list[float],
                        epoch_started: float) -> None:
        """Score the best new candidates on the whole validation set, update the population and
        the best, record the epoch, checkpoint."""
        loop, config, val = self.loop, self.config, self.splits.val
        shortlist = sorted(fresh, key=lambda c: -(c.mini or 0.0))[: config.population_size]
        phase = f"search: epoch {epoch}/{config.epochs}, candidates on validation"
        for done, candidate in enumerate(shortlist, start=1):
            self._progress(phase, done - 1, len(shortlist))
            candidate.val = (await self.optimizer.evaluate(self.runner, candidate.state, val,
                                                           self.rng.getrandbits(31))).objective
            self._progress(phase, done, len(shortlist))
        loop.population = sorted([*loop.population, *shortlist], key=lambda c: -(c.val or 0.0))[: config.population_size]
        leader = loop.population[0]
        leader_results = await self.runner.run(leader.state, val)
        assert loop.best is not None
        if (leader.val or 0.0) > (loop.best.val or 0.0) + 1e-12:
            loop.best, loop.best_epoch, loop.no_improve = leader, epoch, 0
        else:
            loop.no_improve += 1
        loop.epoch = epoch
        loop.history.append(EpochRecord(
            epoch=epoch, train_reward=sum(train_rewards) / len(train_rewards) if train_rewards else None,
            val_reward=mean_reward(leader_results), val_objective=leader.val,
            best_val_objective=loop.best.val, metrics=score_means(leader_results), candidates=len(fresh),
            demos=len(leader.state.examples), seconds=round(time.perf_counter() - epoch_started, 2)))
        if self.out is not None:
            write_checkpoint(self.out / "checkpoints" / f"epoch-{epoch:03d}.json", self.checkpoint(leader.state))
            write_checkpoint(self.out / "best.json", self.checkpoint(loop.best.state))

    def checkpoint(self, state: ProgramState) -> Checkpoint:
        loop = self.loop
        assert loop.best is not None
        return Checkpoint(
            spec=self.spec.name, spec_fingerprint=self.fingerprint, data_fingerprint=self.data_fingerprint,
            epoch=loop.epoch, state=state_record(state), optimizer=self.config.model_dump(mode="json"),
            optimizer_state=self.optimizer.state_dict(), rng_state=rng_state(self.rng),
            population=[c.to_record() for c in loop.population], best=loop.best.to_record(),
            best_epoch=loop.best_epoch, history=loop.history, no_improve=loop.no_improve,
            seen=sorted(loop.seen), baseline_val=loop.baseline_val, baseline_vals=loop.baseline_vals,
            steps=loop.steps, warnings=loop.warnings,
            elapsed_s=round(self.elapsed(), 2), usage=self.usage(), calls=self.runner.calls)

    async def final(self, spec_path: str | None) -> OptimizeReport:
        """The best state against the initial program and every simple baseline on the same
        validation (and test) rows; the verdict; the best's KL to the reference."""
        loop, splits = self.loop, self.splits
        assert loop.best is not None
        self.stage = "final"
        if self.out is not None and loop.epoch == 0 and not (self.out / "best.json").exists():
            write_checkpoint(self.out / "best.json", self.checkpoint(loop.best.state))
        on_val = await self.run_finalists("validation split", splits.val)
        on_test = await self.run_finalists("test split", splits.test) if splits.test is not None else None
        best, seed = loop.best.key, self.config.seed
        baselines = [BaselineResult(
            name=name, demos=len(state.examples), val_objective=loop.baseline_vals.get(name),
            validation=compare(on_val[state.key()], on_val[best], seed=seed),
            test=compare(on_test[state.key()], on_test[best], seed=seed) if on_test is not None else None)
            for name, state in self.baselines]
        report = self.report(spec_path, baselines[0].validation, baselines[0].test, await self.final_kl())
        report.baselines = baselines
        report.verdict = verdict(baselines, loop.best.baseline, splits.test_overlap())
        report.selection = self.selection
        return report

    async def select(self) -> None:
        """selection: confident. The finalists (the population and every baseline) are scored on the
        validation rows plus the training rows that are not their demos; the best searched
        candidate replaces the best baseline only when its paired gain there has a 95% CI above 0
        (a winner on a small validation set is often luck: the winner's curse)."""
        if self.config.selection != "confident":
            return
        self.stage = "final"
        loop = self.loop
        finalists = {c.key: c for c in loop.population}
        for name, state in self.baselines:
            finalists.setdefault(state.key(), Candidate(state, state.key(), loop.baseline_vals.get(name), baseline=name))
        phase = "final: selection on validation and training rows"
        scores: dict[str, dict[int, float]] = {}
        for done, candidate in enumerate(finalists.values()):
            self._progress(phase, done, len(finalists))
            scores[candidate.key] = await self.pooled_rewards(candidate.state)
        self._progress(phase, len(finalists), len(finalists))
        ranked = sorted(finalists.values(), key=lambda c: -mean_of(scores[c.key]))  # stable: baselines first
        incumbent = next(c for c in ranked if c.baseline is not None)
        challenger = next((c for c in ranked if c.baseline is None), None)
        self.selection, chosen = choose(incumbent, challenger, scores, self.config.seed)
        assert loop.best is not None
        if chosen.key != loop.best.key:
            loop.best, loop.best_epoch = chosen, chosen.epoch
            if self.out is not None:
                write_checkpoint(self.out / "best.json", self.checkpoint(chosen.state))

    async def pooled_rewards(self, state: ProgramState) -> dict[int, float]:
        """Rewards by row: validation rows (0..), then training rows (after them) that are not demos of ``state``."""
        demos = {json.dumps(e.input, sort_keys=True) for e in state.examples}
        train = [(len(self.splits.val) + i, r) for i, r in enumerate(self.splits.train)
                 if json.dumps(r.inputs, sort_keys=True) not in demos]
        indexed = [*enumerate(self.splits.val), *train]
        results = await self.runner.run(state, [r for _, r in indexed])
        return {i: s.reward for (i, _), (_, s) in zip(indexed, results, strict=True) if s.reward is not None}

    async def run_finalists(self, name: str, rows: list[Row]) -> dict[str, list[tuple[Prediction, RowScores]]]:
        """The best state and every baseline run on the same rows (each distinct state once)."""
        assert self.loop.best is not None
        states = {self.loop.best.key: ("best", self.loop.best.state)}
        for label, state in self.baselines:
            states.setdefault(state.key(), (label, state))
        results = {}
        for key, (label, state) in states.items():
            phase = f"final: {name}, {label}"
            self._progress(phase, 0, len(rows))
            results[key] = await self.runner.run(state, rows,
                                                 on_row=lambda n, phase=phase: self._progress(phase, n, len(rows)))
        return results

    async def final_kl(self) -> KLEstimate | None:
        """KL(best || reference) on a seeded sample of at most --final-kl-rows validation rows
        (local models with a completion prompt: sampling token by token needs one)."""
        model, limit, val = self.spec.model, self.options.final_kl_rows, self.splits.val
        if limit == 0 or not (model.is_local and model.resolved_format == "fields"):
            return None
        assert self.loop.best is not None
        rows = val if limit >= len(val) else [
            val[i] for i in sorted(random.Random(self.config.seed).sample(range(len(val)), limit))]
        phase = f"final: KL to the reference on {len(rows)} rows"
        self._progress(phase, 0, len(rows))
        started = time.perf_counter()
        estimate = await kl_to_reference(self.runner, self.loop.best.state, self.reference, rows,
                                         seed=self.config.seed, on_row=lambda n: self._progress(phase, n, len(rows)))
        return KLEstimate(**estimate, val_rows=len(val), seconds=round(time.perf_counter() - started, 2))

    def report(self, spec_path: str | None, validation: Comparison, test: Comparison | None,
               kl_report: KLEstimate | None) -> OptimizeReport:
        loop, spec, splits, options = self.loop, self.spec, self.splits, self.options
        assert loop.best is not None
        return OptimizeReport(
            spec=SpecInfo(path=spec_path, name=spec.name, fingerprint=self.fingerprint, model=spec.model.name),
            optimizer=self.config.model_dump(mode="json"),
            data=OptimizeData(train=options.train, val=options.val or f"{options.val_split:g} of train",
                              test=options.test, train_rows=len(splits.train), val_rows=len(splits.val),
                              test_rows=len(splits.test) if splits.test is not None else None,
                              fingerprint=self.data_fingerprint),
            history=loop.history, steps=loop.steps, kl_to_reference=kl_report,
            warnings=[*loop.warnings, *self.optimizer.run_warnings()],
            best=BestState(epoch=loop.best_epoch, val_reward=loop.best.val, val_objective=loop.best.val,
                           demos=len(loop.best.state.examples), instructions=loop.best.state.instructions,
                           state=state_record(loop.best.state)),
            validation=validation, test=test, early_stopped=self.early_stopped,
            budget_exhausted=self.budget_exhausted, calls=self.search_calls,
            resumed_from_epoch=self.resumed_from, wall_time_s=round(self.elapsed(), 2),
            resumed_wall_time_s=round(self.before_s, 2) if self.resumed_from is not None else None,
            usage=self.usage())


def mean_of(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values) if values else 0.0


def choose(incumbent: Candidate, challenger: Candidate | None, scores: dict[str, dict[int, float]],
           seed: int) -> tuple[Selection, Candidate]:
    """The challenger when its paired gain over the incumbent has a 95% CI above 0, else the incumbent."""
    base = scores[incumbent.key]
    record = Selection(rows=len(base), baseline=incumbent.baseline or "", baseline_mean=mean_of(base),
                       candidate_mean=None, chose="baseline")
    if challenger is None:
        return record, incumbent
    new = scores[challenger.key]
    shared = sorted(set(base) & set(new))
    diffs = [new[i] - base[i] for i in shared]
    if not diffs:
        return record, incumbent
    # Both means on the rows both were scored on: the difference is theirs.
    record.rows, record.candidate_demos = len(shared), len(challenger.state.examples)
    record.baseline_mean = sum(base[i] for i in shared) / len(shared)
    record.candidate_mean = sum(new[i] for i in shared) / len(shared)
    lo, hi, _ = bootstrap_ci(diffs, seed=seed)
    record.difference, record.ci95 = sum(diffs) / len(diffs), [lo, hi]
    if lo > 0:
        record.chose = "candidate"
        return record, challenger
    return record, incumbent


def verdict(baselines: list[BaselineResult], best_is: str | None, test_overlap: int = 0) -> Verdict:
    """The best state against the strongest baseline on the test split when there is one (held
    out unless ``test_overlap`` of its rows are training or validation rows); else on
    validation, which chose the best state, said plainly."""
    has_test = baselines[0].test is not None
    held_out = has_test and test_overlap == 0
    split = "test" if has_test else "validation"
    results = [(b.name, b.test if b.test is not None else b.validation) for b in baselines]
    against, cmp = max(results, key=lambda r: r[1].baseline if r[1].baseline is not None else -1.0)
    lo, hi = cmp.ci95 if cmp.ci95 else (None, None)
    if best_is is not None and best_is == against:
        finding = f"the best state is the {best_is} baseline, the strongest on {split}"
    elif cmp.difference is None or lo is None or hi is None:
        finding = f"no row could be compared with {against}"
    else:
        how = "better than" if lo > 0 else "worse than" if hi < 0 else "not significantly different from"
        finding = (f"the best state{f' (the {best_is} baseline)' if best_is else ''} is {how} the strongest "
                   f"baseline, {against}: {cmp.optimized:.3f} vs {cmp.baseline:.3f}, {cmp.difference:+.3f} "
                   f"(95% CI {lo:+.3f} to {hi:+.3f}, {cmp.rows} rows)")
    if held_out:
        text = f"On the held-out test split: {finding}."
    elif has_test:
        text = (f"Not held out: {test_overlap} test rows have the inputs of training or validation rows, so the "
                f"test split measures what the search saw. On the test split: {finding}.")
    else:
        text = (f"Only validation evidence: the validation split chose the best state, so a gain on it is "
                f"optimistic (pass --test with held-out rows to measure it). On validation: {finding}.")
    return Verdict(split=split, held_out=held_out, against=against, difference=cmp.difference,
                   ci95=cmp.ci95, text=text)


def restore(out: Path, run: OptimizeRun) -> int:
    """Load the last checkpoint of an interrupted run into ``run``; returns its epoch."""
    checkpoints = sorted((out / "checkpoints").glob("epoch-*.json"))
    if not checkpoints:
        raise InputError(f"nothing to resume: no checkpoints in {out / 'checkpoints'}")
    path = checkpoints[-1]
    data = read_checkpoint(path)
    if data.spec_fingerprint != run.fingerprint:
        raise InputError("the spec changed since this run started; start a new run", path=str(path))
    if data.data_fingerprint != run.data_fingerprint:
        raise InputError("the training or validation data changed since this run started", path=str(path))
    mutable = ("epochs", "patience", "max_calls")
    saved = {k: v for k, v in data.optimizer.items() if k not in mutable}
    current = {k: v for k, v in run.config.model_dump(mode="json").items() if k not in mutable}
    if saved != current:
        raise InputError("the optimizer's settings changed since this run started (only epochs, patience and "
                         "max_calls may change on --resume)", path=str(path))
    loop = run.loop
    loop.epoch, loop.best_epoch, loop.no_improve = data.epoch, data.best_epoch, data.no_improve
    loop.population = [Candidate.from_record(c) for c in data.population]
    loop.best = Candidate.from_record(data.best)
    loop.history, loop.steps, loop.warnings = data.history, data.steps, data.warnings
    loop.seen, loop.baseline_val, loop.baseline_vals = set(data.seen), data.baseline_val, data.baseline_vals
    run.runner.calls = data.calls
    run.optimizer.load_state_dict(data.optimizer_state)
    set_rng_state(run.rng, data.rng_state)
    # What the interrupted runs spent: until the interruption when it was recorded (Ctrl-C,
    # SIGTERM), else until this checkpoint (kill -9); whichever is later.
    so_far = read_run_so_far(out)
    if so_far is not None and so_far.elapsed_s >= data.elapsed_s:
        run.before_s, run.usage_before = so_far.elapsed_s, so_far.usage
    else:
        run.before_s, run.usage_before = data.elapsed_s, data.usage
    return loop.epoch
