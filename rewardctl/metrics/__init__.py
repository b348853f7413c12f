"""Run-level metrics (one module per metric type) behind a registry."""

from rewardctl.metrics import classification, field_f1, pass_at_k  # noqa: F401  (registers them)
from rewardctl.metrics.base import METRICS, MetricConfig, RunMetric

__all__ = ["METRICS", "MetricConfig", "RunMetric"]
