import json

import pytest

from rewardctl.errors import InputError
from rewardctl.spec import (
    ProgramSpec,
    _all_field_names,
    _field_names,
    check_spec,
    load_spec,
    spec_json_schema,
)

from conftest import MINIMAL_SPEC, write


def load_text(tmp_path, text):
    return load_spec(write(tmp_path / "spec.yaml", text))


def error_of(tmp_path, text) -> str:
    with pytest.raises(InputError) as err:
        load_text(tmp_path, text)
    return str(err.value)


def test_shipped_recipes_validate(root):
    recipes = sorted((root / "recipes").glob("*.yaml"))
    assert len(recipes) >= 2
    for path in recipes:
        spec = load_spec(path)
        assert spec.examples, path


def test_minimal_spec_and_shorthands(tmp_path):
    spec = load_text(tmp_path, MINIMAL_SPEC)
    assert spec.inputs["question"].type == "string"
    assert spec.outputs["answer"].max_length == 40
    assert spec.model.resolved_format == "json"
    assert spec.reward_configs()[0].display_name == "em"


def test_model_string_shorthand_and_local_default(tmp_path):
    spec = load_text(tmp_path, MINIMAL_SPEC.replace("model:\n  name: openai/gpt-4o-mini\n", "model: local/gemma-3-270m\n"))
    assert spec.model.is_local and spec.model.resolved_format == "fields"


def test_maxLength_alias(tmp_path):
    spec = load_text(tmp_path, MINIMAL_SPEC.replace("max_length: 40", "maxLength: 12"))
    assert spec.outputs["answer"].max_length == 12


def test_unknown_key_names_line_field_and_suggests(tmp_path):
    text = MINIMAL_SPEC.replace("  name: openai/gpt-4o-mini\n", "  name: openai/gpt-4o-mini\n  temprature: 0.5\n")
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'spec.yaml'}:4: model.temprature: unknown key")
    assert "did you mean 'temperature'" in message


def test_unknown_reward_type(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC.replace("type: exact_match", "type: exact_matc"))
    assert ":15: rewards[0].type: unknown reward type" in message
    assert "exact_match" in message


def test_did_you_mean_suggests_a_key_valid_there_never_the_key_typed(tmp_path):
    # 'reward' is a key of thresholds, not of the spec: the spec's own 'rewards' is meant.
    message = error_of(tmp_path, MINIMAL_SPEC.replace("rewards:\n", "reward:\n"))
    assert ":13: reward: unknown key 'reward' (did you mean 'rewards'?)" in message
    # Suggestions come from the keys valid where the typo is: a reward's options here.
    message = error_of(tmp_path, MINIMAL_SPEC + "    weigth: 2\n")
    assert "rewards[0].weigth: unknown key 'weigth' (did you mean 'weight'?)" in message
    message = error_of(tmp_path, MINIMAL_SPEC + "thresholds: {rewrd: 0.5}\n")
    assert "thresholds.rewrd: unknown key 'rewrd' (did you mean 'reward'?)" in message


def test_spec_checks_live_on_each_type(tmp_path):
    """Each type's config checks its entry: masks (any reward, field_f1), classification's
    field, pass_at_k's score, and the parts of composite and ensemble rewards."""
    message = error_of(tmp_path, MINIMAL_SPEC + "metrics:\n  - {type: classification, field: labl}\n")
    assert "metrics[0].field: no output field 'labl' (outputs: answer)" in message
    message = error_of(tmp_path, MINIMAL_SPEC + "metrics:\n  - {type: pass_at_k, score: emm}\n")
    assert "metrics[0].score: no reward or metric named 'emm' (known: em, pass_at_k)" in message
    message = error_of(tmp_path, MINIMAL_SPEC + "metrics:\n  - {type: field_f1, out_mask: [nope]}\n")
    assert "metrics[0].out_mask: out_mask entry 'nope' matches no output field" in message
    message = error_of(tmp_path, MINIMAL_SPEC + "  - {type: composite, rewards: [{type: f1_score, in_mask: [x]}]}\n")
    assert "rewards[1].rewards[0].in_mask: in_mask entry 'x' matches no output field" in message
    message = error_of(tmp_path, MINIMAL_SPEC + "  - type: ensemble\n    members: [{type: f1_score, name: a},"
                                                " {type: recall, name: b, in_mask_pattern: zz}]\n")
    assert "rewards[1].members[1].in_mask: in_mask_pattern 'zz' matches no output field" in message


