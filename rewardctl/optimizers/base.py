"""Optimizers improve a program's trainable state: its demos (examples) and instructions.

Each optimizer has a config model whose fields document their defaults (as TRL's configs do);
the loop settings every optimizer shares are in :class:`OptimizerConfig`. An optimizer sees the
results of each training batch (`observe`) and proposes a new candidate state from a parent
(`propose`); the loop in rewardctl.optimize scores candidates and keeps the best. All randomness
comes from the `random.Random` the loop passes in, seeded by `seed` (0 is a seed), and an
optimizer's own state round-trips through JSON for checkpoints.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from rewardctl.modelconfig import ModelConfig
from rewardctl.registry import Registry
from rewardctl.state import Example, ProgramState

if TYPE_CHECKING:
    from rewardctl.records.optimize import StepScore


class OptimizerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: str
    epochs: int = Field(5, ge=1, description="Passes over the training set.")
    batch_size: int = Field(8, ge=1, description="Training rows per step; each step proposes one candidate.")
    val_batch_size: int = Field(
        16, ge=0, description="Validation rows (sampled per step) that score a new candidate; 0: all.")
    population_size: int = Field(
        4, ge=1, description="Best candidates kept; at each epoch's end they are scored on the whole validation set.")
    patience: int | None = Field(
        2, ge=1, description="Stop after this many epochs without a better validation reward; null: never.")
    seed: int = Field(0, description="Seeds every random choice (0 is a seed).")
    max_calls: int | None = Field(
        None, ge=1, description="Budget in model calls (cached replies count, so a rerun stops where the "
        "run stopped): the search ends at the first step that reaches it; null: no budget.")
    start: Literal["spec", "zero_shot"] = Field(
        "spec", description="Start from the spec's demos, or from none (then the baseline is zero-shot).")
    baseline_demos: list[int] = Field(
        default_factory=lambda: [0, 3, 8],
        description="Simple baselines scored as candidates from the start, besides the initial program: k "
        "labeled training demos for each k, 0 being zero-shot (seeded; a k is skipped when fewer rows have "
        "full references). The best state is never worse on validation than the best of them.")
    selection: Literal["validation", "confident"] = Field(
        "validation", description="How the best state is chosen at the end. validation: the highest "
        "validation objective. confident: the finalists (the population and every baseline) are scored on "
        "the validation rows plus the training rows that are not among their demos, and a searched "
        "candidate replaces the best baseline only when its paired gain there has a 95% CI above 0.")
    instruction_candidates: list[str] = Field(
        default_factory=list,
        description="Instruction variants a candidate may take (each proposal keeps the parent's "
        "instructions or picks one of these at random).")


@dataclass
class Observation:
    """One training row after the parent program ran on it."""

    inputs: dict[str, Any]
    y_true: dict[str, Any]
    y_pred: dict[str, Any] | None
    reward: float | None
    scores: dict[str, float | None] = field(default_factory=dict)  # each reward's and metric's value
    error: str | None = None  # why the program's reply failed (unparseable, an error), when it did
    raw: str | None = None  # the reply, when it could not be parsed


class CandidateRunner(Protocol):
    """What an optimizer may ask of the loop's runner (rewardctl.runner.Runner)."""

    spec: Any  # the program's ProgramSpec
    client: Any  # the program's LMClient (its cache is the run's response cache)
    calls: int  # model replies so far, cached ones included (what max_calls counts)

    async def run(self, state: ProgramState, rows: list[Any]) -> list[Any]: ...

    async def mean(self, state: ProgramState, rows: list[Any]) -> float: ...

    async def sample(self, state: ProgramState, reference: ProgramState | None, rows: list[Any], *,
                     n: int, max_tokens: int, seed: int) -> list[Any]: ...


