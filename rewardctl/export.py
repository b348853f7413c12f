"""`rewardctl export`: a spec holding the learned state of a checkpoint.

The spec's own YAML data is kept, with `examples` and `instructions` replaced by the checkpoint's
and a header naming where they came from; the result is checked by loading it back. Comments of
the original are not carried over. Relative paths in the spec (reward models, python rewards,
sidecars) resolve against the new file's folder, so write it next to the original.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from rewardctl.checkpoint import read_checkpoint, state_for
from rewardctl.errors import InputError
from rewardctl.io import atomic_write_text
from rewardctl.spec import load_spec
from rewardctl.yamlload import load_yaml


def export_spec(spec_path: str | Path, checkpoint_path: str | Path, out: str | Path) -> int:
    spec = load_spec(spec_path)
    checkpoint = read_checkpoint(checkpoint_path)
    state = state_for(spec, checkpoint, checkpoint_path)
    data = load_yaml(Path(spec_path).read_text(encoding="utf-8-sig"), str(spec_path)).data
    data = dict(data)
    if state.instructions is not None:
        data["instructions"] = state.instructions
    else:
        data.pop("instructions", None)
    data["examples"] = [e.model_dump(mode="json") for e in state.examples]
    val = "n/a" if checkpoint.best.val is None else checkpoint.best.val
    header = (f"# Exported by rewardctl from {checkpoint_path} (epoch {checkpoint.epoch}, "
              f"validation reward {val}).\n")
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    out = Path(out)
    atomic_write_text(out, text)
    try:
        load_spec(out)
    except InputError as exc:
        raise InputError(f"the exported spec does not load ({exc}); write it next to the original so "
                         "relative paths still resolve") from None
    return len(state.examples)
