"""rewardctl optimize: the loop, checkpoints, resume, eval --checkpoint and export, on a
deterministic test model (tests/fakelm.py) that gets more right with more demos."""

import json

import fakelm
import pytest
from typer.testing import CliRunner

from rewardctl.cli import app

from conftest import write

runner = CliRunner()

SPEC = """\
name: quiz
model: {name: fakelm/demo-hungry, prompt_format: fields}
inputs: {q: string}
outputs: {answer: string}
examples:
  - input: {q: seed question}
    output: {answer: seed answer}
rewards:
  - {name: em, type: exact_match}
metrics:
  - {name: f1, type: f1_score}
optimizer:
  type: random_few_shot
  epochs: 4
  batch_size: 6
  patience: null
"""


@pytest.fixture
def quiz(tmp_path):
    fakelm.register()
    rows = []
    for i in range(50):
        fakelm.ANSWERS[f"question {i}"] = f"answer {i}"
        rows.append({"q": f"question {i}", "answer": f"answer {i}"})
    write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:30]))
    write(tmp_path / "test.jsonl", "".join(json.dumps(r) + "\n" for r in rows[30:]))
    return write(tmp_path / "quiz.yaml", SPEC), tmp_path


def optimize(spec, tmp_path, out, *extra):
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"),
                                 "--test", str(tmp_path / "test.jsonl"), "--out", str(out), "--json", "-q", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def comparable(report):
    """What must be equal between a resumed and an uninterrupted run (not timings)."""
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in report["history"]]
    return report["best"], history, report["validation"], report["test"]


def test_optimize_beats_the_zero_shot_baseline_and_writes_everything(quiz):
    spec, tmp_path = quiz
    out = tmp_path / "run"
    report = optimize(spec, tmp_path, out, "--zero-shot")
    assert report["optimizer"]["start"] == "zero_shot" and report["data"]["val_rows"] == 9
    test = report["test"]
    assert test["rows"] == 20 and test["optimized"] > test["baseline"] + 0.3
    assert test["ci95"][0] > 0 and test["difference"] == pytest.approx(test["optimized"] - test["baseline"])
    assert report["best"]["demos"] >= 1 and len(report["history"]) == 4
    row = report["history"][0]
    assert {"epoch", "train_reward", "val_reward", "best_val_objective", "metrics", "candidates"} <= set(row)
    assert set(row["metrics"]) == {"em", "f1"}
    for name in ("best.json", "report.json", "report.md", "checkpoints/epoch-001.json", "checkpoints/epoch-004.json"):
        assert (out / name).exists(), name
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = json.loads((out / "checkpoints" / "epoch-002.json").read_text())
    assert checkpoint["format"] == "rewardctl-checkpoint" and checkpoint["version"] == 1
    assert {"spec_fingerprint", "state", "optimizer", "optimizer_state", "history", "rng_state"} <= set(checkpoint)
    assert "| test |" in (out / "report.md").read_text()


def test_resume_reaches_the_same_result_as_an_uninterrupted_run(quiz):
    spec, tmp_path = quiz
    whole = optimize(spec, tmp_path, tmp_path / "whole", "--zero-shot")
    optimize(spec, tmp_path, tmp_path / "parts", "--zero-shot", "--epochs", "2")
    resumed = optimize(spec, tmp_path, tmp_path / "parts", "--zero-shot", "--resume")
    assert resumed["resumed_from_epoch"] == 2
    assert comparable(resumed) == comparable(whole)


def test_resume_refuses_a_changed_run(quiz):
    spec, tmp_path = quiz
    optimize(spec, tmp_path, tmp_path / "r", "--zero-shot", "--epochs", "1")
    base = ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "r"),
            "--zero-shot", "--resume"]
    changed = write(tmp_path / "changed.yaml", SPEC.replace("name: em, type: exact_match", "name: em, type: f1_score"))
    result = runner.invoke(app, ["optimize", str(changed), *base[2:]])
    assert result.exit_code == 2 and "the spec changed" in result.stderr
    result = runner.invoke(app, [*base, "--seed", "3"])
    assert result.exit_code == 2 and "data changed" in result.stderr  # another seed splits another validation set
    settings = write(tmp_path / "settings.yaml", SPEC.replace("batch_size: 6", "batch_size: 5"))
    result = runner.invoke(app, ["optimize", str(settings), *base[2:]])
    assert result.exit_code == 2 and "optimizer's settings changed" in result.stderr
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"),
                                 "--out", str(tmp_path / "empty"), "--resume"])
    assert result.exit_code == 2 and "nothing to resume" in result.stderr


def test_eval_checkpoint_and_export_use_the_learned_state(quiz):
    spec, tmp_path = quiz
    report = optimize(spec, tmp_path, tmp_path / "run", "--zero-shot")
    best = tmp_path / "run" / "best.json"
    result = runner.invoke(app, ["eval", str(spec), "-d", str(tmp_path / "test.jsonl"), "--checkpoint", str(best), "--json"])
    assert result.exit_code == 0, result.stderr
    checkpoint_reward = json.loads(result.stdout)["summary"]["reward"]
    assert checkpoint_reward == pytest.approx(report["test"]["optimized"])
    exported = tmp_path / "quiz.learned.yaml"
    result = runner.invoke(app, ["export", str(spec), "--checkpoint", str(best), "--out", str(exported)])
    assert result.exit_code == 0, result.stderr
    text = exported.read_text()
    assert text.startswith("# Exported by rewardctl") and "seed question" not in text
    result = runner.invoke(app, ["eval", str(exported), "-d", str(tmp_path / "test.jsonl"), "--json"])
    assert json.loads(result.stdout)["summary"]["reward"] == pytest.approx(checkpoint_reward)
    other = write(tmp_path / "other.yaml", SPEC.replace("outputs: {answer: string}", "outputs: {answer: {type: string, max_length: 9}}"))
    result = runner.invoke(app, ["eval", str(other), "-d", str(tmp_path / "test.jsonl"), "--checkpoint", str(best)])
    assert result.exit_code == 2 and "made for a different spec" in result.stderr