class Optimizer:
    config_model: ClassVar[type[OptimizerConfig]] = OptimizerConfig

    def __init__(self, config: OptimizerConfig, outputs: dict[str, Any]):
        self.config = config
        self.outputs = list(outputs)  # output field names: a demo needs all of them
        self.string_fields = {name: spec.type == "string" for name, spec in outputs.items()}

    @classmethod
    def type_name(cls) -> str:
        return cls.config_model.model_fields["type"].default

    def get_config(self) -> dict[str, Any]:
        return {"type": self.config.type, **self.config.model_dump(mode="json", exclude_defaults=True)}

    @classmethod
    def model_problem(cls, model: ModelConfig) -> str | None:
        """Why this optimizer cannot run the program's ``model``, or None. rewardctl optimize
        asks before it reads the data or calls any model."""
        return None

    @classmethod
    def config_problem(cls, config: OptimizerConfig, model: ModelConfig) -> tuple[str, str] | None:
        """(option, why) when these options cannot run ``model`` (reflective's kl_beta on a model
        that cannot sample), else None; asked with model_problem, before any data is read."""
        return None

    # --- to implement ---
    def observe(self, observations: list[Observation]) -> None:
        """Record a training batch's results."""

    def start_epoch(self) -> None:
        """Called at the beginning of every epoch."""

    def propose(self, parent: ProgramState, rng: random.Random) -> ProgramState | None:
        raise TypeError(f"{type(self).__name__} must define propose")

    async def propose_with_model(self, runner: CandidateRunner, parent: ProgramState,
                                 rng: random.Random) -> ProgramState | None:
        """What the loop calls: an optimizer that asks a model for its proposal (reflective)
        overrides this; the default is ``propose``. Calls it makes count toward max_calls
        (``runner.calls``)."""
        return self.propose(parent, rng)

    async def evaluate(self, runner: CandidateRunner, state: ProgramState, rows: list[Any], seed: int) -> StepScore:
        """Score a candidate on rows: ``objective`` decides selection; the other statistics go
        into the step's history. Default: the mean reward of the program's (greedy) outputs."""
        return step_score(objective=await runner.mean(state, rows))

    def after_step(self, stats: StepScore) -> None:
        """Called after each step's candidate was scored (the kl optimizer adapts beta here)."""

    def set_reference(self, state: ProgramState) -> None:
        """The program a KL is measured against (the initial one, or --reference)."""

    def set_labeled(self, examples: list[Example]) -> None:
        """Training rows with complete references (bootstrap_few_shot's teacher shows them)."""

    def teacher(self, parent: ProgramState, rng: random.Random) -> ProgramState:
        """The program that runs on a training batch to produce the observations; default: the parent."""
        return parent

    def run_warnings(self) -> list[str]:
        """The optimizer's own warnings (a failed reflection call), for the report."""
        return []

    def own_clients(self) -> list[Any]:
        """LMClients the optimizer calls besides the program's (a separate reflection model): the
        report's usage adds theirs."""
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # --- shared helpers ---
    def complete(self, output: dict[str, Any] | None) -> bool:
        return output is not None and all(name in output for name in self.outputs)

    def pick_instructions(self, parent: ProgramState, rng: random.Random) -> str | None:
        options = self.config.instruction_candidates
        if not options:
            return parent.instructions
        return rng.choice([parent.instructions, *options])

    def demo_count(self, rng: random.Random, available: int, lo: int, hi: int) -> int:
        return min(available, rng.randint(lo, hi))

    def reference_output(self, obs: Observation) -> dict[str, Any] | None:
        """A demo output built on the row's reference. A reference that lacks output fields (a
        chain-of-thought dataset has the answer, not the reasoning) takes them from the program's
        own prediction for the row, or leaves a missing text field empty when there is none: the
        demo shows the whole format with the right answer."""
        if self.complete(obs.y_true):
            return obs.y_true
        output: dict[str, Any] = {}
        for name in self.outputs:
            if name in obs.y_true:
                output[name] = obs.y_true[name]
            elif obs.y_pred is not None and name in obs.y_pred:
                output[name] = obs.y_pred[name]
            elif self.string_fields.get(name):
                output[name] = ""
            else:
                return None
        return output


def demo(inputs: dict[str, Any], output: dict[str, Any], outputs: list[str]) -> Example:
    return Example(input=inputs, output={name: output[name] for name in outputs})


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")


def step_score(**stats: Any) -> StepScore:
    """A candidate's scores (``evaluate``'s result), as the optimize report records a step."""
    # Start-up time: the spec imports every optimizer; only an optimize run builds its records.
    from rewardctl.records.optimize import StepScore

    return StepScore(**stats)
