"""What `rewardctl optimize` writes: its report (report.json) and its checkpoints
(checkpoints/epoch-NNN.json, best.json), typed all the way down. An optimizer's own config and
state are plain config data of its type (each optimizer documents its own)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from rewardctl.records.base import Report
from rewardctl.records.eval import SpecInfo, Usage

CHECKPOINT_FORMAT = "rewardctl-checkpoint"
CHECKPOINT_VERSION = 1


class Demo(BaseModel):
    """A few-shot demonstration as a checkpoint stores it."""

    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any]
    output: dict[str, Any]


class StateRecord(BaseModel):
    """A program's trainable state: instructions and demos."""

    instructions: str | None = None
    examples: list[Demo] = Field(default_factory=list)


class CandidateRecord(BaseModel):
    state: StateRecord
    val: float | None = Field(None, description="Mean objective on the whole validation set.")
    mini: float | None = Field(None, description="Mean objective on its validation minibatch.")
    epoch: int = 0
    baseline: str | None = Field(None, description="The simple baseline this candidate is (zero-shot, the "
                                 "spec's demos, k labeled demos); null for a searched candidate.")


class StepScore(BaseModel):
    """A candidate scored on rows. ``objective`` decides selection; the KL-penalized optimizer
    adds its KL statistics."""

    objective: float
    score: float | None = Field(None, description="Mean reward of sampled outputs (kl).")
    kl: float | None = Field(None, description="KL to the reference, nats (kl).")
    kl_stderr: float | None = None
    beta: float | None = Field(None, description="The KL coefficient at this step (kl).")
    non_score_reward: float | None = Field(None, description="-beta * KL (kl).")
    entropy: float | None = None
    samples: int | None = None
    kl_in_band: bool | None = Field(None, description="KL within [0, 10] nats (kl).")
    kl_negative: bool | None = None

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any) -> dict[str, Any]:
        """Statistics an optimizer does not report are left out, not written as null."""
        return {key: value for key, value in handler(self).items() if value is not None}


class StepRecord(StepScore):
    """One candidate scored on a validation minibatch."""

    epoch: int
    step: int
    rows: int

    @model_serializer(mode="wrap")
    def _where_first(self, handler: Any) -> dict[str, Any]:
        data = {key: value for key, value in handler(self).items() if value is not None}
        return {"epoch": data.pop("epoch"), "step": data.pop("step"), "rows": data.pop("rows"), **data}


class EpochRecord(BaseModel):
    epoch: int
    train_reward: float | None
    val_reward: float | None
    val_objective: float | None
    best_val_objective: float | None
    metrics: dict[str, float | None] = Field(default_factory=dict)
    candidates: int
    demos: int
    seconds: float


class Checkpoint(BaseModel):
    """Everything `optimize --resume` needs to continue exactly where a run stopped."""

    format: Literal["rewardctl-checkpoint"] = CHECKPOINT_FORMAT
    version: Literal[1] = CHECKPOINT_VERSION
    spec: str
    spec_fingerprint: str = Field(description="Of the spec without its trainable state and optimizer.")
    data_fingerprint: str
    epoch: int = Field(description="Epochs completed.")
    state: StateRecord = Field(description="The state this checkpoint holds (eval --checkpoint uses it).")
    optimizer: dict[str, Any] = Field(description="The optimizer's config.")
    optimizer_state: dict[str, Any] = Field(default_factory=dict, description="The optimizer's own state.")
    rng_state: list[Any]
    population: list[CandidateRecord]
    best: CandidateRecord
    best_epoch: int
    history: list[EpochRecord]
    no_improve: int
    seen: list[str]
    baseline_val: float
    baseline_vals: dict[str, float | None] = Field(
        default_factory=dict, description="Each simple baseline's validation objective, by name.")
    steps: list[StepRecord] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    elapsed_s: float = Field(0.0, description="Wall time of the run when this checkpoint was written, "
                             "seconds; earlier runs of it (--resume) included.")
    usage: Usage | None = Field(None, description="The run's usage when this checkpoint was written, "
                                "earlier runs of it (--resume) included.")
    calls: int = Field(0, description="Model replies the search had used (max_calls counts them).")


class RunSoFar(BaseModel):
    """What an interrupted optimize had spent when it stopped (run.partial.json in --out):
    `--resume` adds it to its own, so that the report covers the whole run."""

    elapsed_s: float = Field(description="Wall time until the interruption, earlier runs included.")
    usage: Usage | None = None
    where: str = Field("", description="What was running when the run was interrupted.")