def test_early_stopping_with_patience(quiz):
    _spec, tmp_path = quiz
    patient = write(tmp_path / "p.yaml", SPEC.replace("epochs: 4", "epochs: 12").replace("patience: null", "patience: 1"))
    report = optimize(patient, tmp_path, tmp_path / "p")
    assert report["early_stopped"] and len(report["history"]) < 12


def test_bootstrap_few_shot_improves_from_zero_shot(quiz):
    spec, tmp_path = quiz
    report = optimize(spec, tmp_path, tmp_path / "b", "--zero-shot", "--optimizer", "bootstrap_few_shot")
    assert report["optimizer"]["type"] == "bootstrap_few_shot"
    assert report["test"]["optimized"] > report["test"]["baseline"] + 0.3


def test_seed_zero_is_a_seed(quiz):
    spec, tmp_path = quiz
    a = optimize(spec, tmp_path, tmp_path / "a", "--seed", "0", "--epochs", "1")
    b = optimize(spec, tmp_path, tmp_path / "b", "--seed", "0", "--epochs", "1")
    c = optimize(spec, tmp_path, tmp_path / "c", "--seed", "1", "--epochs", "1")
    assert a["data"]["fingerprint"] == b["data"]["fingerprint"] != c["data"]["fingerprint"]


def test_bad_optimize_input_exit_2(quiz):
    spec, tmp_path = quiz
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"), "--optimizer", "adam"])
    assert result.exit_code == 2 and "unknown optimizer type 'adam'" in result.stderr
    bad = write(tmp_path / "bad.yaml", SPEC.replace("type: random_few_shot", "type: random_few_shots"))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "optimizer.type: unknown optimizer type" in result.stderr
    empty = write(tmp_path / "empty.jsonl", "")
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(empty)])
    assert result.exit_code == 2 and "empty.jsonl: the file is empty" in result.stderr


NESTED_OUTPUTS = "outputs:\n  order:\n    type: object\n    properties: {id: string}\n"


@pytest.mark.parametrize(("change", "in_spec"), [
    ({}, False),  # a chat model through litellm (fields prompt): was an internal error, exit 3
    ({}, True),  # the same, kl chosen in the spec: named by file and line
    ({"model: {name: fakelm/demo-hungry, prompt_format: fields}":
      "model: {name: openai/x, api_base: 'http://127.0.0.1:9/v1'}"}, False),
    ({"model: {name: fakelm/demo-hungry, prompt_format: fields}":
      "model: {name: local/gemma-3-270m, prompt_format: json}"}, False),
    ({"outputs: {answer: string}\n": NESTED_OUTPUTS, "output: {answer: seed answer}": "output: {order: {id: x}}",
      "  - {name: em, type: exact_match}\n": "  - {name: em, type: exact_match}\n  - {type: lm_judge, rubric: right}\n",
      "  - {name: f1, type: f1_score}\n": "  - {name: f1, type: f1_score, in_mask: [order]}\n"}, False),
])
def test_kl_refuses_a_model_it_cannot_sample_before_any_call(quiz, change, in_spec):
    """kl samples token by token from the full distribution: only a local/ model with a fields
    prompt gives that. Any other model is one line and exit 2, before data is read or a model
    called, wherever kl was chosen."""
    spec, tmp_path = quiz
    text = SPEC.replace("type: random_few_shot", "type: kl") if in_spec else SPEC
    for old, new in change.items():
        assert old in text
        text = text.replace(old, new)
    spec = write(tmp_path / "kl.yaml", text)
    fakelm.CALLS["count"] = 0
    args = [] if in_spec else ["--optimizer", "kl"]
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"),
                                 "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in lines[0], result.stderr
    where = f"{spec}:13: optimizer.type: " if in_spec else "--optimizer: "
    assert lines[0].startswith(f"rewardctl: error: {where}the kl optimizer needs token-by-token sampling")
    assert "use bootstrap_few_shot, demo_search, random_few_shot or reflective" in lines[0]
    assert fakelm.CALLS["count"] == 0 and not (tmp_path / "out" / "best.json").exists()


def test_a_python_reward_that_raises_names_the_row(quiz):
    spec, tmp_path = quiz
    write(tmp_path / "checks.py", "def picky(y_true, y_pred):\n    if y_true['answer'] == 'answer 31':\n"
          "        raise KeyError('thirty-one')\n    return 1.0\n")
    spec = write(tmp_path / "picky.yaml", SPEC.replace("  - {name: f1, type: f1_score}\n",
                                                      "  - {name: picky, type: python, function: 'checks.py:picky'}\n"))
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"),
                                 "--val", str(tmp_path / "test.jsonl"), "-q"])
    assert result.exit_code == 2
    assert result.stderr == f"rewardctl: error: {tmp_path / 'test.jsonl'}:2: reward 'picky' raised KeyError: 'thirty-one'\n"
