"""Writes the bad-input corpus and its cases.json: `python tests/bad_inputs/make_corpus.py`.
The checked-in files are what the tests read; this script says how each was made."""
import json
import shutil
from pathlib import Path

root = Path(__file__).resolve().parent
for sub in ("good", "specs", "datasets", "predictions", "pairs"):
    shutil.rmtree(root / sub, ignore_errors=True)
cases = {}

GOOD = """\
name: corpus
model:
  name: openai/gpt-4o-mini
  extra: {mock_response: '{"answer": "4"}'}
inputs:
  question: string
outputs:
  answer: {type: string, max_length: 40}
rewards:
  - {name: em, type: exact_match}
"""

def put(rel, content, cmd, where, note):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    cases[rel] = {"command": cmd, "where": where, "what": note}

(root / "good").mkdir(parents=True)
(root / "good" / "spec.yaml").write_text(GOOD)
(root / "good" / "data.jsonl").write_text('{"question": "2+2?", "answer": "4"}\n')
(root / "good" / "pairs.jsonl").write_text(
    '{"prompt": "p1", "chosen": "good", "rejected": "bad"}\n{"prompt": "p2", "chosen": "fine", "rejected": "poor"}\n')

HEAD = "name: corpus\nmodel: openai/gpt-4o-mini\ninputs: {question: string}\noutputs: {answer: string}\n"
def spec(rel, text, where, note): put(f"specs/{rel}", text, "validate", where, note)