class ScorePair(BaseModel):
    baseline: float | None
    optimized: float | None


class Comparison(BaseModel):
    rows: int
    baseline: float | None
    optimized: float | None
    difference: float | None
    ci95: list[float] | None = Field(None, description="95% bootstrap CI of the paired difference.")
    scores: dict[str, ScorePair] = Field(
        default_factory=dict, description="Each reward's and metric's mean: {name: {baseline, optimized}}.")


class BaselineResult(BaseModel):
    """A simple baseline (a candidate from the start) against the best state, paired on the same rows."""

    name: str = Field(description="zero-shot, the spec's demos, or k labeled demos.")
    demos: int
    val_objective: float | None = Field(description="Its objective on the whole validation set (what selection saw).")
    validation: Comparison = Field(description="This baseline (`baseline`) against the best state (`optimized`).")
    test: Comparison | None = None


class Selection(BaseModel):
    """The `confident` rule's final choice: the best searched candidate against the best baseline,
    paired on the rows both were scored on (validation plus training rows that are not their demos)."""

    rows: int = Field(description="Rows the two were paired on.")
    baseline: str = Field(description="The best baseline on those rows.")
    baseline_mean: float | None
    candidate_mean: float | None = Field(description="The best searched candidate's mean; null when there was none.")
    candidate_demos: int | None = None
    difference: float | None = None
    ci95: list[float] | None = None
    chose: Literal["baseline", "candidate"]


class Verdict(BaseModel):
    """What the run shows against the strongest simple baseline, and on what evidence."""

    split: Literal["test", "validation"]
    held_out: bool = Field(description="True when the split played no part in choosing the best state.")
    against: str = Field(description="The strongest baseline on that split.")
    difference: float | None
    ci95: list[float] | None = None
    text: str


class OptimizeData(BaseModel):
    train: str
    val: str
    test: str | None
    train_rows: int
    val_rows: int
    test_rows: int | None
    fingerprint: str


class BestState(BaseModel):
    epoch: int
    val_reward: float | None
    val_objective: float | None
    demos: int
    instructions: str | None
    state: StateRecord


class KLEstimate(BaseModel):
    """KL(best || reference) from sampled outputs: k1 and k3 estimators, nats. Estimated on a
    seeded sample of at most --final-kl-rows validation rows; exactly 0, with nothing sampled,
    when the best state is the reference."""

    samples: int = Field(description="Sampled outputs the estimate averages (rows * samples_per_row).")
    k1: float
    k1_stderr: float
    k3: float
    k3_stderr: float
    entropy: float | None = Field(description="Mean per-token entropy of the best state's sampled "
                                  "outputs, nats; null when nothing was sampled.")
    rows: int | None = Field(None, description="Validation rows sampled (a seeded sample of at most "
                             "--final-kl-rows).")
    val_rows: int | None = Field(None, description="Validation rows the sample was drawn from.")
    samples_per_row: int | None = None
    identical: bool = Field(False, description="The best state is the reference: the KL is exactly 0 "
                            "and nothing was sampled.")
    seconds: float | None = Field(None, description="Wall time the estimate took.")


class OptimizeReport(Report):
    kind: Literal["optimize"] = "optimize"
    spec: SpecInfo
    optimizer: dict[str, Any] = Field(description="The optimizer's config.")
    data: OptimizeData
    history: list[EpochRecord]
    steps: list[StepRecord] = Field(default_factory=list, description="Every candidate scored on a minibatch.")
    best: BestState
    kl_to_reference: KLEstimate | None = Field(
        None, description="The best state's KL to the reference, from sampled outputs (local models).")
    warnings: list[str] = Field(default_factory=list)
    validation: Comparison
    test: Comparison | None = None
    baselines: list[BaselineResult] = Field(
        default_factory=list, description="Each simple baseline against the best state on validation and test.")
    verdict: Verdict | None = None
    selection: Selection | None = Field(None, description="How the best state was chosen (selection: confident).")
    early_stopped: bool = False
    budget_exhausted: bool = Field(False, description="The search stopped at the optimizer's max_calls.")
    calls: int = Field(0, description="Model replies the search used, cached ones included (max_calls "
                       "counts them); the final phase's are not counted.")
    resumed_from_epoch: int | None = None
    wall_time_s: float = Field(description="Wall time of the whole run, seconds: with --resume, the "
                               "interrupted runs' time included.")
    resumed_wall_time_s: float | None = Field(
        None, description="Of wall_time_s, the seconds spent before --resume (by the interrupted runs).")
    usage: Usage
    outputs: dict[str, str] = Field(default_factory=dict)
