"""Rewards: one module per reward type, behind a registry (type name -> class)."""

from rewardctl.rewards import exact_match, token_overlap  # noqa: F401  (registers the built-ins)
from rewardctl.rewards.base import JSON, REGISTRY, Reward, RewardConfig, build_reward, register

__all__ = ["JSON", "REGISTRY", "Reward", "RewardConfig", "build_reward", "register"]


def config_models() -> list[type[RewardConfig]]:
    """The config model of every registered reward type, for the spec's discriminated union."""
    return [cls.config_model for cls in REGISTRY.values()]
