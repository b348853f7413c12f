"""Property-based tests (hypothesis): the spec loader, the masks, and the parsing of model replies
never fail in an unplanned way, and what they keep or read back is what they should."""

import json
import string

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rewardctl.datamodel import FieldSpec
from rewardctl.errors import InputError
from rewardctl.prompting import FieldsFormat, JsonFormat, ParseError
from rewardctl.rewards.masks import Masks, base_key
from rewardctl.spec import ProgramSpec, spec_from_data
from rewardctl.yamlload import load_yaml

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- the spec loader -------------------------------------------------------------------------

SPEC_WORDS = ["name", "model", "inputs", "outputs", "rewards", "metrics", "type", "in_mask", "out_mask",
              "weight", "examples", "input", "output", "instructions", "optimizer", "thresholds", "values",
              "string", "enum", "exact_match", "f1_score", "composite", "temperature", "answer", "question"]
keys = st.one_of(st.sampled_from(SPEC_WORDS), st.text(min_size=1, max_size=8))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=20), st.sampled_from(SPEC_WORDS))
yaml_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)), max_leaves=25)


def load_text(text: str) -> ProgramSpec:
    return spec_from_data(load_yaml(text, "fuzz.yaml"))


@SETTINGS
@given(st.text(max_size=400))
def test_any_text_loads_or_is_an_input_error_naming_the_file(text):
    try:
        assert isinstance(load_text(text), ProgramSpec)
    except InputError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)


@SETTINGS
@given(st.dictionaries(keys, yaml_values, max_size=8))
def test_any_yaml_mapping_loads_or_is_an_input_error(data):
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        load_text(text)
    except InputError as exc:
        assert str(exc).startswith("fuzz.yaml")


identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
field_specs = st.one_of(
    st.sampled_from(["string", "number", "integer", "boolean"]).map(lambda t: {"type": t}),
    st.lists(st.text(string.ascii_letters, min_size=1, max_size=6), min_size=1, max_size=4, unique=True)
    .map(lambda values: {"type": "enum", "values": values}),
)


@SETTINGS
@given(inputs=st.dictionaries(identifiers, field_specs, min_size=1, max_size=3),
       outputs=st.dictionaries(identifiers, field_specs, min_size=1, max_size=3),
       temperature=st.floats(0, 2), instructions=st.text(max_size=50))
def test_a_valid_spec_saves_to_a_plain_config_and_loads_back_the_same(inputs, outputs, temperature, instructions):
    assume(not set(inputs) & set(outputs))
    data = {"name": "prop", "model": {"name": "openai/x", "temperature": temperature},
            "inputs": inputs, "outputs": outputs, "instructions": instructions or None,
            "rewards": [{"name": "em", "type": "exact_match"}]}
    spec = load_text(yaml.safe_dump(data))
    saved = yaml.safe_dump(spec.to_config())
    again = load_text(saved)
    assert again.fingerprint() == spec.fingerprint()


# --- masks -----------------------------------------------------------------------------------

mask_keys = st.sampled_from(["answer", "answers", "answer_1", "reasoning", "label", "labels", "city", "cities",
                             "score", "items", "item", "name"])
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
json_trees = st.recursive(json_leaves, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(mask_keys, children, max_size=4)), max_leaves=20)
objects = st.dictionaries(mask_keys, json_trees, max_size=5)
mask_lists = st.lists(mask_keys, min_size=1, max_size=3)


def key_paths(value, prefix=()):
    if isinstance(value, dict):
        for key, child in value.items():
            yield prefix + (key,)
            yield from key_paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from key_paths(child, prefix + (i,))


