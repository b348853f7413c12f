"""bootstrap_few_shot: demos bootstrapped from the program's own successful predictions.

Each step, a teacher runs on the training batch: the parent program, shown `teacher_demos` labeled
training examples besides its own demos (so it can succeed from zero-shot, where a program alone
may never produce a trace; DSPy's BootstrapFewShot collects none with the embedded base model).
Predictions whose reward is at least `threshold` join the pool of bootstrapped demos, with the
program's own outputs (its reasoning too). A candidate is a random set of between `min_examples`
and `max_examples` demos from the pool (a random search); the best on validation is kept.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import Field, model_validator

from rewardctl.optimizers.base import OPTIMIZERS, Observation, Optimizer, OptimizerConfig, demo
from rewardctl.state import Example, ProgramState


class BootstrapFewShotConfig(OptimizerConfig):
    type: Literal["bootstrap_few_shot"] = "bootstrap_few_shot"
    min_examples: int = Field(1, ge=1, description="Fewest demos in a candidate.")
    max_examples: int = Field(4, ge=1, description="Most demos in a candidate.")
    threshold: float = Field(1.0, description="A prediction becomes a demo when its reward is at least this.")
    teacher_demos: int = Field(
        3, ge=0, description="Labeled training examples the teacher sees while bootstrapping (0: none).")
    max_pool: int = Field(64, ge=1, description="Most bootstrapped demos kept (the oldest are dropped).")

    @model_validator(mode="after")
    def _range(self) -> BootstrapFewShotConfig:
        if self.min_examples > self.max_examples:
            raise ValueError("min_examples must not exceed max_examples")
        return self


@OPTIMIZERS.register
class BootstrapFewShot(Optimizer):
    config_model = BootstrapFewShotConfig

    def __init__(self, config, outputs):
        super().__init__(config, outputs)
        self.pool: list[dict[str, Any]] = []
        self.labeled: list[Example] = []
        self.filled: list[dict[str, Any]] = []  # references completed from predictions

    def set_labeled(self, examples: list[Example]) -> None:
        """Training rows with complete references, for the teacher."""
        self.labeled = examples

    def teacher(self, parent: ProgramState, rng: random.Random) -> ProgramState:
        labeled = self.labeled or [Example(input=d["input"], output=d["output"]) for d in self.filled]
        k = min(self.config.teacher_demos, len(labeled))
        extra = rng.sample(labeled, k) if k else []
        return ProgramState(parent.instructions, [*extra, *parent.examples])

    def observe(self, observations: list[Observation]) -> None:
        known = {(str(d["input"])) for d in self.pool}
        if not self.labeled:  # incomplete references: fill them from predictions for the teacher
            seen = {str(d["input"]) for d in self.filled}
            for obs in observations:
                output = self.reference_output(obs)
                if output is not None and str(obs.inputs) not in seen:
                    self.filled.append({"input": obs.inputs, "output": output})
                    seen.add(str(obs.inputs))
        for obs in observations:
            if (self.complete(obs.y_pred) and obs.reward is not None and obs.reward >= self.config.threshold
                    and str(obs.inputs) not in known):
                self.pool.append({"input": obs.inputs, "output": obs.y_pred})
                known.add(str(obs.inputs))
        del self.pool[: max(0, len(self.pool) - self.config.max_pool)]

    def propose(self, parent: ProgramState, rng: random.Random) -> ProgramState | None:
        if not self.pool:
            return None
        k = self.demo_count(rng, len(self.pool), self.config.min_examples, self.config.max_examples)
        chosen = rng.sample(self.pool, k)
        return ProgramState(self.pick_instructions(parent, rng),
                            [demo(d["input"], d["output"], self.outputs) for d in chosen])

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "filled": self.filled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool = list(state.get("pool", []))
        self.filled = list(state.get("filled", []))
