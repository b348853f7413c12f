"""A program's trainable state: its demos (examples) and instructions. Optimizers change these;
everything else in a spec stays fixed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict


class Example(BaseModel):
    """A few-shot demonstration: an input and the output the program should give."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    input: dict[str, Any]
    output: dict[str, Any]


@dataclass
class ProgramState:
    instructions: str | None
    examples: list[Example]

    def to_json(self) -> dict[str, Any]:
        return {"instructions": self.instructions,
                "examples": [e.model_dump(mode="json") for e in self.examples]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProgramState:
        return cls(data.get("instructions"), [Example.model_validate(e) for e in data.get("examples", [])])

    def key(self) -> str:
        """Identity of a state (two candidates with the same demos and instructions are one)."""
        return json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)
