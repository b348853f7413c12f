"""The program spec: a YAML file validated by pydantic models that forbid unknown keys.

``load_spec(path)`` returns a :class:`ProgramSpec` or raises :class:`InputError` naming the file,
the line and the field. ``spec_json_schema()`` is what ``rewardctl schema`` prints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from rewardctl.datafiles import DataOptions, FieldMap
from rewardctl.datamodel import (
    DataModel,
    FieldSpec,
    ValueProblem,
    check_field_names,
    check_fields,
    json_schema,
)
from rewardctl.errors import InputError, one_line
from rewardctl.io import open_input
from rewardctl.metrics import METRICS
from rewardctl.modelconfig import LOCAL_DEFAULT_MODEL, ModelConfig
from rewardctl.optimizers import OPTIMIZERS, AnyOptimizerConfig
from rewardctl.options import DataFormat
from rewardctl.program import Signature
from rewardctl.registry import config_union, did_you_mean, unknown_type_message
from rewardctl.rewards import REWARDS, AnyRewardConfig, RewardContext
from rewardctl.rewards.exact_match import ExactMatchConfig
from rewardctl.scoring import Scorer
from rewardctl.state import Example, ProgramState
from rewardctl.yamlload import LocatedData, load_yaml

SPEC_VERSION = 1
__all__ = ["LOCAL_DEFAULT_MODEL", "Example", "ModelConfig", "ProgramSpec", "Thresholds", "load_spec"]


class Thresholds(BaseModel):
    """CI gates: `rewardctl eval` exits 1 when one is not met. 0 is a valid threshold."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    reward: float | None = Field(None, description="Least mean total reward.")
    rewards: dict[str, float] = Field(default_factory=dict, description="Least mean, per reward name.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Least mean, per metric name.")
    max_error_rate: float | None = Field(
        None, ge=0, le=1, description="Largest share of rows that may fail (0 to 1)."
    )


class DataConfig(BaseModel):
    """How the commands that read a dataset (eval, optimize, inspect-rewards) read it."""

    model_config = ConfigDict(extra="forbid")

    format: DataFormat | None = Field(
        None, description="jsonl, csv, tsv, parquet or arrow. Default: by the file's extension (any "
        "other: jsonl); a folder: a Hugging Face save_to_disk folder, or shards of one format.")
    fields: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict, description="Spec field -> the dataset column it is read from, as "
        "inspect_ai's FieldSpec: {question: prompt, answer: target}. A field not named reads the "
        "column of its own name; columns no field reads are kept as the rows' meta. --field "
        "FIELD=COLUMN overrides one.")


# One config model per registered reward type, told apart by `type` (the registry decides).
RewardEntry = AnyRewardConfig
# Metrics: any reward type (reported, not optimized) or a run-level metric type.
MetricEntry = config_union(REWARDS, METRICS)