def test_wrong_type_of_value(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC.replace("max_length: 40", "max_length: lots"))
    assert ":9: outputs.answer.max_length:" in message


def test_missing_required_section(tmp_path):
    message = error_of(tmp_path, "name: x\ninputs:\n  q: string\n")
    assert "outputs: required but missing" in message


def test_enum_needs_values(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC.replace("type: string\n    max_length: 40", "type: enum"))
    assert "outputs.answer" in message and "enum field needs 'values'" in message


def test_example_must_fit_the_data_models(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC.replace('output: {answer: "4"}', "output: {answer: 4}"))
    assert ":12: examples[0].output.answer: expected a string, got integer" in message
    message = error_of(tmp_path, MINIMAL_SPEC.replace('output: {answer: "4"}', 'output: {answr: "4"}'))
    assert "examples[0].output.answr: not a field of the outputs data model (did you mean 'answer'?)" in message
    message = error_of(tmp_path, MINIMAL_SPEC.replace('output: {answer: "4"}', "output: {}"))
    assert "examples[0].output.answer: missing" in message


def test_mask_that_matches_nothing_is_an_error(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC + "    in_mask: [anwser]\n")
    assert "rewards[0].in_mask: in_mask entry 'anwser' matches no output field" in message


def test_mask_matches_after_singularizing(tmp_path):
    spec = load_text(tmp_path, MINIMAL_SPEC + "    in_mask: [answers]\n")
    assert spec.rewards[0].in_mask == ["answers"]


def test_duplicate_score_names(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC + "metrics:\n  - name: em\n    type: f1_score\n")
    assert "metrics[0].name" in message and "used twice" in message


def test_metrics_have_no_weight(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC + "metrics:\n  - type: f1_score\n    weight: 2\n")
    assert "metrics[0].weight: metrics have no weight" in message


def test_thresholds_must_name_known_scores(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC + "thresholds:\n  rewards: {nope: 0.5}\n")
    assert "thresholds.rewards.nope: no reward named 'nope'" in message


def test_zero_threshold_is_kept(tmp_path):
    spec = load_text(tmp_path, MINIMAL_SPEC + "thresholds:\n  reward: 0\n")
    assert spec.thresholds.reward == 0


def test_input_and_output_names_disjoint(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC.replace("  question: string", "  answer: string"))
    assert "both an input and an output" in message


def test_secrets_are_refused_in_extra(tmp_path):
    message = error_of(tmp_path, MINIMAL_SPEC.replace("  name: openai/gpt-4o-mini\n", "  name: openai/gpt-4o-mini\n  extra: {api_key: sk-123}\n"))
    assert "model.extra" in message and "environment variable" in message


