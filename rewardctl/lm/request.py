"""What the LM layer sends: one request, built by the program layer's prompt formats."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Request:
    """What the LM layer sends: chat messages (a single raw prompt for completion models)."""

    messages: list[dict[str, str]]
    stop: list[str] = field(default_factory=list)
    completion: bool = False  # the messages hold one raw completion prompt (base models)
