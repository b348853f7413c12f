"""`rewardctl optimize`: improve a program's demos and instructions on training data.

The loop (Synalinks's, made comparable and resumable): each epoch shuffles the training rows into
batches. Per batch, a parent is drawn from the population of best candidates and run on the batch
(the optimizer sees every row's reward), the optimizer proposes a candidate, and the candidate is
scored on a validation minibatch. At the end of the epoch the best new candidates are scored on the
whole validation set (minibatch scores of different batches are not comparable), the population
keeps the best `population_size`, the epoch goes into the history, and a checkpoint is written.
Training stops early after `patience` epochs without a better validation reward. At the end, the
best state and the initial program (the baseline) are evaluated on the same validation rows (and
test rows, when given), with the paired difference and its bootstrap CI.

Every random choice comes from one `random.Random(seed)` whose state is checkpointed, and model
calls are cached, so a resumed run ends where an uninterrupted run ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from rewardctl import __version__
from rewardctl.checkpoint import (
    fixed_fingerprint,
    read_checkpoint,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from rewardctl.dataset import Row, read_rows
from rewardctl.errors import InputError, RunError
from rewardctl.io import atomic_write_json, atomic_write_text
from rewardctl.lm.cache import ResponseCache
from rewardctl.lm.client import LMClient
from rewardctl.metrics.stats import bootstrap_ci
from rewardctl.optimizers import REGISTRY, Observation, OptimizerConfig
from rewardctl.paths import responses_dir
from rewardctl.program import Prediction
from rewardctl.runner import Runner, kl_to_reference, mean_reward, score_means
from rewardctl.scoring import RowScores, Scorer
from rewardctl.state import ProgramState

REPORT_SCHEMA_VERSION = 1


@dataclass
class OptimizeOptions:
    train: str
    val: str | None = None
    val_split: float = 0.3
    test: str | None = None
    out_dir: str | None = None
    optimizer: str | None = None
    epochs: int | None = None
    seed: int | None = None
    zero_shot: bool = False
    reference: str | None = None  # a checkpoint whose state is the KL reference
    resume: bool = False
    concurrency: int = 8
    use_cache: bool = True
    cache_dir: str | None = None


@dataclass
class Candidate:
    state: ProgramState
    key: str
    val: float | None = None  # mean reward on the whole validation set
    mini: float | None = None  # mean reward on its validation minibatch
    epoch: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.to_json(), "val": self.val, "mini": self.mini, "epoch": self.epoch}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        state = ProgramState.from_json(data["state"])
        return cls(state, state.key(), data.get("val"), data.get("mini"), data.get("epoch", 0))


class Comparison(BaseModel):
    rows: int
    baseline: float | None
    optimized: float | None
    difference: float | None
    ci95: list[float] | None = Field(None, description="95% bootstrap CI of the paired difference.")
    scores: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="Each reward's and metric's mean: {name: {baseline, optimized}}.")


class OptimizeReport(BaseModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: str = "optimize"
    rewardctl_version: str = __version__
    spec: dict[str, Any]
    optimizer: dict[str, Any]
    data: dict[str, Any]
    history: list[dict[str, Any]]
    steps: list[dict[str, Any]] = Field(default_factory=list, description="Every candidate scored on a minibatch.")
    best: dict[str, Any]
    kl_to_reference: dict[str, Any] | None = Field(
        None, description="The best state's KL to the reference, from sampled outputs (local models).")
    warnings: list[str] = Field(default_factory=list)
    validation: Comparison
    test: Comparison | None = None
    early_stopped: bool = False
    resumed_from_epoch: int | None = None
    wall_time_s: float
    usage: dict[str, float | int | None]
    outputs: dict[str, str] = Field(default_factory=dict)


def resolve_config(spec: Any, options: OptimizeOptions) -> OptimizerConfig:
    """The optimizer's config: the spec's, or the named optimizer's defaults; CLI flags win."""
    config = spec.optimizer
    name = options.optimizer or (config.type if config is not None else "random_few_shot")
    if name not in REGISTRY:
        raise InputError(f"unknown optimizer '{name}' (known: {', '.join(sorted(REGISTRY))})", field="--optimizer")
    if config is None or config.type != name:
        config = REGISTRY[name].config_model()
    updates: dict[str, Any] = {}
    if options.epochs is not None:
        updates["epochs"] = options.epochs
    if options.seed is not None:
        updates["seed"] = options.seed
    if options.zero_shot:
        updates["start"] = "zero_shot"
    return config.model_copy(update=updates) if updates else config