def test_not_a_mapping_and_not_utf8(tmp_path):
    assert "must be a YAML mapping" in error_of(tmp_path, "- a\n- b\n")
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(InputError, match="not valid UTF-8"):
        load_spec(path)
    with pytest.raises(InputError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_fingerprint_is_stable_and_sensitive(tmp_path):
    a = load_text(tmp_path, MINIMAL_SPEC).fingerprint()
    assert a == load_text(tmp_path, MINIMAL_SPEC).fingerprint()
    assert a != load_text(tmp_path, MINIMAL_SPEC.replace('"4"}', '"four"}')).fingerprint()


def test_json_schema_covers_reward_types():
    schema = spec_json_schema()
    text = json.dumps(schema)
    assert schema["title"] == "rewardctl program spec"
    for name in ("exact_match", "f1_score", "precision", "recall", "fbeta"):
        assert f'"{name}"' in text
    assert schema["additionalProperties"] is False


def test_checked_in_schema_is_current(root):
    # Recipes point editors at docs/spec.schema.json; regenerate with `rewardctl schema > docs/spec.schema.json`.
    assert json.loads((root / "docs" / "spec.schema.json").read_text()) == spec_json_schema()


def test_did_you_mean_never_suggests_the_key_typed_anywhere(tmp_path):
    """Every key some spec model knows, typed where it is not valid (top level, a reward entry,
    the model), is never suggested back; 'reward' at the top level suggests 'rewards'."""
    places = {"top": (MINIMAL_SPEC + "{key}: 1\n", "{key}"),
              "reward": (MINIMAL_SPEC + "    {key}: 1\n", "rewards[0].{key}"),
              "model": (MINIMAL_SPEC.replace("  name: openai/gpt-4o-mini\n", "  name: openai/gpt-4o-mini\n  {key}: 1\n"),
                        "model.{key}")}
    valid = {"top": _field_names(ProgramSpec)}
    for key in sorted(_all_field_names()):
        for place, (template, field) in places.items():
            if key in valid.get(place, ()):
                continue
            try:
                load_text(tmp_path, template.replace("{key}", key))
            except InputError as err:
                message = str(err)
                if f"{field.replace('{key}', key)}: unknown key '{key}'" in message:
                    assert f"did you mean '{key}'?" not in message, message
    assert "(did you mean 'rewards'?)" in error_of(tmp_path, MINIMAL_SPEC.replace("rewards:\n", "reward:\n"))


def problems_of(tmp_path, text, **files):
    for name, content in files.items():
        write(tmp_path / name, content)
    spec, problems = check_spec(write(tmp_path / "spec.yaml", text))
    assert spec is None
    return [str(p).removeprefix(f"{tmp_path / 'spec.yaml'}:") for p in problems]


def test_check_spec_lists_every_problem_in_file_order(tmp_path):
    text = MINIMAL_SPEC.replace("  name: openai/gpt-4o-mini\n", "  name: openai/gpt-4o-mini\n  temprature: 2\n")
    text = text.replace('output: {answer: "4"}', 'output: {answr: "4"}')
    text += ("    weigth: 2\n"
             "  - {name: em, type: f1_score, in_mask: [nope]}\n"
             "  - {name: fn, type: python, function: 'missing.py:f'}\n"
             "  - {name: fn2, type: python, function: 'checks.py:nothere'}\n"
             "metrics:\n  - {type: classification, field: labl}\n"
             "thresholds: {rewards: {zz: 1, fn: 0.5}}\n")
    assert problems_of(tmp_path, text, **{"checks.py": "def f(t, p):\n    return 1.0\n"}) == [
        "4: model.temprature: unknown key 'temprature' (did you mean 'temperature'?)",
        "13: examples[0].output.answr: not a field of the outputs data model (did you mean 'answer'?)",
        "17: rewards[0].weigth: unknown key 'weigth' (did you mean 'weight'?)",
        "18: rewards[1].name: the name 'em' is used twice; give each a unique 'name'",
        "18: rewards[1].in_mask: in_mask entry 'nope' matches no output field (outputs: answer)",
        f"19: reward 'fn'.function: no such file: {tmp_path / 'missing.py'}",
        "20: reward 'fn2'.function: checks.py has no function 'nothere'",
        "22: metrics[0].field: no output field 'labl' (outputs: answer)",
        "23: thresholds.rewards.zz: no reward named 'zz' (known: em, fn, fn2)",
    ]
    # load_spec (eval, score, optimize) still stops at the first, and says how many more there are.
    assert error_of(tmp_path, text).endswith(
        "did you mean 'temperature'?) (and 6 more problems: rewardctl validate lists them)")


def test_check_spec_stops_after_keys_and_types_when_the_data_models_are_wrong(tmp_path):
    text = MINIMAL_SPEC.replace("    type: string\n    max_length: 40", "    type: text") + "    weigth: 1\n"
    assert problems_of(tmp_path, text) == [
        "8: outputs.answer.type: Input should be 'string', 'number', 'integer', 'boolean', 'enum', 'list' or 'object'",
        "15: rewards[0].weigth: unknown key 'weigth' (did you mean 'weight'?)",
    ]


def test_check_spec_a_file_that_cannot_be_read_is_one_problem(tmp_path):
    assert problems_of(tmp_path, "name: [unclosed\n") == ["2: invalid YAML: expected ',' or ']', but got '<stream end>'"]
    spec, problems = check_spec(tmp_path / "absent.yaml")
    assert spec is None and len(problems) == 1 and problems[0].path is not None


def test_check_spec_accepts_a_good_spec(tmp_path):
    spec, problems = check_spec(write(tmp_path / "spec.yaml", MINIMAL_SPEC))
    assert problems == [] and spec is not None and spec.name == "demo"
