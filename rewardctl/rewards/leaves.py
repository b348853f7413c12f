"""JSON leaves by key path, shared by the rewards that compare field by field."""

from __future__ import annotations

import json
from typing import Any


def leaves(value: Any, path: str = "") -> dict[str, str]:
    """Flatten JSON to ``{key path: text}`` (``answer``, ``steps[0].text``); non-string leaves
    are written as JSON, null as the empty string."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for key, child in value.items():
            out.update(leaves(child, f"{path}.{key}" if path else str(key)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out.update(leaves(child, f"{path}[{i}]"))
    elif isinstance(value, str):
        out[path] = value
    elif value is not None:
        out[path] = json.dumps(value, ensure_ascii=False)
    else:
        out[path] = ""
    return out


def paired_leaves(y_true: Any, y_pred: Any) -> list[tuple[str, str, str]]:
    """(path, true text, predicted text) over the union of both sides' leaf paths; a leaf
    missing on one side pairs with the empty string. A null where the other side has an object
    or a list is not also paired with a missing leaf (that would count as one agreement)."""
    true_leaves, pred_leaves = leaves(y_true), leaves(y_pred)
    pairs = []
    for path in dict.fromkeys([*true_leaves, *pred_leaves]):
        true_text, pred_text = true_leaves.get(path), pred_leaves.get(path)
        one_side = pred_text if true_text is None else true_text if pred_text is None else None
        if one_side == "" and path:
            other = pred_leaves if true_text is not None else true_leaves
            if any(p.startswith((path + ".", path + "[")) for p in other):
                continue
        pairs.append((path, true_text or "", pred_text or ""))
    return pairs
