"""GBNF grammars for the ``fields`` reply format (llama.cpp's grammar language).

The grammar starts right after the prompt's last line (``first_field:``) and spells out the
remaining ``name: value`` lines in order, so enums, numbers, lists and objects come out valid, and
ends with a newline, after which decoding stops. Strings inside JSON values are bounded
(``max_length`` or 200 characters) so decoding cannot run to ``max_tokens`` inside an unterminated
string; a plain line needs no bound (its newline ends it), and bounded repetitions are what make
llama.cpp grammars slow (measured: 0.23 s per token with a 160-character bound).

``field_grammar`` constrains one field's value alone, for field-by-field decoding. The fields
given may be dotted paths (``order.city``: one line per property of an output object).
"""

from __future__ import annotations

import json

from rewardctl.datamodel import DataModel, FieldSpec

DEFAULT_MAX_STRING = 200


def _literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class _Builder:
    def __init__(self) -> None:
        self.rules: dict[str, str] = {
            "ws": '" "?',
            "jchar": '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ["\\\\/bfnrt]',
            "num": '"-"? [0-9]{1,15} ("." [0-9]{1,10})? ([eE] [-+]? [0-9]{1,3})?',
            "int": '"-"? [0-9]{1,18}',
            "bool": '"true" | "false"',
        }
        self.counter = 0

    def add(self, body: str) -> str:
        self.counter += 1
        name = f"r{self.counter}"
        self.rules[name] = body
        return name

    def value(self, spec: FieldSpec, *, in_json: bool) -> str:
        rule = self.non_null(spec, in_json=in_json)
        if spec.accepts_null:  # null is `none` on a fields line, `null` inside JSON
            return self.add(f'{rule} | {_literal("null" if in_json else "none")}')
        return rule

    def non_null(self, spec: FieldSpec, *, in_json: bool) -> str:
        kind = spec.type
        if kind == "number":
            return "num"
        if kind == "integer":
            return "int"
        if kind == "boolean":
            return "bool"
        if kind == "enum":
            values = spec.values or []
            texts = [json.dumps(v, ensure_ascii=False) if in_json else v for v in values]
            return self.add(" | ".join(_literal(t) for t in texts))
        if kind == "string":
            limit = spec.max_length or DEFAULT_MAX_STRING
            if in_json:
                return self.add(f'"\\"" jchar{{0,{limit}}} "\\""')
            # A plain line: no newline, no leading space (the prompt's ': ' already has one).
            return self.add('[^\\n ] [^\\n]*')
        if kind == "list":
            item = self.value(spec.items or FieldSpec(), in_json=True)
            return self.add(f'"[" ws ({item} ("," ws {item})*)? ws "]"')
        if kind == "object":
            parts = []
            for i, (name, child) in enumerate((spec.properties or {}).items()):
                key = _literal(json.dumps(name))
                sep = '"," ws ' if i else ""
                parts.append(f"{sep}{key} ws \":\" ws {self.value(child, in_json=True)}")
            return self.add('"{" ws ' + " ".join(parts) + ' ws "}"')
        raise ValueError(f"unknown field type {kind}")


def fields_grammar(outputs: DataModel) -> str:
    """GBNF for the completion that follows ``<first output>:`` in a fields-format prompt."""
    builder = _Builder()
    pieces = []
    for i, (name, spec) in enumerate(outputs.items()):
        value = builder.value(spec, in_json=spec.type in ("list", "object"))
        pieces.append(f'" " {value}' if i == 0 else f'"\\n" {_literal(name + ": ")} {value}')
    root = "root ::= " + " ".join(pieces) + ' "\\n"'
    return "\n".join([root] + [f"{name} ::= {body}" for name, body in builder.rules.items()]) + "\n"


def field_grammar(spec: FieldSpec) -> str:
    """GBNF for one value after ``name:``: a space, the value, a newline."""
    builder = _Builder()
    value = builder.value(spec, in_json=spec.type in ("list", "object"))
    root = f'root ::= " " {value} "\\n"'
    return "\n".join([root] + [f"{name} ::= {body}" for name, body in builder.rules.items()]) + "\n"
