"""The generic registry (rewardctl.registry) and the three registries built on it: rewards,
run-level metrics and optimizers. Every type is built from a plain config and saved back to one."""

import json
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from rewardctl.datamodel import FieldSpec
from rewardctl.errors import InputError
from rewardctl.metrics import METRICS
from rewardctl.optimizers import OPTIMIZERS
from rewardctl.registry import Registry, config_union, did_you_mean, unknown_type_message
from rewardctl.rewards import REWARDS, RewardContext


class ThingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    size: int = 1


class Thing:
    config_model: ClassVar[type[ThingConfig]] = ThingConfig

    def __init__(self, config: ThingConfig, owner: str = "nobody"):
        self.config = config
        self.owner = owner

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump(exclude_defaults=True)


class SquareConfig(ThingConfig):
    type: Literal["square"] = "square"


class CircleConfig(ThingConfig):
    type: Literal["circle"] = "circle"
    radius: float = 1.0


def make_registry() -> Registry[Thing]:
    things: Registry[Thing] = Registry("thing")

    @things.register
    class Square(Thing):
        config_model = SquareConfig

    @things.register
    class Circle(Thing):
        config_model = CircleConfig

    return things


def test_register_as_a_decorator_keys_by_the_config_type_default():
    things = make_registry()
    assert things.names() == ["circle", "square"]
    assert "square" in things and "triangle" not in things
    assert list(things) == ["square", "circle"] and len(things) == 2
    assert [name for name, _ in things.items()] == ["square", "circle"]
    assert things.config_models() == [SquareConfig, CircleConfig]
    assert things["circle"].config_model is CircleConfig
    assert things.get("circle") is things["circle"]


def test_register_refuses_a_class_without_a_type_name_or_a_taken_one():
    things = make_registry()

    class Nameless(Thing):
        config_model = ThingConfig  # 'type' has no default

    with pytest.raises(TypeError, match="needs a default for 'type'"):
        things.register(Nameless)

    class NoConfig:
        pass

    with pytest.raises(TypeError, match="needs a 'config_model'"):
        things.register(NoConfig)

    class OtherSquare(Thing):
        config_model = SquareConfig

    with pytest.raises(TypeError, match="'square' is already registered"):
        things.register(OtherSquare)
    things.register(things["square"])  # the same class again is harmless


def test_get_an_unknown_type_suggests_the_closest_known_name():
    things = make_registry()
    with pytest.raises(InputError) as err:
        things.get("squar", field="shapes[0].type")
    assert str(err.value) == ("shapes[0].type: unknown thing type 'squar' (did you mean 'square'?); "
                              "known: circle, square")
    with pytest.raises(InputError, match=r"^unknown thing type 'zzz'; known: circle, square$"):
        things.get("zzz")
    with pytest.raises(InputError, match="unknown thing type 'None'"):
        things.get(None)


def test_did_you_mean_never_suggests_the_name_typed():
    assert did_you_mean("reward", ["reward", "rewards", "metrics"]) == "rewards"
    assert did_you_mean("reward", ["reward"]) is None
    assert unknown_type_message("reward", "recal", ["recall", "exact_match"]) == (
        "unknown reward type 'recal' (did you mean 'recall'?); known: exact_match, recall")


def test_build_from_a_dict_or_a_config_and_save_back():
    things = make_registry()
    circle = things.build({"type": "circle", "radius": 2.5}, "me")
    assert type(circle).__name__ == "Circle" and circle.owner == "me"
    assert isinstance(circle.config, CircleConfig) and circle.config.radius == 2.5
    square = things.build(SquareConfig(size=3))
    assert type(square).__name__ == "Square" and square.config.size == 3
    config = things.to_config(circle)
    assert config == {"type": "circle", "radius": 2.5}
    again = things.build(json.loads(json.dumps(config)), "me")
    assert type(again) is type(circle) and again.config == circle.config


def test_build_validates_a_dict_with_the_type_config_model():
    things = make_registry()
    with pytest.raises(ValidationError):
        things.build({"type": "circle", "radius": "big"})
    with pytest.raises(ValidationError):
        things.build({"type": "square", "radius": 1.0})  # not an option of squares
    with pytest.raises(InputError, match="a thing needs a 'type'; known: circle, square"):
        things.build({"size": 2})
    with pytest.raises(InputError, match="did you mean 'circle'"):
        things.build({"type": "circl"})


def test_config_union_tells_types_apart_by_type():
    things = make_registry()

    class Holder(BaseModel):
        shape: config_union(things)  # type: ignore[valid-type]

    assert isinstance(Holder.model_validate({"shape": {"type": "circle"}}).shape, CircleConfig)
    with pytest.raises(ValidationError):
        Holder.model_validate({"shape": {"type": "hexagon"}})


def test_the_registries_hold_every_built_in_type():
    assert {"exact_match", "f1_score", "composite", "ensemble", "lm_judge"} <= set(REWARDS)
    assert set(METRICS) == {"classification", "field_f1", "pass_at_k", "pass_hat_k"}
    assert set(OPTIMIZERS) == {"demo_search", "random_few_shot", "bootstrap_few_shot", "kl", "reflective"}
    assert (REWARDS.kind, METRICS.kind, OPTIMIZERS.kind) == ("reward", "metric", "optimizer")


OUTPUTS = {"answer": FieldSpec(type="string")}
BUILD_ARGS = {"reward": lambda: (RewardContext(),), "metric": lambda: (RewardContext(),),
              "optimizer": lambda: (OUTPUTS,)}
ALL_TYPES = [(registry, name) for registry in (REWARDS, METRICS, OPTIMIZERS) for name in registry.names()]


@pytest.mark.parametrize("registry,type_name", ALL_TYPES,
                         ids=[f"{registry.kind}:{name}" for registry, name in ALL_TYPES])
def test_every_registered_type_round_trips_its_default_config(registry, type_name):
    """Built from its default config, saved with to_config, built again: an equal object. Types
    whose config has no valid default are skipped here, and the skip says why: required fields
    (lm_judge's rubric, python's function, composite's parts, classification's field, ...) or
    options that must be given together (length's target or min/max). test_rewards_library.py
    round-trips every reward type with options."""
    model = registry[type_name].config_model
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    if required:
        pytest.skip(f"{type_name}'s config requires {', '.join(required)}")
    try:
        config = model()
    except ValidationError as exc:
        pytest.skip(f"{type_name}'s config has no valid default: {exc.errors()[0]['msg']}")
    args = BUILD_ARGS[registry.kind]()
    obj = registry.build(config, *args)
    config = registry.to_config(obj)
    assert config["type"] == type_name
    again = registry.build(json.loads(json.dumps(config)), *args)
    assert type(again) is type(obj)
    assert again.config == obj.config
    assert registry.to_config(again) == config
