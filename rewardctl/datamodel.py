"""Input and output data models: field specs, their JSON Schema, and value checking.

A data model is an ordered mapping ``field name -> FieldSpec``. Values are checked by a small
recursive validator rather than dynamically built pydantic models: the same code serves the
dataset (strict types, ground truth kept as given) and model replies (lax: "42" -> 42,
case-insensitive enums), and its messages name the offending path.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

FieldType = Literal["string", "number", "integer", "boolean", "enum", "list", "object"]
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FieldSpec(BaseModel):
    """One field of a data model. Shorthand: ``answer: string`` means ``{type: string}``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: FieldType = Field("string", description="The field's type.")
    description: str | None = Field(None, description="What the field holds; shown to the model.")
    max_length: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices("max_length", "maxLength"),
        description="string only: the longest value the model may generate (bounds decoding).",
    )
    values: list[str] | None = Field(None, description="enum only: the allowed values.")
    items: FieldSpec | None = Field(None, description="list only: the type of the items (default string).")
    properties: dict[str, FieldSpec] | None = Field(
        None, description="object only: the object's fields."
    )
    nullable: bool = Field(
        False, description="The value may be null (written `none` in the fields prompt format); the "
        "field is still expected: a row or reply without it is incomplete.")
    required: bool = Field(
        True, description="false: the field may be absent, and absent reads as null (so it is "
        "nullable too), as an Optional field with a None default in pydantic.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}
        return data

    @model_validator(mode="after")
    def _check(self) -> FieldSpec:
        if self.type == "enum":
            if not self.values:
                raise ValueError("an enum field needs 'values', a non-empty list of strings")
            if len(set(self.values)) != len(self.values):
                raise ValueError("enum 'values' must be distinct")
        elif self.values is not None:
            raise ValueError("'values' is only for type enum")
        if self.max_length is not None and self.type != "string":
            raise ValueError("'max_length' is only for type string")
        if self.type == "list":
            if self.items is None:
                self.items = FieldSpec(type="string")
        elif self.items is not None:
            raise ValueError("'items' is only for type list")
        if self.type == "object":
            if not self.properties:
                raise ValueError("an object field needs 'properties'")
            check_field_names(self.properties)
        elif self.properties is not None:
            raise ValueError("'properties' is only for type object")
        return self

    @property
    def is_scalar(self) -> bool:
        return self.type in ("string", "number", "integer", "boolean", "enum")

    @property
    def accepts_null(self) -> bool:
        """Null is a valid value: nullable, or optional (absent reads as null)."""
        return self.nullable or not self.required


DataModel = dict[str, FieldSpec]


def check_field_names(fields: dict[str, Any]) -> None:
    for name in fields:
        if not FIELD_NAME.match(name):
            raise ValueError(
                f"field name '{name}' must start with a letter or '_' and hold only letters, "
                "digits and '_'"
            )


def needs_structure(fields: DataModel) -> bool:
    """True when plain text cannot carry the model reliably: enums, lists or objects."""
    return any(not spec.is_scalar or spec.type == "enum" for spec in fields.values())


# --- JSON Schema -----------------------------------------------------------------------------

def field_json_schema(spec: FieldSpec) -> dict[str, Any]:
    schema: dict[str, Any]
    if spec.type == "string":
        schema = {"type": "string"}
        if spec.max_length is not None:
            schema["maxLength"] = spec.max_length
    elif spec.type == "enum":
        schema = {"type": "string", "enum": list(spec.values or [])}
    elif spec.type == "list":
        schema = {"type": "array", "items": field_json_schema(spec.items or FieldSpec())}
    elif spec.type == "object":
        schema = json_schema(spec.properties or {})
    else:
        schema = {"type": spec.type}
    if spec.accepts_null:
        schema = {"anyOf": [schema, {"type": "null"}]}
    if spec.description:
        schema["description"] = spec.description
    return schema


def json_schema(fields: DataModel, title: str | None = None) -> dict[str, Any]:
    """Every field is listed as required (strict structured outputs need it: OpenAI's refuses
    optional properties); an optional field is nullable instead, and null is how it is absent."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: field_json_schema(spec) for name, spec in fields.items()},
        "required": list(fields),
        "additionalProperties": False,
    }
    if title:
        schema["title"] = title
    return schema


# --- Value checking --------------------------------------------------------------------------

class ValueProblem(ValueError):
    """A value does not fit its field; ``path`` is a dotted path such as ``answer`` or ``a.b[2]``."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "object"}.get(type(value), type(value).__name__)


def _check_reply_text(value: str, spec: FieldSpec, path: str) -> None:
    if not value.strip():
        raise ValueProblem(path, "empty")
    if spec.max_length is not None and len(value) > spec.max_length:
        raise ValueProblem(path, f"{len(value)} characters, over max_length {spec.max_length}")


def check_value(value: Any, spec: FieldSpec, path: str, *, lax: bool) -> Any:
    """Return ``value`` checked against ``spec``; with ``lax``, coerce text the way a model writes it."""
    kind = spec.type
    if value is None and spec.accepts_null:
        return None
    if kind == "string":
        if lax and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = json.dumps(value)
        if not isinstance(value, str):
            raise ValueProblem(path, f"expected a string, got {_type_name(value)}")
        if lax:  # a model's reply follows the data model (references may hold what they hold)
            _check_reply_text(value, spec, path)
        return value
    if kind == "enum":
        values = spec.values or []
        if isinstance(value, str):
            if value in values:
                return value
            if lax:
                folded = value.strip().strip("\"'.").casefold()
                for allowed in values:
                    if allowed.casefold() == folded:
                        return allowed
        raise ValueProblem(path, f"expected one of {values}, got {json.dumps(value)[:80]}")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if lax and isinstance(value, str):
            folded = value.strip().casefold()
            if folded in ("true", "yes"):
                return True
            if folded in ("false", "no"):
                return False
        raise ValueProblem(path, f"expected a boolean, got {_type_name(value)}")
    if kind in ("number", "integer"):
        if lax and isinstance(value, str):
            try:
                value = json.loads(value.strip())
            except ValueError:
                raise ValueProblem(path, f"expected {'an integer' if kind == 'integer' else 'a number'}, "
                                         f"got {json.dumps(value)[:80]}") from None
        article = "an integer" if kind == "integer" else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueProblem(path, f"expected {article}, got {_type_name(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueProblem(path, f"expected a finite number, got {value}")
        if kind == "integer" and isinstance(value, float):
            if not value.is_integer():
                raise ValueProblem(path, f"expected an integer, got {value}")
            value = int(value)
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise ValueProblem(path, f"expected a list, got {_type_name(value)}")
        item_spec = spec.items or FieldSpec()
        return [check_value(item, item_spec, f"{path}[{i}]", lax=lax) for i, item in enumerate(value)]
    if kind == "object":
        if not isinstance(value, dict):
            raise ValueProblem(path, f"expected an object, got {_type_name(value)}")
        # Ground truth keeps keys the model does not name (nothing a user gave is lost);
        # a model's reply keeps only the model's fields.
        return check_fields(value, spec.properties or {}, prefix=path, lax=lax, keep_extra=not lax)
    raise ValueProblem(path, f"unknown type {kind}")  # unreachable: FieldType is closed


def check_fields(obj: dict[str, Any], fields: DataModel, *, prefix: str = "", lax: bool,
                 keep_extra: bool = False) -> dict[str, Any]:
    """Check the fields of ``obj`` named by ``fields``; returns them in the model's order,
    followed by any other keys of ``obj`` when ``keep_extra``."""
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if name not in obj:
            if spec.required:
                raise ValueProblem(path, "missing")
            out[name] = None  # an optional field's default
            continue
        out[name] = check_value(obj[name], spec, path, lax=lax)
    if keep_extra:
        for key, value in obj.items():
            if key not in fields:
                out[key] = value
    return out
