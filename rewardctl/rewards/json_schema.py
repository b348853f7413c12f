"""json_schema: 1.0 when the prediction (after masks) validates against a JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rewardctl.errors import InputError
from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig


class JsonSchemaConfig(RewardConfig):
    type: Literal["json_schema"] = "json_schema"
    schema_: dict[str, Any] | str | None = Field(
        None, alias="schema",
        description="A JSON Schema, or the path of a JSON file holding one (relative to the spec). "
        "Unset: the program's outputs data model.")


@REWARDS.register
class JsonSchema(Reward):
    config_model = JsonSchemaConfig

    def value_range(self) -> tuple[float, float] | None:
        return (0.0, 1.0)

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        # jsonschema is slow to import: only json_schema rewards need it.
        import jsonschema

        schema = self.config.schema_
        if isinstance(schema, str):
            path = Path(schema) if Path(schema).is_absolute() else self.context.base_dir / schema
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read JSON Schema {path}: {exc}",
                                 field=f"reward '{self.name}'.schema") from None
        if schema is None:
            schema = self.context.outputs_schema or {"type": "object"}
        try:
            validator_class = jsonschema.validators.validator_for(schema)
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InputError(f"invalid JSON Schema: {exc.message}", field=f"reward '{self.name}'.schema") from None
        self._validator = validator_class(schema)

    def get_config(self) -> dict[str, Any]:
        data = self.config.model_dump(mode="json", exclude_defaults=True, by_alias=True)
        return {"type": self.config.type, **data}

    def compute(self, y_true: JSON, y_pred: JSON) -> float:
        return 1.0 if self._validator.is_valid(y_pred) else 0.0