spec("empty.yaml", "", "empty", "an empty file")
spec("only_whitespace.yaml", "\n   \n\n", "empty", "only blank lines")
spec("only_comments.yaml", "# nothing here\n# at all\n", "empty", "only comments")
spec("binary_garbage.yaml", bytes(range(256)) * 3, ":2:", "binary garbage")
spec("invalid_utf8.yaml", HEAD.encode() + b"description: caf\xe9 au lait\n", ":5:", "invalid UTF-8 on line 5 (Latin-1 bytes)")
spec("bom_then_unknown_key.yaml", b"\xef\xbb\xbf" + (HEAD + "instrucions: be brief\n").encode(), ":5:", "a BOM, then a misspelt key on line 5: the BOM does not shift lines")
spec("crlf_then_wrong_type.yaml", (HEAD + "examples: 3\n").replace("\n", "\r\n"), ":5:", "CRLF line ends, a wrong type on line 5")
spec("a_list.yaml", "- name: corpus\n- model: x\n", "mapping", "a list, not a mapping")
spec("a_scalar.yaml", "hello world\n", "mapping", "a bare scalar")
spec("syntax_error.yaml", HEAD + "rewards: [{name: em, type: exact_match}\n", ":", "an unclosed flow sequence")
spec("bad_indentation.yaml", "name: corpus\nmodel:\n  name: openai/x\n temperature: 0\n", ":4:", "an indentation error")
spec("tab_indentation.yaml", "name: corpus\nmodel:\n\tname: openai/x\n", ":3:", "a tab used for indentation")
spec("duplicate_key.yaml", HEAD + "name: again\n", ":5:", "a duplicated top-level key")
spec("duplicate_nested_key.yaml", HEAD + "rewards:\n  - name: em\n    type: exact_match\n    name: em2\n", ":8:", "a duplicated key inside a reward")
spec("alias_bomb.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n", "alias", "a billion-laughs alias bomb")
spec("deep_nesting.yaml", HEAD + "description: " + "[" * 5000 + "]" * 5000 + "\n", ":5:", "5,000 nested lists")
spec("deep_nesting_mappings.yaml", HEAD + "extra: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", ":5:", "3,000 nested mappings")
spec("python_tag.yaml", HEAD + "description: !!python/object/apply:os.system ['echo pwned']\n", ":5:", "a python/object tag (never executed)")
spec("custom_tag.yaml", HEAD + "description: !include secrets.yaml\n", ":5:", "a custom tag")
spec("control_character.yaml", HEAD + "description: a\x1fb\n", ":5:", "a control character YAML does not allow")
spec("unknown_top_key.yaml", HEAD + "instrucions: be brief\n", "instrucions", "a misspelt top-level key")
spec("missing_name.yaml", HEAD.replace("name: corpus\n", ""), "name", "the required name is missing")
spec("missing_outputs.yaml", HEAD.replace("outputs: {answer: string}\n", ""), "outputs", "no outputs data model")
spec("name_is_a_list.yaml", HEAD.replace("name: corpus", "name: [a, b]"), ":1:", "name of the wrong type")
spec("unknown_field_type.yaml", HEAD.replace("{answer: string}", "{answer: strng}"), ":4:", "a field type that does not exist")
spec("enum_without_values.yaml", HEAD.replace("{answer: string}", "{answer: {type: enum}}"), ":4:", "an enum with no values")
spec("same_input_and_output.yaml", HEAD.replace("{answer: string}", "{question: string}"), "question", "one field both input and output")
spec("unknown_reward_type.yaml", HEAD + "rewards:\n  - {name: r, type: exact_mach}\n", "rewards[0].type", "a misspelt reward type")
spec("reward_without_type.yaml", HEAD + "rewards:\n  - {name: r}\n", "rewards[0]", "a reward without a type")
spec("reward_unknown_option.yaml", HEAD + "rewards:\n  - {name: r, type: exact_match, strip_all: yes}\n", "strip_all", "an option the reward does not have")
spec("duplicate_reward_name.yaml", HEAD + "rewards:\n  - {name: r, type: exact_match}\n  - {name: r, type: f1_score}\n", ":7:", "two rewards with one name")
spec("in_mask_matches_nothing.yaml", HEAD + "rewards:\n  - {name: r, type: exact_match, in_mask: [capital]}\n", "in_mask", "an in_mask that matches no field")
spec("out_mask_matches_nothing.yaml", HEAD + "rewards:\n  - {name: r, type: exact_match, out_mask: [reasoning]}\n", "out_mask", "an out_mask that matches no field")
spec("mask_pattern_invalid.yaml", HEAD + "rewards:\n  - {name: r, type: exact_match, in_mask_pattern: '(ans'}\n", "in_mask_pattern", "a mask pattern that is not a regex")
spec("nan_weight.yaml", HEAD + "rewards:\n  - {name: r, type: exact_match, weight: .nan}\n", "weight", "a NaN weight")
spec("infinite_temperature.yaml", HEAD.replace("model: openai/gpt-4o-mini", "model: {name: openai/gpt-4o-mini, temperature: .inf}"), "temperature", "an infinite temperature")
spec("negative_max_tokens.yaml", HEAD.replace("model: openai/gpt-4o-mini", "model: {name: openai/gpt-4o-mini, max_tokens: -5}"), "max_tokens", "a negative max_tokens")
spec("example_unknown_field.yaml", HEAD + "examples:\n  - input: {question: a}\n    output: {answr: b}\n", "examples[0].output", "a demo with an unknown output field")
spec("example_wrong_type.yaml", HEAD + "examples:\n  - input: {question: 3}\n    output: {answer: b}\n", "examples[0].input", "a demo whose input has the wrong type")
spec("unknown_optimizer.yaml", HEAD + "optimizer: {type: random_few_shoot}\n", "optimizer.type", "a misspelt optimizer")
spec("optimizer_bad_option.yaml", HEAD + "optimizer: {type: random_few_shot, min_examples: 5, max_examples: 2}\n", "optimizer", "min above max")
spec("secret_in_spec.yaml", HEAD.replace("model: openai/gpt-4o-mini", "model: {name: openai/gpt-4o-mini, extra: {api_key: sk-oops}}"), "model.extra", "an API key written into the spec")
spec("python_reward_missing_file.yaml", HEAD + "rewards:\n  - {name: r, type: python, function: 'nowhere.py:score'}\n", "nowhere.py", "a python reward whose file does not exist")
spec("python_reward_no_function.yaml", HEAD + "rewards:\n  - {name: r, type: python, function: 'json'}\n", "function", "a python reward naming no function")
spec("regex_reward_invalid.yaml", HEAD + "rewards:\n  - {name: r, type: regex, pattern: '[a-'}\n", "pattern", "a regex reward with a broken pattern")
spec("composite_unknown_member.yaml", HEAD + "rewards:\n  - {name: c, type: composite, rewards: [ghost]}\n", "rewards[0]", "a composite naming a reward that does not exist")
spec("threshold_unknown_reward.yaml", HEAD + "rewards:\n  - {name: r, type: exact_match}\nthresholds: {rewards: {ghost: 0.5}}\n", "thresholds", "a threshold on a reward that does not exist")
spec("json_schema_invalid.yaml", HEAD + "rewards:\n  - {name: r, type: json_schema, schema: {type: 12}}\n", "schema", "a json_schema reward whose schema is invalid")