class ProgramSpec(BaseModel):
    """A program: data models, instructions, demos, the model, and how outputs are scored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: Literal[1] = Field(SPEC_VERSION, description="Version of the spec format.")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="The program's name.")
    description: str | None = Field(
        None, description="What the program does, in a sentence. With no instructions, it is the "
        "prompt's task line.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    inputs: dict[str, FieldSpec] = Field(min_length=1, description="The input data model.")
    outputs: dict[str, FieldSpec] = Field(min_length=1, description="The output data model.")
    instructions: str | None = Field(None, description="What the program should do.")
    examples: list[Example] = Field(default_factory=list, description="Few-shot demonstrations.")
    rewards: list[RewardEntry] = Field(
        default_factory=list,
        description="Scores that make up the total reward (a weighted mean). None given: "
        "exact_match on all outputs.",
    )
    metrics: list[MetricEntry] = Field(
        default_factory=list,
        description="Scores that are reported but not optimized: any reward type (averaged over "
        "examples) or a run-level metric (classification, field_f1, pass_at_k).",
    )
    optimizer: AnyOptimizerConfig | None = Field(  # type: ignore[valid-type]
        None, description="The optimizer for `rewardctl optimize` and its options.")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    data: DataConfig | None = Field(None, description="How datasets are read: format and field mapping.")
    # Where the spec was read from, so that later errors (a reward that cannot be built) can
    # still name the file and line.
    _source: LocatedData | None = PrivateAttr(default=None)

    @field_validator("inputs", "outputs")
    @classmethod
    def _names(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        check_field_names(value)
        return value

    def error_at(self, loc: tuple[Any, ...], message: str) -> InputError:
        """An InputError at ``loc`` (a path of keys) of the spec, naming its file and line when
        the spec was read from a file."""
        source = self._source
        if source is None:
            return InputError(message, field=_field_path(loc) or None)
        return InputError(message, path=source.path, line=source.line_of(loc), field=_field_path(loc) or None)

    def locate(self, error: InputError, section: str, name: str) -> InputError:
        """``error`` (from building the score ``name``) located at that entry of the spec file."""
        source = self._source
        if source is None or error.path is not None:
            return error
        index = next((i for i, entry in enumerate(getattr(self, section, []))
                      if entry.display_name == name), None)
        line = source.line_of((section, index)) if index is not None else None
        return InputError(error.detail, path=source.path, line=line, field=error.field)

    def reward_configs(self) -> list[Any]:
        if self.rewards:
            return list(self.rewards)
        return [ExactMatchConfig()]

    def to_config(self) -> dict[str, Any]:
        """The spec as plain data that loads back to an equal spec (defaults written out, so
        that every union keeps its 'type')."""
        return self.model_dump(mode="json", by_alias=True)

    def signature(self) -> Signature:
        """What the program layer needs of this spec (it never sees the rest)."""
        return Signature(name=self.name, inputs=self.inputs, outputs=self.outputs, model=self.model,
                         instructions=self.instructions, examples=tuple(self.examples),
                         description=self.description)

    def data_options(self, columns: dict[str, str] | None = None, data_format: str | None = None) -> DataOptions:
        """How to read a dataset: the spec's ``data`` with the command line's ``--field``
        (``columns``: field -> column, each overriding the spec's) and ``--data-format``."""
        config = self.data or DataConfig()
        source = self._source
        fields = {name: FieldMap(column, source.path if source else None,
                                 source.line_of(("data", "fields", name)) if source else None)
                  for name, column in config.fields.items()}
        known = [*self.inputs, *self.outputs]
        for name, column in (columns or {}).items():
            if name not in known:
                close = did_you_mean(name, known)
                hint = f"did you mean '{close}'?" if close else f"the fields: {', '.join(known)}"
                raise InputError(f"{name}={column}: '{name}' is not an input or output field of the "
                                 f"spec ({hint})", field="--field")
            fields[name] = FieldMap(column, flag=True)
        return DataOptions(format=data_format or config.format, fields=fields)

    def initial_state(self) -> ProgramState:
        return self.signature().initial_state()

    def fingerprint(self) -> str:
        """A stable hash of everything that defines the program (used by checkpoints)."""
        # How datasets are read is not the program.
        canonical = json.dumps(self.model_dump(mode="json", exclude={"data"}), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_scorer(spec: ProgramSpec, *, spec_path: str | Path | None = None, use_cache: bool = True,
                 cache_dir: str | None = None) -> Scorer:
    """The spec's rewards and metrics, built; an entry that cannot be built is named by its file
    and line. Relative paths in entries resolve against the spec's folder."""
    context = _reward_context(spec, spec_path, use_cache=use_cache, cache_dir=cache_dir)
    try:
        return Scorer(spec.reward_configs(), spec.metrics, context)
    except InputError as exc:
        if exc.entry is None:
            raise
        raise spec.locate(exc, *exc.entry) from None


def _reward_context(spec: ProgramSpec, spec_path: str | Path | None, *, use_cache: bool,
                    cache_dir: str | None) -> RewardContext:
    base_dir = Path(spec_path).resolve().parent if spec_path else Path.cwd()
    return RewardContext(base_dir=base_dir, cache_dir=cache_dir, use_cache=use_cache,
                         default_model=spec.model, outputs_schema=json_schema(spec.outputs))


def spec_json_schema() -> dict[str, Any]:
    schema = ProgramSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rewardctl program spec"
    return schema


# --- loading ---------------------------------------------------------------------------------

def load_spec(path: str | Path) -> ProgramSpec:
    """The spec at ``path``, or an InputError naming the first problem's file, line and field
    (and how many more there are: ``rewardctl validate`` lists them)."""
    return spec_from_data(_read(path))


def _read(path: str | Path) -> LocatedData:
    path_str = str(path)
    with open_input(path, "a spec file") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("not valid UTF-8 text", path=path_str, line=line) from None
    if "\x00" in text:
        raise InputError("binary data, not a YAML spec", path=path_str)
    return load_yaml(text, path_str)


def spec_from_data(located: LocatedData) -> ProgramSpec:
    checked = _checked(located)
    if checked.problems:
        first, more = checked.problems[0], len(checked.problems) - 1
        if more:
            first = InputError(f"{first.detail} (and {more} more problem{'s' if more > 1 else ''}: "
                               "rewardctl validate lists them)",
                               path=first.path, line=first.line, field=first.field)
        raise first
    assert checked.spec is not None
    return checked.spec


def check_spec(path: str | Path) -> tuple[ProgramSpec | None, list[InputError]]:
    """Every problem found in the spec at ``path`` (``rewardctl validate``), each an InputError
    naming its file, line and field, in the order of the file; and the spec, when there are
    none. Keys and types (pydantic, every error); then, on the spec without what pydantic
    refused, the checks across fields and building each reward and metric on its own (python
    functions, reward models, schemas). Wrong data models (inputs, outputs) stop after the first
    stage: every later check reads them."""
    try:
        located = _read(path)
    except InputError as exc:
        return None, [exc]
    checked = _checked(located)
    spec, problems = checked.spec, list(checked.problems)
    if spec is not None:
        problems = _in_file_order(problems + _build_problems(spec, path, checked.flagged))
    return (spec if not problems else None), problems


def _in_file_order(problems: list[InputError]) -> list[InputError]:
    """By line (stable: problems on one line keep the order they were found in)."""
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


@dataclass
class _Checked:
    spec: ProgramSpec | None  # None: nothing could be checked past keys and types; else the
    # spec, or with problems, the spec without what pydantic refused
    problems: list[InputError]
    flagged: set[tuple[Any, ...]]  # (section, index) of the score entries that have a problem


def _checked(located: LocatedData) -> _Checked:
    data = located.data
    if not isinstance(data, dict):
        return _Checked(None, [InputError("a spec must be a YAML mapping (name: ..., inputs: ..., outputs: ...)",
                                          path=located.path, line=1)], set())
    problems: list[InputError] = []
    refused: set[tuple[Any, ...]] = set()
    try:
        spec = ProgramSpec.model_validate(data)
    except ValidationError as exc:
        unique: dict[str, InputError] = {}
        for error in exc.errors():
            problem = _translate(error, located)
            unique.setdefault(str(problem), problem)  # a union's members can say it twice
        problems = list(unique.values())
        # Check the rest too: the spec without what pydantic refused.
        rest = _without_refused(data, exc.errors())
        if rest is None:
            return _Checked(None, _in_file_order(problems), set())
        try:
            spec = ProgramSpec.model_validate(rest[0])
        except ValidationError:
            return _Checked(None, _in_file_order(problems), set())
        refused = rest[1]
    found = _semantic_problems(spec, refused)
    spec._source = located
    if located.path and located.path != "-":
        spec.model.with_base_dir(Path(located.path).resolve().parent)
    problems += [InputError(message, path=located.path, line=located.line_of(loc),
                            field=_field_path(loc) or None) for loc, message in found]
    flagged = refused | {loc[:2] for loc, _ in found if loc[:1] in (("rewards",), ("metrics",)) and len(loc) > 1}
    return _Checked(spec, _in_file_order(problems), flagged)


_ITEMS = ("rewards", "metrics", "examples")
_REQUIRED = ("inputs", "outputs")


def _without_refused(data: dict[str, Any], errors: list[Any]) -> tuple[dict[str, Any], set[tuple[Any, ...]]] | None:
    """The spec's data with what pydantic refused set aside, so that the rest can be checked: a
    refused reward, metric or example becomes a stand-in (same index, same name, skipped by the
    later checks; the returned set names them), any other refused key takes its default. None
    when nothing sensible remains to check (the data models are wrong)."""
    rest = dict(data)
    refused: set[tuple[Any, ...]] = set()
    for error in errors:
        loc = _data_loc(tuple(error["loc"]), data)
        if not loc or loc[0] in _REQUIRED:
            return None
        head = loc[0]
        if head in _ITEMS and len(loc) > 1 and isinstance(loc[1], int) and isinstance(rest.get(head), list):
            items = rest[head] = list(rest[head])
            items[loc[1]] = _stand_in(head, items[loc[1]])
            refused.add((head, loc[1]))
        elif head == "name":
            rest["name"] = "spec"
        else:
            rest.pop(head, None)
    return rest, refused


def _stand_in(section: str, entry: Any) -> dict[str, Any]:
    if section == "examples":
        return {"input": {}, "output": {}}
    name = entry.get("name") or entry.get("type") if isinstance(entry, dict) else None
    return {"type": "exact_match", **({"name": name} if isinstance(name, str) else {})}


def _build_problems(spec: ProgramSpec, spec_path: str | Path, skip: set[tuple[Any, ...]]) -> list[InputError]:
    """Build each reward and metric on its own (those without a problem so far), so that every
    one that cannot be built is named."""
    context = _reward_context(spec, spec_path, use_cache=False, cache_dir=None)
    problems: list[InputError] = []
    for section in ("rewards", "metrics"):
        for i, config in enumerate(getattr(spec, section)):
            if (section, i) in skip:
                continue
            try:
                Scorer(*(([config], []) if section == "rewards" else ([], [config])), context)
            except InputError as exc:
                problems.append(spec.locate(exc, section, config.display_name))
    return problems


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _data_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop the parts of a pydantic error location that are not keys of the data (union tags)."""
    kept: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
            kept.append(part)
        elif i == len(loc) - 1 and not (isinstance(node, dict) and node.get("type") == part):  # a missing key, not a tag
            kept.append(part)
    return tuple(kept)


def _field_names(model: type[BaseModel]) -> set[str]:
    """The keys ``model`` accepts: its fields and their aliases."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        aliases = info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) \
            else [info.validation_alias]
        names.update(n for n in (name, info.alias, *aliases) if isinstance(n, str))
    return names


def _all_field_names() -> set[str]:
    """Every key of every spec model (when the model at an error's location is unknown)."""
    names: set[str] = set()
    for model in (ProgramSpec, ModelConfig, Example, Thresholds, DataConfig, FieldSpec, *REWARDS.config_models(),
                  *METRICS.config_models(), *OPTIMIZERS.config_models()):
        names |= _field_names(model)
    return names


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _child(tp: Any, part: Any) -> Any:
    """The type found at key or index ``part`` of a value of type ``tp`` (None: unknown). A
    discriminated union's tag, as pydantic puts it in error locations, selects its model."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    origin = get_origin(tp)
    if origin in (Union, UnionType):
        members = [m for m in get_args(tp) if m is not type(None)]
        for member in members:
            if _is_model(member) and "type" in member.model_fields and member.model_fields["type"].default == part:
                return member
        return _child(members[0], part) if len(members) == 1 else None
    if origin is list and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict and isinstance(part, str):
        return get_args(tp)[1]
    if _is_model(tp) and isinstance(part, str) and part in tp.model_fields:
        return tp.model_fields[part].annotation
    return None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model whose keys are valid at a pydantic error location, or None."""
    node: Any = ProgramSpec
    for part in loc:
        node = _child(node, part)
        if node is None:
            return None
    while get_origin(node) is Annotated:
        node = get_args(node)[0]
    if get_origin(node) in (Union, UnionType):  # an optional model
        members = [m for m in get_args(node) if m is not type(None)]
        node = members[0] if len(members) == 1 else None
    return node if _is_model(node) else None


def _known_types(loc: tuple[Any, ...]) -> list[str]:
    """The type names valid for the entry at ``loc``: a top-level metric may be any reward or
    metric type, the optimizer any optimizer type, any other entry a reward type."""
    if loc[:1] == ("optimizer",):
        return OPTIMIZERS.names()
    if loc[:1] == ("metrics",) and len(loc) == 2:
        return REWARDS.names() + METRICS.names()
    return REWARDS.names()


def _translate(error: Any, located: LocatedData) -> InputError:
    """One of pydantic's errors as an InputError at its file, line and field."""
    loc = _data_loc(tuple(error["loc"]), located.data)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        model = _model_at(tuple(error["loc"])[:-1])
        close = did_you_mean(key, _field_names(model) if model is not None else _all_field_names())
        message = f"unknown key '{key}'" + (f" (did you mean '{close}'?)" if close else "")
        loc = loc[:-1] + (key,)
    elif error["type"] == "missing":
        message = "required but missing"
    elif error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        message = "expected a mapping (key: value)"
    elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        kind = "optimizer" if loc[:1] == ("optimizer",) else "reward"
        if error["type"] == "union_tag_invalid":
            tag = (error.get("ctx") or {}).get("tag", "?")
            message = unknown_type_message(kind, tag, _known_types(loc))
        else:
            message = "needs a 'type'"
        loc = loc + ("type",)
    return InputError(one_line(message), path=located.path, line=located.line_of(loc),
                      field=_field_path(loc) or None)


Problem = tuple[tuple[Any, ...], str]  # (where in the spec, what is wrong)


def _semantic_problems(spec: ProgramSpec, skip: Collection[tuple[Any, ...]] = ()) -> list[Problem]:
    """Cross-field checks pydantic cannot express field by field, every problem found; entries
    in ``skip`` (section, index) are stand-ins for ones pydantic refused."""
    problems: list[Problem] = [(("outputs", name), f"'{name}' is both an input and an output field")
                               for name in sorted(set(spec.inputs) & set(spec.outputs))]
    for i, example in enumerate(spec.examples):
        for part, model in (("input", spec.inputs), ("output", spec.outputs)):
            if ("examples", i) not in skip:
                problems += _example_part_problems(getattr(example, part), model, ("examples", i, part))
    problems += _entry_problems(spec, skip)
    problems += _data_problems(spec)
    if spec.rewards and not any(loc[0] == "rewards" for loc in skip) and sum(r.weight for r in spec.rewards) <= 0:
        problems.append((("rewards",), "at least one reward needs a weight above 0"))
    reward_names = {r.display_name for r in spec.reward_configs()}
    metric_names = {m.display_name for m in spec.metrics}
    for section, known in (("rewards", reward_names), ("metrics", metric_names)):
        for name in getattr(spec.thresholds, section):
            if name not in known:
                problems.append((("thresholds", section, name),
                                 f"no {section[:-1]} named '{name}' (known: {', '.join(sorted(known)) or 'none'})"))
    return problems


def _data_problems(spec: ProgramSpec) -> list[Problem]:
    """``data.fields`` names input and output fields."""
    known = [*spec.inputs, *spec.outputs]
    problems: list[Problem] = []
    for name in (spec.data.fields if spec.data else {}):
        if name not in known:
            close = did_you_mean(name, known)
            hint = f"did you mean '{close}'?" if close else f"the fields: {', '.join(known)}"
            problems.append((("data", "fields", name), f"'{name}' is not an input or output field ({hint})"))
    return problems


def _entry_problems(spec: ProgramSpec, skip: Collection[tuple[Any, ...]]) -> list[Problem]:
    """Each reward's and metric's: a unique name, no weight on a metric, and the checks its type
    makes on its own entry (masks, the fields and scores it names, its parts)."""
    problems: list[Problem] = []
    score_names = {m.display_name for m in [*spec.reward_configs(), *spec.metrics]}
    seen: set[str] = set()
    for section in ("rewards", "metrics"):
        for i, entry in enumerate(getattr(spec, section)):
            loc = (section, i)
            name = entry.display_name
            if name in seen:
                problems.append((loc + ("name",), f"the name '{name}' is used twice; give each a unique 'name'"))
            seen.add(name)
            if loc in skip:
                continue
            if section == "metrics" and "weight" in entry.model_fields_set:
                problems.append((loc + ("weight",), "metrics have no weight: move this entry to rewards"))
            problems += [(loc + where, message) for where, message in entry.spec_problems(spec.outputs, score_names)]
    return problems


def _example_part_problems(value: dict[str, Any], model: DataModel, loc: tuple[Any, ...]) -> list[Problem]:
    problems: list[Problem] = []
    extra = [k for k in value if k not in model]
    for key in extra:
        close = did_you_mean(str(key), model)
        hint = f" (did you mean '{close}'?)" if close else ""
        problems.append((loc + (key,), f"not a field of the {loc[-1]}s data model{hint}"))
    for name, field_spec in model.items():
        if name not in value and extra:  # a misspelt key also makes the real field look missing
            continue
        try:
            check_fields(value, {name: field_spec}, lax=False)
        except ValueProblem as problem:
            head = problem.path.split(".")[0].split("[")[0]
            problems.append((loc + ((head,) if head else ()), problem.message))
    return problems
