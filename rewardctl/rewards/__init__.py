"""Rewards: one module per reward type, behind a registry (type name -> class)."""

from rewardctl.registry import config_union
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
from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig, RewardContext

__all__ = ["JSON", "REWARDS", "AnyRewardConfig", "Reward", "RewardConfig", "RewardContext"]

# Any reward entry, told apart by `type`; composite rewards nest them.
AnyRewardConfig = config_union(REWARDS)
for _nesting in (composite.CompositeConfig, ensemble.EnsembleConfig):
    _nesting.model_rebuild(_types_namespace={"AnyRewardConfig": AnyRewardConfig})
