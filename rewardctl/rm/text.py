"""How a reward model sees a row: a prompt text and a response text.

The same rendering serves training (`rewardctl train-reward`, whose pairs may hold strings or
objects) and scoring (the `reward_model` reward, built from chosen input and output fields), so a
model is scored on text shaped like the text it was trained on: a single field is its value; several
are `name: value` lines; non-string values are written as JSON.
"""

from __future__ import annotations

import json
from typing import Any


def render(value: Any, fields: list[str] | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        items = [(k, value[k]) for k in (fields or list(value)) if k in value]
        if len(items) == 1:
            return render(items[0][1])
        return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in items)
    return json.dumps(value, ensure_ascii=False)
