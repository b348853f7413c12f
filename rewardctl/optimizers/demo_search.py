"""demo_search: the default optimizer. A search over how many demos (1 to 16) and which ones,
from labeled training rows and from the program's own successful traces, every candidate scored
on the whole validation set.

The simple baselines (zero-shot, the spec's demos, 3 and 8 labeled demos) are candidates of every
run (rewardctl.optimize), so this search starts from the best of them and keeps a candidate only
when it scores higher on the same validation rows. Each step, a teacher (the parent shown
`teacher_demos` labeled examples, as bootstrap_few_shot does) runs on the training batch; its
successful predictions join a pool of traces. A candidate takes a size from `sizes` (at most the
demos available) and draws that many demos without replacement from the labeled rows and the
traces (a trace replaces the labeled row of the same input: it shows the program's own format,
its reasoning too). Candidates are scored on all validation rows (`val_batch_size: 0`), so
scores of different steps compare directly.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import Field

from rewardctl.optimizers.base import OPTIMIZERS, demo
from rewardctl.optimizers.bootstrap_few_shot import BootstrapFewShot, BootstrapFewShotConfig
from rewardctl.state import ProgramState


class DemoSearchConfig(BootstrapFewShotConfig):
    type: Literal["demo_search"] = "demo_search"
    epochs: int = Field(2, ge=1, description="Passes over the training set.")
    val_batch_size: int = Field(0, ge=0, description="Validation rows that score a new candidate; 0: all.")
    max_examples: int = Field(16, ge=1, description="Most demos in a candidate.")
    selection: Literal["validation", "confident"] = Field(
        "confident", description="How the best state is chosen (see OptimizerConfig); confident: a searched "
        "candidate must beat the best baseline with a paired 95% CI above 0 on validation plus training rows.")
    sizes: list[int] = Field(default_factory=lambda: [1, 2, 4, 6, 8, 12, 16],
                             description="Demo counts a candidate may take (capped by max_examples and "
                             "by the demos available).")


@OPTIMIZERS.register
class DemoSearch(BootstrapFewShot):
    config_model = DemoSearchConfig

    def candidates(self) -> list[dict[str, Any]]:
        """Labeled rows and traces, one per input (the trace when there is one)."""
        by_input: dict[str, dict[str, Any]] = {}
        for example in self.labeled:
            by_input[str(example.input)] = {"input": example.input, "output": example.output}
        for row in [*self.filled, *self.pool]:
            by_input[str(row["input"])] = row
        return list(by_input.values())

    def propose(self, parent: ProgramState, rng: random.Random) -> ProgramState | None:
        available = self.candidates()
        sizes = [k for k in self.config.sizes if self.config.min_examples <= k <= self.config.max_examples]
        sizes = sorted({min(k, len(available)) for k in sizes if k > 0})
        if not available or not sizes:
            return None
        chosen = rng.sample(available, rng.choice(sizes))
        return ProgramState(self.pick_instructions(parent, rng),
                            [demo(d["input"], d["output"], self.outputs) for d in chosen])
