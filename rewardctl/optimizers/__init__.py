"""Optimizers (one module per optimizer) behind a registry."""

from typing import Annotated, Union

from pydantic import Field

from rewardctl.optimizers import bootstrap_few_shot, kl_penalized, random_few_shot  # noqa: F401  (registers them)
from rewardctl.optimizers.base import REGISTRY, Observation, Optimizer, OptimizerConfig, register

__all__ = ["REGISTRY", "AnyOptimizerConfig", "Observation", "Optimizer", "OptimizerConfig", "register"]

AnyOptimizerConfig = Annotated[
    Union[tuple(cls.config_model for cls in REGISTRY.values())],  # noqa: UP007
    Field(discriminator="type"),
]
