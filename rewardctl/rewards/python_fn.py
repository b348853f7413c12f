"""python: a user function, named explicitly in the spec, scores each example.

``function: "module:name"`` imports ``module`` (the spec's folder is searched first);
``function: "path/to/file.py:name"`` loads that file (relative to the spec's folder). Only the
code the spec names runs. The function receives ``(y_true, y_pred)`` after masks, plus
``inputs=`` if it has such a parameter, plus the entry's ``options`` as keyword arguments; it may
be async; it returns a number. With ``batched: true`` it receives lists and returns a list.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from rewardctl.errors import InputError, one_line
from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig


class PythonConfig(RewardConfig):
    type: Literal["python"] = "python"
    function: str = Field(description="'module:function' or 'path/to/file.py:function'.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the function.")
    batched: bool = Field(False, description="The function takes lists and returns a list.")

    @field_validator("function")
    @classmethod
    def _shape(cls, value: str) -> str:
        target, sep, name = value.rpartition(":")
        if not sep or not target or not name.isidentifier():
            raise ValueError("expected 'module:function' or 'path/to/file.py:function'")
        return value


def load_function(spec: str, base_dir: Path, field: str) -> Any:
    target, _, name = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target) if Path(target).is_absolute() else base_dir / target
            if not path.is_file():
                raise InputError(f"no such file: {path}", field=field)
            module_name = "rewardctl_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
        else:
            sys.path.insert(0, str(base_dir))
            try:
                module = importlib.import_module(target)
            finally:
                sys.path.remove(str(base_dir))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 (user code can fail to import in any way)
        raise InputError(f"cannot load {target}: {one_line(f'{type(exc).__name__}: {exc}')}", field=field) from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise InputError(f"{target} has no function '{name}'", field=field)
    return fn


class RowError(InputError):
    """The user's function failed on one row (raised, or returned something not a number). The
    scorer names the row's file and line when it knows them: ``data.jsonl:7: reward 'x' raised
    ValueError: ...``. It stops the run as any input error does (exit 2)."""


@REWARDS.register
class PythonReward(Reward):
    config_model = PythonConfig

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        self.fn = load_function(self.config.function, self.context.base_dir,
                                f"reward '{self.name}'.function")
        params = inspect.signature(self.fn).parameters
        self._wants_inputs = "inputs" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        self._is_async = inspect.iscoroutinefunction(self.fn)

    async def _call(self, *args: Any, inputs: Any) -> Any:
        kwargs = dict(self.config.options)
        if self._wants_inputs:
            kwargs["inputs"] = inputs
        try:
            result = self.fn(*args, **kwargs)
            if self._is_async or inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 (report the user's error in one line)
            raise RowError(f"reward '{self.name}' raised {one_line(f'{type(exc).__name__}: {exc}')}") from None
        return result

    async def compute_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON],
                            inputs: Sequence[JSON | None]) -> list[float]:
        if self.config.batched:
            values = await self._call(list(y_trues), list(y_preds), inputs=list(inputs))
            values = list(values)
            if len(values) != len(y_trues):
                raise InputError(f"returned {len(values)} values for {len(y_trues)} rows",
                                 field=f"reward '{self.name}'")
        elif self._is_async:
            values = await asyncio.gather(*(self._call(t, p, inputs=i)
                                            for t, p, i in zip(y_trues, y_preds, inputs, strict=True)))
        else:
            values = [await self._call(t, p, inputs=i) for t, p, i in zip(y_trues, y_preds, inputs, strict=True)]
        return [_number(v, self.name) for v in values]


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RowError(f"reward '{name}' returned {type(value).__name__}, not a number")
    return float(value)
