"""rewardctl: evaluate and optimize LM programs from a YAML spec."""

__version__ = "0.1.0"
