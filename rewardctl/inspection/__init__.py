"""`rewardctl inspect-rewards`: check rewards before trusting them.

The spec's rewards and per-example metrics are run on a population of outputs (saved predictions,
the program's own outputs with `--generate`, or the references alone) and on perturbations of
them, and each check (see `checks`) reports pass, warn, fail (or skip, with the reason) with its
evidence. Values are inspected raw (before normalization and the failure policy).

- `probes`: the perturbations (bad outputs, meaningless edits);
- `context`: the population the checks look at, and their helpers;
- `checks`: the checks, one function each;
- `run`: loading the rows, running the checks in order, the report; the normalized spec.
"""

from rewardctl.inspection.context import InspectOptions
from rewardctl.inspection.run import Inspection, inspect_rewards, write_normalized_spec

__all__ = ["InspectOptions", "Inspection", "inspect_rewards", "write_normalized_spec"]