def _load_rows(path: str, spec: Any, required: dict[str, str], what: str) -> list[Row]:
    rows = list(read_rows(path, spec.inputs, spec.outputs, required_outputs=required))
    if not rows:
        raise InputError(f"the {what} set is empty", path=path)
    return rows


def _data_fingerprint(train: list[Row], val: list[Row]) -> str:
    payload = json.dumps([[r.inputs, r.y_true] for r in train] + [None] + [[r.inputs, r.y_true] for r in val],
                         sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def compare(baseline: list[tuple[Prediction, RowScores]], optimized: list[tuple[Prediction, RowScores]],
            seed: int) -> Comparison:
    pairs = [(b.reward, o.reward) for (_, b), (_, o) in zip(baseline, optimized, strict=True)
             if b.reward is not None and o.reward is not None]
    base_means, opt_means = score_means(baseline), score_means(optimized)
    scores = {name: {"baseline": base_means.get(name), "optimized": opt_means.get(name)} for name in base_means}
    if not pairs:
        return Comparison(rows=0, baseline=None, optimized=None, difference=None, scores=scores)
    diffs = [o - b for b, o in pairs]
    lo, hi, _ = bootstrap_ci(diffs, seed=seed)
    return Comparison(rows=len(pairs), baseline=sum(b for b, _ in pairs) / len(pairs),
                      optimized=sum(o for _, o in pairs) / len(pairs),
                      difference=sum(diffs) / len(diffs), ci95=[lo, hi], scores=scores)


@dataclass
class LoopState:
    epoch: int = 0  # epochs completed
    population: list[Candidate] = field(default_factory=list)
    best: Candidate | None = None
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    no_improve: int = 0
    seen: set[str] = field(default_factory=set)
    baseline_val: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


ProgressCallback = Callable[[dict[str, Any]], None]


async def optimize(spec: Any, options: OptimizeOptions, *, spec_path: str | None = None,
                   progress: ProgressCallback | None = None) -> OptimizeReport:
    started = time.perf_counter()
    config = resolve_config(spec, options)
    scorer = Scorer.from_spec(spec, spec_path=spec_path, use_cache=options.use_cache, cache_dir=options.cache_dir)
    scorer.check_ready()
    required = scorer.required_outputs(spec.outputs)
    train = _load_rows(options.train, spec, required, "training")
    if options.val is not None:
        val = _load_rows(options.val, spec, required, "validation")
    else:
        if not 0 < options.val_split < 1:
            raise InputError("expected a share between 0 and 1", field="--val-split")
        if len(train) < 2:
            raise InputError("needs at least 2 training rows to split off a validation set", path=options.train)
        order = list(range(len(train)))
        random.Random(config.seed).shuffle(order)
        n_val = min(len(train) - 1, max(1, round(len(train) * options.val_split)))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    test = _load_rows(options.test, spec, required, "test") if options.test else None
    fingerprint, data_fingerprint = fixed_fingerprint(spec), _data_fingerprint(train, val)

    optimizer = REGISTRY[config.type](config, spec.outputs)
    if hasattr(optimizer, "set_labeled"):
        from rewardctl.state import Example

        optimizer.set_labeled([Example(input=r.inputs, output=r.y_true) for r in train
                               if r.y_true is not None and all(k in r.y_true for k in spec.outputs)])
    initial = ProgramState(spec.instructions, [] if config.start == "zero_shot" else list(spec.examples))
    reference = initial
    if options.reference is not None:
        from rewardctl.checkpoint import state_for

        reference = state_for(spec, read_checkpoint(options.reference), options.reference)
    optimizer.set_reference(reference)
    cache = ResponseCache(options.cache_dir or responses_dir()) if options.use_cache else None
    client = LMClient(spec.model, cache)
    runner = Runner(spec, scorer, client, options.concurrency, options.use_cache)
    rng = random.Random(config.seed)
    out = Path(options.out_dir) if options.out_dir else None
    loop = LoopState()
    resumed_from = None

    if options.resume:
        if out is None:
            raise InputError("--resume needs --out DIR (the interrupted run's folder)")
        resumed_from = _restore(out, loop, rng, optimizer, config, fingerprint, data_fingerprint)
    else:
        first = Candidate(initial, initial.key(), epoch=0)
        first.val = loop.baseline_val = (await optimizer.evaluate(runner, initial, val, rng.getrandbits(31)))["objective"]
        loop.population, loop.best, loop.seen = [first], first, {first.key}

    def checkpoint_data(state: ProgramState) -> dict[str, Any]:
        return {
            "spec": spec.name, "spec_fingerprint": fingerprint, "data_fingerprint": data_fingerprint,
            "epoch": loop.epoch, "state": state.to_json(), "optimizer": config.model_dump(mode="json"),
            "optimizer_state": optimizer.state_dict(), "rng_state": rng_state(rng),
            "population": [c.to_json() for c in loop.population], "best": loop.best.to_json(),
            "best_epoch": loop.best_epoch, "history": loop.history, "no_improve": loop.no_improve,
            "seen": sorted(loop.seen), "baseline_val": loop.baseline_val, "steps": loop.steps,
            "warnings": loop.warnings,
        }

    async def score_step(state: ProgramState, rows: list[Row], epoch: int, step: int) -> float:
        """Score a candidate on a minibatch, record the step, let the optimizer adapt."""
        stats = await optimizer.evaluate(runner, state, rows, rng.getrandbits(31))
        optimizer.after_step(stats)
        loop.steps.append({"epoch": epoch, "step": step, "rows": len(rows), **stats})
        if "kl" in stats and not stats.get("kl_in_band", True):
            what = "negative (the estimate is noisy, or its samples were not drawn from the scored distribution)" \
                if stats["kl"] < 0 else "above 10 nats (the candidate drifted far from the reference)"
            loop.warnings.append(f"epoch {epoch} step {step}: KL {stats['kl']:.2f} is {what}")
        return stats["objective"]

    early_stopped = False
    try:
        while loop.epoch < config.epochs:
            if config.patience is not None and loop.no_improve >= config.patience:
                early_stopped = True
                break
            epoch_started = time.perf_counter()
            epoch = loop.epoch + 1
            optimizer.start_epoch()
            order = list(range(len(train)))
            rng.shuffle(order)
            steps = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
            train_rewards: list[float] = []
            fresh: list[Candidate] = []
            for step, indices in enumerate(steps, start=1):
                batch = [train[i] for i in indices]
                parent = rng.choice(loop.population).state
                runner_state = optimizer.teacher(parent, rng) if hasattr(optimizer, "teacher") else parent
                results = await runner.run(runner_state, batch)
                train_rewards += [s.reward for _, s in results if s.reward is not None]
                optimizer.observe([Observation(r.inputs, r.y_true or {}, p.y_pred if p.ok else None, s.reward)
                                   for r, (p, s) in zip(batch, results, strict=True)])
                proposal = optimizer.propose(parent, rng)
                if proposal is not None and proposal.key() not in loop.seen:
                    loop.seen.add(proposal.key())
                    size = config.val_batch_size
                    mini_rows = val if size == 0 or size >= len(val) else rng.sample(val, size)
                    fresh.append(Candidate(proposal, proposal.key(),
                                           mini=await score_step(proposal, mini_rows, epoch, step), epoch=epoch))
                if progress is not None:
                    progress({"epoch": epoch, "epochs": config.epochs, "step": step, "steps": len(steps),
                              "best_val": loop.best.val})
            shortlist = sorted(fresh, key=lambda c: -(c.mini or 0.0))[: config.population_size]
            for candidate in shortlist:
                candidate.val = (await optimizer.evaluate(runner, candidate.state, val, rng.getrandbits(31)))["objective"]
            loop.population = sorted([*loop.population, *shortlist],
                                     key=lambda c: -(c.val or 0.0))[: config.population_size]
            leader = loop.population[0]
            leader_results = await runner.run(leader.state, val)
            if (leader.val or 0.0) > (loop.best.val or 0.0) + 1e-12:
                loop.best, loop.best_epoch, loop.no_improve = leader, epoch, 0
            else:
                loop.no_improve += 1
            loop.epoch = epoch
            loop.history.append({
                "epoch": epoch,
                "train_reward": sum(train_rewards) / len(train_rewards) if train_rewards else None,
                "val_reward": mean_reward(leader_results), "val_objective": leader.val,
                "best_val_objective": loop.best.val,
                "metrics": score_means(leader_results), "candidates": len(fresh),
                "demos": len(leader.state.examples), "seconds": round(time.perf_counter() - epoch_started, 2),
            })
            if out is not None:
                write_checkpoint(out / "checkpoints" / f"epoch-{epoch:03d}.json", checkpoint_data(leader.state))
                write_checkpoint(out / "best.json", checkpoint_data(loop.best.state))
    except (asyncio.CancelledError, KeyboardInterrupt):
        if cache is not None:
            cache.close()
        where = f"; {loop.epoch} epochs are checkpointed in {out}, continue with --resume" if out else ""
        raise RunError(f"interrupted during epoch {loop.epoch + 1}{where}") from None

    if out is not None and loop.epoch == 0 and not (out / "best.json").exists():
        write_checkpoint(out / "best.json", checkpoint_data(loop.best.state))
    validation = compare(await runner.run(initial, val), await runner.run(loop.best.state, val), config.seed)
    test_cmp = None
    if test is not None:
        test_cmp = compare(await runner.run(initial, test), await runner.run(loop.best.state, test), config.seed)
    kl_report = None
    if spec.model.is_local and spec.model.resolved_format == "fields":
        kl_report = await kl_to_reference(runner, loop.best.state, reference, val, seed=config.seed)
    if cache is not None:
        cache.close()
    report = OptimizeReport(
        spec={"path": spec_path, "name": spec.name, "fingerprint": fingerprint, "model": spec.model.name},
        optimizer=config.model_dump(mode="json"),
        data={"train": options.train, "val": options.val or f"{options.val_split:g} of train",
              "test": options.test, "train_rows": len(train), "val_rows": len(val),
              "test_rows": len(test) if test is not None else None, "fingerprint": data_fingerprint},
        history=loop.history, steps=loop.steps, kl_to_reference=kl_report, warnings=loop.warnings,
        best={"epoch": loop.best_epoch, "val_reward": loop.best.val, "val_objective": loop.best.val,
              "demos": len(loop.best.state.examples),
              "instructions": loop.best.state.instructions, "state": loop.best.state.to_json()},
        validation=validation, test=test_cmp, early_stopped=early_stopped, resumed_from_epoch=resumed_from,
        wall_time_s=round(time.perf_counter() - started, 2),
        usage={"requests": client.requests, "prompt_tokens": client.prompt_tokens,
               "completion_tokens": client.completion_tokens, "cost_usd": client.run_cost()},
    )
    if out is not None:
        report.outputs = {"best": str(out / "best.json"), "report": str(out / "report.json"),
                          "markdown": str(out / "report.md"), "learning_curve": str(out / "learning_curve.png")}
        atomic_write_json(out / "report.json", report.model_dump(mode="json"))
        atomic_write_text(out / "report.md", render_markdown(report))
        plot_learning_curve(report, out / "learning_curve.png")
        if any("kl" in step for step in report.steps):
            plot_kl_curve(report, out / "kl_curve.png")
            report.outputs["kl_curve"] = str(out / "kl_curve.png")
            atomic_write_json(out / "report.json", report.model_dump(mode="json"))
    return report


def _restore(out: Path, loop: LoopState, rng: random.Random, optimizer: Any, config: OptimizerConfig,
             fingerprint: str, data_fingerprint: str) -> int:
    checkpoints = sorted((out / "checkpoints").glob("epoch-*.json"))
    if not checkpoints:
        raise InputError(f"nothing to resume: no checkpoints in {out / 'checkpoints'}")
    path = checkpoints[-1]
    data = read_checkpoint(path)
    if data.get("spec_fingerprint") != fingerprint:
        raise InputError("the spec changed since this run started; start a new run", path=str(path))
    if data.get("data_fingerprint") != data_fingerprint:
        raise InputError("the training or validation data changed since this run started", path=str(path))
    saved = {k: v for k, v in data["optimizer"].items() if k not in ("epochs", "patience")}
    current = {k: v for k, v in config.model_dump(mode="json").items() if k not in ("epochs", "patience")}
    if saved != current:
        raise InputError("the optimizer's settings changed since this run started (only epochs and "
                         "patience may change on --resume)", path=str(path))
    loop.epoch = data["epoch"]
    loop.population = [Candidate.from_json(c) for c in data["population"]]
    loop.best = Candidate.from_json(data["best"])
    loop.best_epoch = data["best_epoch"]
    loop.history = data["history"]
    loop.no_improve = data["no_improve"]
    loop.seen = set(data["seen"])
    loop.baseline_val = data["baseline_val"]
    loop.steps = data.get("steps", [])
    loop.warnings = data.get("warnings", [])
    optimizer.load_state_dict(data.get("optimizer_state", {}))
    set_rng_state(rng, data["rng_state"])
    return loop.epoch


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_markdown(report: OptimizeReport) -> str:
    lines = [f"## rewardctl optimize: {report.spec['name']} ({report.optimizer['type']})", "",
             "| | baseline | optimized | difference | 95% CI | rows |", "|---|---|---|---|---|---|"]
    for label, cmp in (("validation", report.validation), ("test", report.test)):
        if cmp is not None:
            ci = f"{cmp.ci95[0]:+.3f} to {cmp.ci95[1]:+.3f}" if cmp.ci95 else "n/a"
            diff = "n/a" if cmp.difference is None else f"{cmp.difference:+.3f}"
            lines.append(f"| {label} | {_fmt(cmp.baseline)} | {_fmt(cmp.optimized)} | {diff} | {ci} | {cmp.rows} |")
    scores = (report.test or report.validation).scores
    if scores:
        label = "test" if report.test is not None else "validation"
        lines += ["", f"| score ({label}) | baseline | optimized |", "|---|---|---|"]
        lines += [f"| {name} | {_fmt(v['baseline'])} | {_fmt(v['optimized'])} |" for name, v in scores.items()]
    lines += ["", f"Best: epoch {report.best['epoch']}, {report.best['demos']} demos, validation objective "
              f"{_fmt(report.best['val_reward'])}. {len(report.history)} epochs"
              f"{' (stopped early)' if report.early_stopped else ''}, {report.wall_time_s:.1f} s."]
    if report.kl_to_reference is not None:
        kl = report.kl_to_reference
        lines.append(f"KL(best || reference) from {kl['samples']} sampled outputs: k1 {kl['k1']:.2f} ± "
                     f"{kl['k1_stderr']:.2f}, k3 {kl['k3']:.2f} ± {kl['k3_stderr']:.2f} nats.")
    lines += ["", "| epoch | train reward | val reward | val objective | best objective | candidates | demos |",
              "|---|---|---|---|---|---|---|"]
    for row in report.history:
        lines.append(f"| {row['epoch']} | {_fmt(row['train_reward'])} | {_fmt(row['val_reward'])} | "
                     f"{_fmt(row['val_objective'])} | {_fmt(row['best_val_objective'])} | {row['candidates']} | "
                     f"{row['demos']} |")
    kl_steps = [s for s in report.steps if "kl" in s]
    if kl_steps:
        lines += ["", "| step | score | kl | beta | non-score reward | objective | entropy |", "|---|---|---|---|---|---|---|"]
        for s in kl_steps:
            flag = "" if s.get("kl_in_band", True) else " ⚠"
            lines.append(f"| {s['epoch']}.{s['step']} | {s['score']:.3f} | {s['kl']:.2f}{flag} | {s['beta']:.3f} | "
                         f"{s['non_score_reward']:.3f} | {s['objective']:.3f} | {s['entropy']:.2f} |")
    for warning in report.warnings:
        lines.append(f"\nwarning: {warning}")
    return "\n".join(lines) + "\n"


def _save_png(fig: Any, path: Path) -> None:
    """Write a matplotlib figure atomically."""
    import os
    import tempfile

    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(report: OptimizeReport, path: Path) -> None:
    """Train and validation reward per epoch, with the baseline, as a PNG."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in report.history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    if epochs:
        ax.plot(epochs, [row["train_reward"] for row in report.history], marker="o", label="train reward")
        ax.plot(epochs, [row["val_reward"] for row in report.history], marker="o", label="validation reward")
    if report.validation.baseline is not None:
        ax.axhline(report.validation.baseline, color="grey", linestyle="--", label="baseline (validation)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean reward")
    ax.set_title(f"{report.spec['name']}: {report.optimizer['type']}")
    if epochs:
        ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    _save_png(fig, path)


def plot_kl_curve(report: OptimizeReport, path: Path) -> None:
    """Reward (of sampled outputs) and KL to the reference for every step, with the [0, 10] band."""
    plt = _pyplot()
    steps = [s for s in report.steps if "kl" in s]
    x = list(range(1, len(steps) + 1))
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=110)
    ax.plot(x, [s["score"] for s in steps], marker="o", color="tab:blue", label="reward (sampled)")
    ax.plot(x, [s["objective"] for s in steps], marker=".", color="tab:green", label="objective")
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    other = ax.twinx()
    other.plot(x, [s["kl"] for s in steps], marker="s", color="tab:red", label="KL (nats)")
    other.axhspan(0, 10, color="tab:red", alpha=0.06)
    other.set_ylabel("KL to reference (nats)")
    handles = ax.get_legend_handles_labels()[0] + other.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + other.get_legend_handles_labels()[1]
    ax.legend(handles, labels, loc="best", fontsize="small")
    ax.set_title(f"{report.spec['name']}: reward and KL per step")
    fig.tight_layout()
    _save_png(fig, path)
