"""reward_model: a trained reward model scores (prompt, response) pairs.

The model is a local folder: a Hugging Face sequence-classification model, or a folder written by
`rewardctl train-reward`. The prompt is built from chosen input fields, the response from chosen
output fields (after masks); a single field is its value, several are `name: value` lines. The
model's output becomes the reward through `output`: the raw logit, its sigmoid, or the softmax
probability of a named label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from rewardctl.errors import InputError
from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig
from rewardctl.rm.scorer import get_scorer
from rewardctl.rm.text import render


class RewardModelConfig(RewardConfig):
    type: Literal["reward_model"] = "reward_model"
    model: str = Field(description="A local model folder, relative to the spec. Never downloaded.")
    prompt_fields: list[str] | None = Field(
        None, description="Input fields that make the prompt. Default: all inputs; [] for no prompt.")
    response_fields: list[str] | None = Field(
        None, description="Output fields that make the response (after masks). Default: all.")
    output: Literal["logit", "sigmoid", "softmax"] = Field(
        "logit", description="How the model's output becomes the reward.")
    label: str | int | None = Field(
        None, description="softmax (or a multi-label logit/sigmoid): the label whose value is the "
        "reward, by name (config id2label) or index.")
    device: str = Field("auto", description="'cpu', 'cuda', 'cuda:1', or 'auto' (a GPU when torch sees one).")
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(512, ge=8, description="Tokens per pair; longer pairs are truncated.")


@REWARDS.register
class RewardModel(Reward):
    config_model = RewardModelConfig

    def value_range(self) -> tuple[float, float] | None:
        return None if self.config.output == "logit" else (0.0, 1.0)

    def needs_reference(self) -> bool:
        return False

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        path = Path(self.config.model).expanduser()
        path = path if path.is_absolute() else self.context.base_dir / path
        self.scorer = get_scorer(path, device=self.config.device, batch_size=self.config.batch_size,
                                 max_length=self.config.max_length)

    def _label_index(self, labels: list[str]) -> int:
        label = self.config.label
        if label is None:
            if len(labels) == 1:
                return 0
            raise InputError(f"the model has {len(labels)} labels ({', '.join(labels)}); name one in 'label'",
                             field=f"reward '{self.name}'.label")
        if isinstance(label, int):
            if not 0 <= label < len(labels):
                raise InputError(f"label index {label} is out of range (0-{len(labels) - 1})",
                                 field=f"reward '{self.name}'.label")
            return label
        if label not in labels:
            raise InputError(f"no label '{label}' (labels: {', '.join(labels)})", field=f"reward '{self.name}'.label")
        return labels.index(label)

    async def compute_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON],
                            inputs: Sequence[JSON | None]) -> list[float]:
        prompt_fields = self.config.prompt_fields
        prompts = ["" if prompt_fields == [] else render(i, prompt_fields) for i in inputs]
        responses = [render(p, self.config.response_fields) for p in y_preds]
        await self.scorer.ensure_loaded()
        labels = self.scorer.labels
        if self.config.output == "softmax" and len(labels) < 2:
            raise InputError("softmax needs a model with several labels; this one has one (use logit or sigmoid)",
                             field=f"reward '{self.name}'.output")
        index = self._label_index(labels)
        logits = await self.scorer.logits(prompts, responses)
        out = []
        for row in logits:
            row = [float(x) for x in row]
            if self.config.output == "softmax":
                top = max(row)
                exp = [math.exp(x - top) for x in row]
                out.append(exp[index] / sum(exp))
            elif self.config.output == "sigmoid":
                x = row[index]
                out.append(1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x)))
            else:
                out.append(row[index])
        return out
