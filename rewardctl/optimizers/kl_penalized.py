"""kl: maximize reward while a KL penalty keeps the program close to its reference.

Candidates are proposed as random_few_shot proposes them (demo sets, instruction variants). Each
is scored on sampled outputs by the objective

    objective = mean over samples of (reward(y) - beta * KL(candidate || reference)(y))

where y is drawn from the candidate's full distribution at temperature 1 (no top-k, top-p, min-p,
repetition penalty or minimum length) and the KL of a sample is the chosen estimator summed over
exactly the token ids drawn, scored under the candidate's prompt and the reference's prompt by
the same procedure, so the estimate is unbiased. The reference is the initial program, or
`rewardctl optimize --reference CHECKPOINT`. beta is fixed, or adaptive toward `target_kl`
(Ziegler et al.). A step whose mean KL leaves [0, 10] nats is flagged in the report: above 10 the
candidate has drifted far; below 0 (k1 only) the estimate is noisy.

A reward that can be gamed (paying for emojis, for length) is won by drifting into outputs the
reference would rarely write; the penalty makes that drift cost what it is worth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from rewardctl.kl import AdaptiveKLController, FixedKLController, sequence_kl
from rewardctl.modelconfig import ModelConfig
from rewardctl.optimizers.base import OPTIMIZERS, CandidateRunner, step_score
from rewardctl.optimizers.random_few_shot import RandomFewShot, RandomFewShotConfig
from rewardctl.state import ProgramState

if TYPE_CHECKING:
    from rewardctl.records.optimize import StepScore

KL_BAND = (0.0, 10.0)


class KLConfig(RandomFewShotConfig):
    type: Literal["kl"] = "kl"
    baseline_demos: list[int] = Field(
        default_factory=list, description="As for every optimizer, but none by default: each baseline costs a "
        "sampled evaluation of the validation set (samples_per_row outputs a row, token by token).")
    beta: float = Field(0.1, ge=0, description="The KL coefficient; with adaptive, its initial value.")
    adaptive: bool = Field(False, description="Adapt beta toward target_kl (Ziegler et al.).")
    target_kl: float = Field(6.0, gt=0, description="adaptive: the KL (nats) beta steers toward.")
    horizon: int = Field(10000, gt=0, description="adaptive: how slowly beta moves.")
    estimator: Literal["k1", "k2", "k3"] = Field(
        "k1", description="Per-token KL estimator in the objective (k1 and k3 are unbiased).")
    samples_per_row: int = Field(2, ge=1, description="Sampled outputs per validation row.")
    max_sample_tokens: int = Field(48, ge=1, description="Most tokens in one sampled output.")


@OPTIMIZERS.register
class KLPenalized(RandomFewShot):
    config_model = KLConfig

    def __init__(self, config, outputs):
        super().__init__(config, outputs)
        if config.adaptive:
            self.controller: Any = AdaptiveKLController(config.beta, config.target_kl, config.horizon)
        else:
            self.controller = FixedKLController(config.beta)
        self.reference: ProgramState | None = None

    @classmethod
    def model_problem(cls, model: ModelConfig) -> str | None:
        """Sampling token by token from the full distribution, and scoring exactly those tokens,
        needs the embedded model (local/) and a completion prompt (prompt_format fields)."""
        if not model.is_local:
            return (f"needs token-by-token sampling from the model's full distribution, which only "
                    f"local/ models give; {model.name} is not a local/ model")
        if model.resolved_format != "fields":
            return (f"needs token-by-token sampling of a completion prompt (prompt_format fields); "
                    f"{model.name} has prompt_format {model.resolved_format}")
        return None

    def set_reference(self, state: ProgramState) -> None:
        self.reference = state

    async def evaluate(self, runner: CandidateRunner, state: ProgramState, rows: list[Any], seed: int) -> StepScore:
        import numpy as np  # start-up time: the spec imports every optimizer, only this step needs numpy

        cfg = self.config
        samples = await runner.sample(state, self.reference, rows, n=cfg.samples_per_row,
                                      max_tokens=cfg.max_sample_tokens, seed=seed)
        beta = self.controller.value
        kls = [sequence_kl(s.logprobs, s.ref_logprobs, cfg.estimator) for s in samples]
        rewards = [s.reward if s.reward is not None else 0.0 for s in samples]
        entropies = [float(np.mean(s.entropies)) if s.entropies else 0.0 for s in samples]
        kl = float(np.mean(kls)) if kls else 0.0
        kl_stderr = float(np.std(kls, ddof=1) / np.sqrt(len(kls))) if len(kls) > 1 else 0.0
        score = float(np.mean(rewards)) if rewards else 0.0
        return step_score(
            objective=score - beta * kl, score=score, kl=kl, kl_stderr=kl_stderr, beta=beta,
            non_score_reward=-beta * kl, entropy=float(np.mean(entropies)) if entropies else 0.0,
            samples=len(samples), kl_in_band=KL_BAND[0] <= kl <= KL_BAND[1], kl_negative=kl < 0)

    def after_step(self, stats: StepScore) -> None:
        self.controller.update(stats.kl or 0.0, stats.samples or 0)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "beta": self.controller.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "beta" in state:
            self.controller.value = float(state["beta"])
