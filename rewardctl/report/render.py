"""One place that turns any report into text: a renderer per (report type, format), looked up by
the report's type. Formats: json, markdown, html (and, as they come, junit)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from rewardctl.errors import InputError

R = TypeVar("R", bound=BaseModel)
Renderer = Callable[[Any], str]
FORMATS = ("json", "markdown", "html")
_RENDERERS: dict[tuple[type[BaseModel], str], Renderer] = {}


def renders(report_type: type[R], fmt: str) -> Callable[[Callable[[R], str]], Callable[[R], str]]:
    """Register ``fn`` as the ``fmt`` renderer of ``report_type`` (a decorator)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}")

    def register(fn: Callable[[R], str]) -> Callable[[R], str]:
        _RENDERERS[(report_type, fmt)] = fn
        return fn

    return register


def render_json(report: BaseModel) -> str:
    """report.json: the typed report as plain JSON (the same for every kind)."""
    return json.dumps(report.model_dump(mode="json"), ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def render(report: BaseModel, fmt: str) -> str:
    if fmt == "json":
        return render_json(report)
    for cls in type(report).__mro__:
        fn = _RENDERERS.get((cls, fmt))
        if fn is not None:
            return fn(report)
    raise InputError(f"no {fmt} rendering for a {type(report).__name__}")
