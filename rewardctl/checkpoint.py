"""Optimization checkpoints: versioned JSON, written atomically.

A checkpoint holds the spec's fingerprint (of everything an optimizer does not change), the
trainable state it reached, the optimizer's config and state, the loop's population and history,
and the random generator's state, so `--resume` continues exactly where the run stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from rewardctl.errors import InputError
from rewardctl.io import atomic_write_json
from rewardctl.state import ProgramState

FORMAT = "rewardctl-checkpoint"
VERSION = 1


def fixed_fingerprint(spec: Any) -> str:
    """Hash of the spec without its trainable state (examples, instructions) and optimizer."""
    data = spec.model_dump(mode="json", exclude={"examples", "instructions", "optimizer"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: list[Any]) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def write_checkpoint(path: Path, data: dict[str, Any]) -> None:
    atomic_write_json(path, {"format": FORMAT, "version": VERSION, **data})


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable checkpoint: {exc}", path=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError("not a rewardctl checkpoint", path=str(path))
    if data.get("version") != VERSION:
        raise InputError(f"checkpoint version {data.get('version')} is not supported (expected {VERSION})",
                         path=str(path))
    return data


def state_for(spec: Any, checkpoint: dict[str, Any], path: str | Path) -> ProgramState:
    """The learned state of a checkpoint, after checking it was made for this spec."""
    expected = fixed_fingerprint(spec)
    if checkpoint.get("spec_fingerprint") != expected:
        raise InputError(
            f"this checkpoint was made for a different spec (fingerprint {checkpoint.get('spec_fingerprint')}, "
            f"this spec {expected}); only examples and instructions may differ", path=str(path))
    try:
        return ProgramState.from_json(checkpoint["state"])
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"checkpoint state is malformed: {exc}", path=str(path)) from None
