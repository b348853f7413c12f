"""One registry kind for rewards, metrics and optimizers: a type name -> the class that has it.

A registered class declares ``config_model``, a pydantic model whose ``type`` field defaults to
the type name; it is built as ``cls(config, *args)`` and saves itself with ``get_config()``, plain
data that builds back an equal object (as Keras's ``get_config``/``from_config``)::

    REWARDS = Registry[Reward]("reward")

    @REWARDS.register
    class ExactMatch(Reward):
        config_model = ExactMatchConfig   # type: Literal["exact_match"] = "exact_match"

    reward = REWARDS.build({"type": "exact_match", "weight": 2.0}, context)
    REWARDS.build(REWARDS.to_config(reward), context)   # an equal reward

Core layer: imports only the standard library, pydantic and rewardctl.errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import BaseModel, Field

from rewardctl.errors import InputError

T = TypeVar("T")


def did_you_mean(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (never ``name`` itself), or None."""
    candidates = sorted({k for k in known if k != name})
    close = difflib.get_close_matches(name, candidates, n=1)
    return close[0] if close else None


def unknown_type_message(kind: str, type_name: Any, known: Iterable[str]) -> str:
    """``unknown reward type 'x' (did you mean 'y'?); known: a, b``."""
    names = sorted(set(known))
    close = did_you_mean(str(type_name), names)
    hint = f" (did you mean '{close}'?)" if close else ""
    return f"unknown {kind} type '{type_name}'{hint}; known: {', '.join(names)}"


def config_union(*registries: Registry[Any]) -> Any:
    """The config models of ``registries``, one pydantic union told apart by ``type``."""
    models = tuple(model for registry in registries for model in registry.config_models())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007  (a dynamic tuple)


class Registry(Generic[T]):
    """Maps a type name to a class. ``kind`` names the family in messages ('reward')."""

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    # --- registering ---
    def register(self, cls: type[T]) -> type[T]:
        """Register ``cls`` under its config model's ``type`` default (usable as a decorator)."""
        type_name = self.type_name_of(cls)
        existing = self._classes.get(type_name)
        if existing is not None and existing is not cls:
            raise TypeError(f"{self.kind} type '{type_name}' is already registered by "
                            f"{existing.__module__}.{existing.__qualname__}; {cls.__qualname__} "
                            "needs another 'type' default")
        self._classes[type_name] = cls
        return cls

    def type_name_of(self, cls: type) -> str:
        model = getattr(cls, "config_model", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{cls.__qualname__} needs a 'config_model' (a pydantic model) to be a "
                            f"registered {self.kind} type")
        field = model.model_fields.get("type")
        default = None if field is None else field.default  # PydanticUndefined when required
        if not isinstance(default, str) or not default:
            raise TypeError(f"{cls.__qualname__}.config_model ({model.__name__}) needs a default "
                            "for 'type': the type name it is registered under")
        return default

    # --- looking up ---
    def get(self, type_name: Any, field: str | None = None) -> type[T]:
        """The class registered as ``type_name``; an InputError (located at ``field``) that
        suggests the closest known name when there is none."""
        cls = self._classes.get(type_name) if isinstance(type_name, str) else None
        if cls is None:
            raise InputError(unknown_type_message(self.kind, type_name, self._classes), field=field)
        return cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def config_models(self) -> list[type[BaseModel]]:
        """Each registered type's config model, in registration order."""
        return [cls.config_model for cls in self._classes.values()]  # type: ignore[attr-defined]

    def items(self) -> list[tuple[str, type[T]]]:
        return list(self._classes.items())

    def values(self) -> list[type[T]]:
        return list(self._classes.values())

    def __getitem__(self, type_name: str) -> type[T]:
        return self._classes[type_name]

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._classes)})"

    # --- building and saving ---
    def build(self, config: BaseModel | Mapping[str, Any], *args: Any, field: str | None = None) -> T:
        """``cls(config, *args)`` for the class ``config`` names by its ``type``; a mapping is
        first validated with that class's config model (pydantic's ValidationError if invalid)."""
        if isinstance(config, Mapping):
            if config.get("type") is None:
                raise InputError(f"a {self.kind} needs a 'type'; known: {', '.join(self.names())}",
                                 field=field)
            cls = self.get(config["type"], field=field)
            config = cls.config_model.model_validate(dict(config))  # type: ignore[attr-defined]
        else:
            cls = self.get(config.type, field=field)  # type: ignore[attr-defined]
        return cls(config, *args)  # type: ignore[call-arg]

    def to_config(self, obj: T) -> dict[str, Any]:
        """``obj`` as plain data (its ``get_config()``) that ``build`` turns back into an equal
        object."""
        type_name = self.type_name_of(type(obj))
        if type_name not in self._classes:
            raise TypeError(f"{type(obj).__qualname__} is not a registered {self.kind} type")
        return {"type": type_name, **obj.get_config()}  # type: ignore[attr-defined]
