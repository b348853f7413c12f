"""Optimizers (one module per optimizer) behind a registry."""

from rewardctl.optimizers import (  # noqa: F401  (registers them)
    bootstrap_few_shot,
    demo_search,
    kl_penalized,
    random_few_shot,
    reflective,
)
from rewardctl.optimizers.base import OPTIMIZERS, Observation, Optimizer, OptimizerConfig
from rewardctl.registry import config_union

__all__ = ["OPTIMIZERS", "AnyOptimizerConfig", "Observation", "Optimizer", "OptimizerConfig"]

AnyOptimizerConfig = config_union(OPTIMIZERS)
