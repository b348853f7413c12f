"""Rewards: one module per reward type, behind a registry (type name -> class)."""

from typing import Annotated, Union

from pydantic import Field

from rewardctl.rewards import (  # noqa: F401  (importing registers the built-ins)
    clip_score,
    composite,
    contains,
    cosine_similarity,
    ensemble,
    exact_match,
    json_schema,
    length,
    lm_judge,
    python_fn,
    regex,
    reward_model,
    token_overlap,
)
from rewardctl.rewards.base import (
    JSON,
    REGISTRY,
    Reward,
    RewardConfig,
    RewardContext,
    build_reward,
    register,
)

__all__ = ["JSON", "REGISTRY", "Reward", "RewardConfig", "RewardContext", "build_reward", "register"]


def config_models() -> list[type[RewardConfig]]:
    """The config model of every registered reward type, for the spec's discriminated union."""
    return [cls.config_model for cls in REGISTRY.values()]


# Any reward entry, told apart by `type`; composite rewards nest them.
AnyRewardConfig = Annotated[Union[tuple(config_models())], Field(discriminator="type")]  # noqa: UP007
for _nesting in (composite.CompositeConfig, ensemble.EnsembleConfig):
    _nesting.model_rebuild(_types_namespace={"AnyRewardConfig": AnyRewardConfig})