def data(rel, content, where, note): put(f"datasets/{rel}", content, "eval", where, note)
OK = '{"question": "2+2?", "answer": "4"}\n'
data("empty.jsonl", "", "empty", "an empty file")
data("blank_lines.jsonl", "\n\n  \n", "no JSON lines", "only blank lines")
data("binary_garbage.jsonl", bytes(range(255, -1, -1)) * 4, ":1:", "binary garbage")
data("invalid_utf8.jsonl", OK.encode() + b'{"question": "caf\xe9", "answer": "4"}\n', ":2:", "invalid UTF-8 on line 2")
data("bom_then_bad_line.jsonl", b"\xef\xbb\xbf" + (OK + OK + '{"question": 7, "answer": "4"}\n').encode(), ":3:", "a BOM, then a wrong type on line 3")
data("crlf_then_bad_line.jsonl", (OK + '{"question": "x"}\n').replace("\n", "\r\n"), ":2:", "CRLF line ends, a missing output on line 2")
data("not_an_object.jsonl", OK + "[1, 2, 3]\n", ":2:", "an array, not an object")
data("a_string_line.jsonl", OK + '"just text"\n', ":2:", "a JSON string, not an object")
data("truncated.jsonl", OK + '{"question": "2+2?", "ans\n', ":2:", "a line cut short")
data("plain_text.jsonl", "question,answer\n2+2?,4\n", ":1:", "CSV given as JSONL")
data("wrong_input_type.jsonl", OK + '{"question": ["a"], "answer": "4"}\n', "question", "an input of the wrong type")
data("null_input.jsonl", '{"question": null, "answer": "4"}\n', "question", "a null input")
data("missing_input.jsonl", OK + '{"answer": "4"}\n', "question", "a missing input")
data("missing_output.jsonl", '{"question": "2+2?"}\n', "answer", "no ground truth")
data("wrong_output_type.jsonl", '{"question": "2+2?", "answer": 4}\n', "answer", "an output of the wrong type")
data("output_is_a_list.jsonl", '{"question": "2+2?", "answer": ["4"]}\n', "answer", "an output that is a list")
data("duplicate_key.jsonl", OK + '{"question": "a", "question": "b", "answer": "4"}\n', ":2:", "a duplicated key")
data("nan.jsonl", '{"question": "2+2?", "answer": "4", "score": NaN}\n', ":1:", "NaN")
data("infinity.jsonl", OK + OK + '{"question": "2+2?", "answer": "4", "w": -Infinity}\n', ":3:", "-Infinity")
data("deep_nesting.jsonl", '{"question": "2+2?", "answer": "4", "meta": ' + "[" * 100000 + "]" * 100000 + "}\n", ":1:", "100,000 nested arrays")
data("trailing_comma.jsonl", '{"question": "2+2?", "answer": "4",}\n', ":1:", "a trailing comma")
data("single_quotes.jsonl", "{'question': '2+2?', 'answer': '4'}\n", ":1:", "single quotes")
data("two_objects_one_line.jsonl", OK.strip() + " " + OK, ":1:", "two objects on one line")
data("nul_bytes.jsonl", OK.encode() + b'\x00\x00{"question": "x", "answer": "4"}\n', ":2:", "NUL bytes")

def preds(rel, content, where, note): put(f"predictions/{rel}", content, "score", where, note)
PRED = '{"y_true": {"answer": "4"}, "y_pred": {"answer": "4"}}\n'
preds("empty.jsonl", "", "empty", "an empty file")
preds("binary_garbage.jsonl", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), ":1:", "a PNG given as predictions")
preds("no_y_true.jsonl", PRED + '{"y_pred": {"answer": "4"}}\n', "y_true", "a line without y_true")
preds("y_pred_a_string.jsonl", '{"y_true": {"answer": "4"}, "y_pred": "4"}\n', "y_pred", "y_pred not an object")
preds("y_true_wrong_type.jsonl", '{"y_true": {"answer": 4}, "y_pred": {"answer": "4"}}\n', "y_true.answer", "y_true of the wrong type")
preds("duplicate_key.jsonl", '{"y_true": {"answer": "4"}, "y_pred": {"answer": "4", "answer": "5"}}\n', ":1:", "a duplicated key in y_pred")
preds("nan.jsonl", PRED + '{"y_true": {"answer": "4"}, "y_pred": {"answer": "4"}, "reward": NaN}\n', ":2:", "NaN")
preds("truncated.jsonl", PRED + PRED[:30] + "\n", ":2:", "a line cut short")
preds("invalid_utf8.jsonl", PRED.encode() + b'{"y_true": {"answer": "\xff"}, "y_pred": null}\n', ":2:", "invalid UTF-8")

def pairs(rel, content, where, note): put(f"pairs/{rel}", content, "train-reward", where, note)
PAIR = '{"prompt": "p", "chosen": "good", "rejected": "bad"}\n'
pairs("empty.jsonl", "", "empty", "an empty file")
pairs("missing_chosen.jsonl", PAIR + '{"prompt": "p", "rejected": "bad"}\n', ":2:", "a pair without chosen")
pairs("empty_rejected.jsonl", PAIR + '{"prompt": "p", "chosen": "x", "rejected": ""}\n', ":2:", "an empty rejected response")
pairs("bad_margin.jsonl", PAIR + '{"prompt": "p", "chosen": "x", "rejected": "y", "margin": "big"}\n', "margin", "a margin that is not a number")
pairs("one_pair.jsonl", PAIR, "at least 2", "a single pair")
pairs("invalid_utf8.jsonl", PAIR.encode() + b'{"prompt": "\xc3\x28", "chosen": "a", "rejected": "b"}\n', ":2:", "invalid UTF-8")

(root / "cases.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
(root / "README.md").write_text(
    "# Bad inputs\n\nEach file here is wrong in one way (`cases.json` says how, and which command reads it). "
    "`tests/test_bad_inputs.py` runs the command on each and requires exit code 2 and one line on stderr that "
    "names the file and the line or field: never a traceback. Files under `good/` are the valid companions "
    "(the spec that reads the datasets and predictions). Huge lines are generated at test time. `make_corpus.py` writes the corpus (and says how each file was made).\n")
print(len(cases), "cases")
