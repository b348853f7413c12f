"""Optimization checkpoints: versioned JSON (rewardctl.records.optimize.Checkpoint), written atomically.

A checkpoint holds the spec's fingerprint (of everything an optimizer does not change), the
trainable state it reached, the optimizer's config and state, the loop's population and history,
and the random generator's state, so `--resume` continues exactly where the run stopped.
An interrupted run also leaves run.partial.json (``RunSoFar``): the time and usage it had spent,
which `--resume` adds to its own.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rewardctl.errors import InputError
from rewardctl.io import atomic_write_text
from rewardctl.records.optimize import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, Checkpoint, RunSoFar
from rewardctl.spec import ProgramSpec
from rewardctl.state import ProgramState

PARTIAL_FILE = "run.partial.json"  # an interrupted run's time and usage so far, for --resume to add to


def fixed_fingerprint(spec: ProgramSpec) -> str:
    """Hash of the spec without its trainable state (examples, instructions), optimizer, and how
    datasets are read."""
    data = spec.model_dump(mode="json", exclude={"examples", "instructions", "optimizer", "data"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: list[Any]) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    text = json.dumps(checkpoint.model_dump(mode="json"), ensure_ascii=False, indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable checkpoint: {exc}", path=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise InputError("not a rewardctl checkpoint", path=str(path))
    if data.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"checkpoint version {data.get('version')} is not supported (expected "
                         f"{CHECKPOINT_VERSION})", path=str(path))
    try:
        return Checkpoint.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InputError(f"checkpoint is malformed: {where}: {error['msg']}", path=str(path)) from None


def write_run_so_far(out: Path, so_far: RunSoFar) -> None:
    atomic_write_text(out / PARTIAL_FILE, so_far.model_dump_json() + "\n")


def read_run_so_far(out: Path) -> RunSoFar | None:
    """What an interrupted run in ``out`` had spent; None when there is no readable record."""
    try:
        return RunSoFar.model_validate_json((out / PARTIAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def state_for(spec: ProgramSpec, checkpoint: Checkpoint, path: str | Path) -> ProgramState:
    """The learned state of a checkpoint, after checking it was made for this spec."""
    expected = fixed_fingerprint(spec)
    if checkpoint.spec_fingerprint != expected:
        raise InputError(
            f"this checkpoint was made for a different spec (fingerprint {checkpoint.spec_fingerprint}, "
            f"this spec {expected}); only examples and instructions may differ", path=str(path))
    return ProgramState.from_json(checkpoint.state.model_dump(mode="json"))


def load_state(spec: ProgramSpec, path: str | Path) -> ProgramState:
    """The learned state in the checkpoint at ``path`` (eval --checkpoint, optimize --reference)."""
    return state_for(spec, read_checkpoint(path), path)