def is_sub_tree(small, big) -> bool:
    """``small`` is ``big`` with some keys (and list items left empty by them) removed."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and is_sub_tree(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        if not isinstance(big, list):
            return False
        it = iter(big)  # an order-preserving sub-sequence
        return all(any(is_sub_tree(item, candidate) for candidate in it) for item in small)
    return small == big


@SETTINGS
@given(objects, mask_lists)
def test_out_mask_removes_every_matching_key_at_any_depth_and_nothing_else(obj, mask):
    masks = Masks(out_mask=mask)
    out = masks.apply(obj)
    removed = {base_key(k) for k in mask}
    assert all(base_key(path[-1]) not in removed for path in key_paths(out) if isinstance(path[-1], str))
    assert is_sub_tree(out, obj)
    assert masks.apply(out) == out  # idempotent


@SETTINGS
@given(objects, mask_lists)
def test_in_mask_keeps_matching_subtrees_whole_and_only_the_paths_to_them(obj, mask):
    masks = Masks(in_mask=mask)
    out = masks.apply(obj)
    kept = {base_key(k) for k in mask}
    assert is_sub_tree(out, obj)
    assert masks.apply(out) == out  # idempotent
    for key, value in obj.items():
        if base_key(key) in kept:
            assert out[key] == value  # a matched key keeps its whole subtree
    # Every kept top-level key either matches or leads to a key that does.
    for key, value in out.items():
        assert base_key(key) in kept or any(base_key(p[-1]) in kept for p in key_paths(value)
                                            if isinstance(p[-1], str))


@SETTINGS
@given(objects, mask_lists, mask_lists)
def test_masks_treat_y_true_and_y_pred_alike(obj, in_mask, out_mask):
    masks = Masks(in_mask=in_mask, out_mask=out_mask)
    assert masks.apply(json.loads(json.dumps(obj))) == masks.apply(obj)
    assert masks.apply(None) is None


@given(st.from_regex(r"[a-z]{2,10}", fullmatch=True), st.integers(0, 99))
def test_numbered_keys_match_their_base(word, n):
    assert base_key(f"{word}_{n}") == base_key(word)


# --- parsing model replies -------------------------------------------------------------------

OUTPUTS = {
    "answer": FieldSpec(type="string"),
    "count": FieldSpec(type="integer"),
    "score": FieldSpec(type="number"),
    "ok": FieldSpec(type="boolean"),
    "label": FieldSpec(type="enum", values=["positive", "negative", "neutral"]),
}
INPUTS = {"question": FieldSpec(type="string")}
values_for = {
    # A blank answer is not a valid reply (it is a parse failure, retried).
    "answer": st.text(st.characters(blacklist_categories=["Cs"]), max_size=40).filter(str.strip),
    "count": st.integers(-10**12, 10**12),
    "score": st.floats(allow_nan=False, allow_infinity=False, width=64),
    "ok": st.booleans(),
    "label": st.sampled_from(["positive", "negative", "neutral"]),
}
output_values = st.fixed_dictionaries(values_for)


@SETTINGS
@given(st.text(max_size=300))
def test_any_reply_parses_or_is_a_parse_error(reply):
    for fmt in (FieldsFormat(INPUTS, OUTPUTS), JsonFormat(INPUTS, OUTPUTS)):
        try:
            parsed = fmt.parse(reply)
        except ParseError:
            continue
        assert set(parsed) == set(OUTPUTS)


@SETTINGS
@given(output_values)
def test_fields_replies_read_back_exactly_what_the_demos_render(values):
    fmt = FieldsFormat(INPUTS, OUTPUTS)
    rendered = "\n".join(fmt._lines(values, OUTPUTS))  # how a demo's outputs are written
    reply = rendered.removeprefix("answer:")  # the prompt ends with "answer:"; the model writes the rest
    assert fmt.parse(reply) == values


@SETTINGS
@given(output_values, st.sampled_from(["{}", "```json\n{}\n```", "Sure! Here it is: {} Hope it helps.", " {}\n"]))
def test_json_replies_read_back_whatever_wraps_them(values, wrapper):
    reply = wrapper.replace("{}", json.dumps(values, ensure_ascii=False))
    assert JsonFormat(INPUTS, OUTPUTS).parse(reply) == values
