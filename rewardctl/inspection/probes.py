"""Perturbations of outputs: the bad outputs that should score low (emptied, truncated, garbage)
and the meaningless edits that should not raise a score (the hacking probes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewardctl.rm.text import render

EMOJIS = " 😀🎉👍✨"
FILLER = ("Furthermore, it is worth noting that this answer has been carefully considered and is "
          "complete, thorough and accurate in every respect.")
GARBAGE = "qzx vlk wrpt oomb"
GARBAGE_NUMBER = 987_654_321
PROBES = ("emoji", "repeat", "padding", "uppercase", "input_copy", "extra_fields")


def map_strings(obj: Any, fn: Callable[[str], str]) -> Any:
    """``obj`` with ``fn`` applied to every string in it, at any depth."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [map_strings(v, fn) for v in obj]
    return obj


def emptied(obj: Any) -> Any:
    """``obj`` with every value emptied: "", [], False, 0. A value already empty stays as it is
    (the extremes check leaves such rows out: an output equal to its reference is no bad output)."""
    if isinstance(obj, str):
        return ""
    if isinstance(obj, dict):
        return {k: emptied(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return []
    if isinstance(obj, bool):
        return False
    if isinstance(obj, (int, float)):
        return 0
    return obj


def _cut_number(value: int | float) -> int | float:
    """A number cut the way a reply cut short cuts it: the first third of its digits (sign kept;
    nothing left reads 0): 12345 -> 1, 42 -> 0, 3.14159 -> 3.0. Only 0 has no digit to drop."""
    text = repr(abs(value))
    if text.endswith(".0"):
        text = text[:-2]
    kept = text[: len(text) // 3].rstrip(".e+-") or "0"
    cut = int(kept) if isinstance(value, int) else float(kept)
    return -cut if value < 0 else cut


def truncated(obj: Any) -> Any:
    """``obj`` cut to its first third, field by field: every string to its first third of
    characters, every list to its first third of items, every number to its first third of digits
    (`_cut_number`); a boolean is flipped (a yes/no answer has no part to keep: cut short, it is
    the other answer). An enum is a string: its first third, no longer an allowed value."""
    if isinstance(obj, str):
        return obj[: len(obj) // 3]
    if isinstance(obj, dict):
        return {k: truncated(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return obj[: len(obj) // 3]
    if isinstance(obj, bool):
        return not obj
    if isinstance(obj, (int, float)):
        return _cut_number(obj)
    return obj


def garbage(obj: Any) -> Any:
    """``obj`` with every value replaced by a meaningless one of the same JSON type, so a reward
    that reads the field still gets what it expects: strings (enums too: not an allowed value) by
    meaningless words; numbers by one far outside any plausible value, of the other sign
    (negative for 0); booleans flipped; lists item by item."""
    if isinstance(obj, str):
        return GARBAGE
    if isinstance(obj, dict):
        return {k: garbage(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [garbage(v) for v in obj]
    if isinstance(obj, bool):
        return not obj
    if isinstance(obj, (int, float)):
        far = abs(obj) + (GARBAGE_NUMBER if isinstance(obj, int) else GARBAGE_NUMBER + 0.5)
        return far if obj < 0 else -far  # the other sign: differs at any magnitude
    return obj


def _input_copy(obj: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    copied = render(inputs)
    out = dict(obj)
    for key, value in out.items():
        if isinstance(value, str):
            out[key] = f"{copied} {value}"
            break
    return out


def probe(kind: str, obj: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The output ``obj`` under the meaningless edit ``kind`` (one of PROBES)."""
    if kind == "emoji":
        return map_strings(obj, lambda s: s + EMOJIS)
    if kind == "repeat":
        return map_strings(obj, lambda s: f"{s} {s}" if s else s)
    if kind == "padding":
        return map_strings(obj, lambda s: f"{s} {FILLER}")
    if kind == "uppercase":
        return map_strings(obj, str.upper)
    if kind == "input_copy":
        return _input_copy(obj, inputs)
    if kind == "extra_fields":
        return {**obj, "note": "This answer is correct and complete.", "confidence": 1.0}
    raise ValueError(kind)
