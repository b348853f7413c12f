"""random_few_shot: Synalinks's RandomFewShot, seeded.

Each step, the parent program runs on a training batch and every row gets its reward. A candidate
takes between `min_examples` and `max_examples` demos drawn, without replacement, from the epoch's
training rows, with probabilities from a softmax over the rows' rewards divided by `temperature`
(`sampling: random` draws uniformly, `best` takes the highest). A demo is the row's input with its
reference output (`demo_output: reference`), or with the program's own output
(`prediction`, as Synalinks does, when it scored at least `min_prediction_reward`). A reference
that lacks some output fields (a chain-of-thought dataset holds the answer, not the reasoning)
takes them from the program's prediction for that row (see Optimizer.reference_output).
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal

from pydantic import Field, model_validator

from rewardctl.optimizers.base import OPTIMIZERS, Observation, Optimizer, OptimizerConfig, demo
from rewardctl.state import ProgramState


class RandomFewShotConfig(OptimizerConfig):
    type: Literal["random_few_shot"] = "random_few_shot"
    min_examples: int = Field(1, ge=0, description="Fewest demos in a candidate.")
    max_examples: int = Field(4, ge=1, description="Most demos in a candidate.")
    sampling: Literal["softmax", "random", "best"] = Field("softmax", description="How demos are drawn.")
    temperature: float = Field(0.3, gt=0, description="softmax: lower concentrates on high-reward rows.")
    demo_output: Literal["reference", "prediction"] = Field(
        "reference", description="A demo's output: the row's reference, or the program's prediction.")
    min_prediction_reward: float = Field(
        1.0, description="A prediction used as a demo must have scored at least this.")

    @model_validator(mode="after")
    def _range(self) -> RandomFewShotConfig:
        if self.min_examples > self.max_examples:
            raise ValueError("min_examples must not exceed max_examples")
        return self


@OPTIMIZERS.register
class RandomFewShot(Optimizer):
    config_model = RandomFewShotConfig

    def __init__(self, config, outputs):
        super().__init__(config, outputs)
        self.pool: list[dict[str, Any]] = []  # this epoch's rows usable as demos, with their reward

    def start_epoch(self) -> None:
        self.pool = []

    def _demo_output(self, obs: Observation) -> dict[str, Any] | None:
        if self.config.demo_output == "prediction":
            ok = self.complete(obs.y_pred) and (obs.reward or 0.0) >= self.config.min_prediction_reward
            return obs.y_pred if ok else None
        return self.reference_output(obs)

    def observe(self, observations: list[Observation]) -> None:
        for obs in observations:
            output = self._demo_output(obs)
            if output is not None:
                self.pool.append({"input": obs.inputs, "output": output, "reward": obs.reward or 0.0})

    def propose(self, parent: ProgramState, rng: random.Random) -> ProgramState | None:
        cfg = self.config
        if not self.pool:
            return None
        k = self.demo_count(rng, len(self.pool), cfg.min_examples, cfg.max_examples)
        if cfg.sampling == "best":
            chosen = sorted(self.pool, key=lambda d: -d["reward"])[:k]
        elif cfg.sampling == "random":
            chosen = rng.sample(self.pool, k)
        else:
            chosen = weighted_sample(self.pool, [d["reward"] / cfg.temperature for d in self.pool], k, rng)
        demos = [demo(d["input"], d["output"], self.outputs) for d in chosen]
        return ProgramState(self.pick_instructions(parent, rng), demos)

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool = list(state.get("pool", []))


def weighted_sample(items: list[Any], logits: list[float], k: int, rng: random.Random) -> list[Any]:
    """k items without replacement, each draw proportional to softmax(logits) of what is left."""
    items, logits = list(items), list(logits)
    chosen = []
    for _ in range(min(k, len(items))):
        top = max(logits)
        weights = [math.exp(x - top) for x in logits]
        pick = rng.random() * sum(weights)
        index = len(weights) - 1
        for i, w in enumerate(weights):
            pick -= w
            if pick <= 0:
                index = i
                break
        chosen.append(items.pop(index))
        logits.pop(index)
    return chosen
