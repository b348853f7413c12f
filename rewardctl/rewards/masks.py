"""Field masks on nested JSON: ``in_mask`` keeps fields, ``out_mask`` drops them.

Keys match as in Synalinks: after removing a numeric suffix and singularizing the last word
(``answers`` ~ ``answer``, ``answer_1`` ~ ``answer``). Patterns are regexes searched in that base
key. Two deliberate differences from Synalinks (docs/synalinks.md explains them):

- an ``in_mask`` key that names an object keeps that object's whole subtree (Synalinks keeps the
  key but empties the object, so a reward then compares ``{}`` with ``{}``);
- a mask entry that matches no field is an error (Synalinks empties both sides and the reward
  scores a perfect 1.0 without comparing anything).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from rewardctl.datamodel import DataModel

_SUFFIX = re.compile(r"_\d+$")
_IRREGULAR_SINGULARS = {
    "children": "child", "people": "person", "men": "man", "women": "woman", "mice": "mouse",
    "geese": "goose", "feet": "foot", "teeth": "tooth", "data": "datum", "criteria": "criterion",
    "phenomena": "phenomenon", "indices": "index", "matrices": "matrix", "vertices": "vertex",
    "analyses": "analysis", "bases": "basis", "crises": "crisis", "hypotheses": "hypothesis",
    "theses": "thesis", "diagnoses": "diagnosis", "media": "medium", "lives": "life",
    "knives": "knife", "wives": "wife", "leaves": "leaf", "halves": "half", "selves": "self",
    "series": "series", "species": "species", "news": "news", "sheep": "sheep", "fish": "fish",
    "these": "this", "those": "that", "quizzes": "quiz", "heroes": "hero", "potatoes": "potato",
    "tomatoes": "tomato", "echoes": "echo", "fungi": "fungus", "cacti": "cactus", "radii": "radius",
    "stimuli": "stimulus", "syllabi": "syllabus", "formulae": "formula", "appendices": "appendix",
}


def _singular(word: str) -> str:
    if word in _IRREGULAR_SINGULARS:
        return _IRREGULAR_SINGULARS[word]
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("es"):
        stem = word[:-2]
        if re.search(r"([sxz]|sh|ch)$", stem):
            return stem
        return word[:-1]
    if word.endswith("s"):
        return word[:-1]
    return word


@lru_cache(maxsize=4096)
def base_key(key: str) -> str:
    """The key with its numeric suffix removed and its last word singularized."""
    words = _SUFFIX.sub("", key).split("_")
    words[-1] = _singular(words[-1])
    return "_".join(words)


class KeyMatcher:
    def __init__(self, keys: Iterable[str] | None, pattern: str | None):
        self.keys = {base_key(k) for k in keys or ()}
        self.pattern = re.compile(pattern) if pattern else None

    def __bool__(self) -> bool:
        return bool(self.keys) or self.pattern is not None

    def matches(self, key: str) -> bool:
        base = base_key(key)
        return base in self.keys or (self.pattern is not None and self.pattern.search(base) is not None)


_EMPTY = object()


def keep_only(value: Any, matcher: KeyMatcher) -> Any:
    """in_mask: keep matching keys (with their whole subtree) and the paths that lead to them."""
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            if matcher.matches(key):
                out[key] = child
            elif isinstance(child, (dict, list)):
                kept = keep_only(child, matcher)
                if kept is not _EMPTY:
                    out[key] = kept
        return out if out else _EMPTY
    if isinstance(value, list):
        kept_items = [keep_only(item, matcher) for item in value]
        if all(item is _EMPTY for item in kept_items):
            return _EMPTY
        return [item for item in kept_items if item is not _EMPTY]
    return _EMPTY


def drop(value: Any, matcher: KeyMatcher) -> Any:
    """out_mask: remove matching keys at every depth."""
    if isinstance(value, dict):
        return {k: drop(v, matcher) for k, v in value.items() if not matcher.matches(k)}
    if isinstance(value, list):
        return [drop(item, matcher) for item in value]
    return value


class Masks:
    """The masks of one reward: in_mask first, then out_mask, on y_true and y_pred alike."""

    def __init__(self, in_mask=None, out_mask=None, in_mask_pattern=None, out_mask_pattern=None):
        self.keep = KeyMatcher(in_mask, in_mask_pattern)
        self.remove = KeyMatcher(out_mask, out_mask_pattern)
        self.active = bool(self.keep) or bool(self.remove)

    def __bool__(self) -> bool:
        return self.active

    def apply(self, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        if obj is None:
            return None
        if self.keep:
            kept = keep_only(obj, self.keep)
            obj = {} if kept is _EMPTY else kept
        if self.remove:
            obj = drop(obj, self.remove)
        return obj


def schema_template(fields: DataModel) -> dict[str, Any]:
    """A value shaped like the data model (nested keys included), for static mask analysis."""

    def shape(spec):
        if spec.type == "object":
            return schema_template(spec.properties or {})
        if spec.type == "list" and spec.items is not None and spec.items.type in ("object", "list"):
            return [shape(spec.items)]
        return ""

    return {name: shape(spec) for name, spec in fields.items()}


def schema_keys(fields: DataModel) -> list[str]:
    """Every key of a data model, nested ones included."""
    keys: list[str] = []
    for name, spec in fields.items():
        keys.append(name)
        inner = spec
        while inner.type == "list" and inner.items is not None:
            inner = inner.items
        if inner.type == "object" and inner.properties:
            keys.extend(schema_keys(inner.properties))
    return keys


def unmatched_mask_entries(fields: DataModel, in_mask=None, out_mask=None, in_mask_pattern=None,
                           out_mask_pattern=None) -> list[str]:
    """Mask entries that match no key of the data model, as 'in_mask: x' strings."""
    keys = schema_keys(fields)
    problems = []
    for label, entries in (("in_mask", in_mask), ("out_mask", out_mask)):
        for entry in entries or ():
            if not any(base_key(k) == base_key(entry) for k in keys):
                problems.append(f"{label} entry '{entry}'")
    for label, pattern in (("in_mask_pattern", in_mask_pattern), ("out_mask_pattern", out_mask_pattern)):
        if pattern and not any(re.search(pattern, base_key(k)) for k in keys):
            problems.append(f"{label} '{pattern}'")
    return problems


def mask_problems(fields: DataModel, in_mask=None, out_mask=None, in_mask_pattern=None,
                  out_mask_pattern=None) -> list[tuple[tuple[str], str]]:
    """The first mask entry that matches no field of the data model, as a spec problem:
    ((the mask option,), message); none when every entry matches."""
    unmatched = unmatched_mask_entries(fields, in_mask, out_mask, in_mask_pattern, out_mask_pattern)
    if not unmatched:
        return []
    option = "in_mask" if unmatched[0].startswith("in_mask") else "out_mask"
    return [((option,), f"{unmatched[0]} matches no output field (outputs: {', '.join(fields)})")]
