"""Every optimize run scores the simple baselines (zero-shot, the spec's demos, k labeled demos)
as candidates, reports each against the best state on the same rows, and gives a verdict that
says which split it rests on; the default optimizer (demo_search); a budget in model calls.
On the deterministic test model (tests/fakelm.py), which gets more right with more demos."""

import json

import pytest
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.optimize import DEFAULT_OPTIMIZER, baseline_states, resolve_config
from rewardctl.options import OptimizeOptions
from rewardctl.spec import load_spec
from rewardctl.state import Example

from conftest import write, write_quiz

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
"""


@pytest.fixture
def quiz(tmp_path):
    write_quiz(tmp_path)
    return tmp_path


def optimize(tmp_path, spec_text, *extra, test=True, out="run"):
    spec = write(tmp_path / "quiz.yaml", spec_text)
    args = ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / out),
            "--json", "-q", *extra]
    if test:
        args += ["--test", str(tmp_path / "test.jsonl")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_every_baseline_is_reported_against_the_best_on_the_held_out_split(quiz):
    report = optimize(quiz, SPEC + "optimizer: {type: random_few_shot, epochs: 1, max_examples: 1}\n")
    names = [b["name"] for b in report["baselines"]]
    assert names == ["spec demos", "zero-shot", "3 labeled demos", "8 labeled demos"]
    assert [b["demos"] for b in report["baselines"]] == [1, 0, 3, 8]
    for b in report["baselines"]:
        assert b["test"]["rows"] == 20 and b["validation"]["rows"] == report["data"]["val_rows"]
        assert b["val_objective"] is not None
    # The first baseline is the initial program: its comparisons are the report's own.
    assert report["baselines"][0]["test"] == report["test"]
    # Proposals of one demo cannot beat 3 labeled demos on this model (3 get every row right): the
    # best is that baseline, so the best state is never worse on validation than the best baseline.
    best_baseline = max(b["val_objective"] for b in report["baselines"])
    assert report["best"]["val_objective"] >= best_baseline
    verdict = report["verdict"]
    assert verdict["split"] == "test" and verdict["held_out"] is True
    assert verdict["text"].startswith("On the held-out test split: the best state is the 3 labeled demos baseline, "
                                   "the strongest on test")
    md = (quiz / "run" / "report.md").read_text()
    assert "| 8 labeled demos | 8 |" in md and verdict["text"] in md


def test_without_a_test_split_the_verdict_says_it_rests_on_validation(quiz):
    report = optimize(quiz, SPEC + "optimizer: {type: random_few_shot, epochs: 1}\n", test=False)
    verdict = report["verdict"]
    assert verdict["split"] == "validation" and verdict["held_out"] is False
    assert verdict["text"].startswith("Only validation evidence: the validation split chose the best state")
    assert all(b["test"] is None for b in report["baselines"])


def test_a_search_that_finds_better_is_measured_against_the_strongest_baseline(quiz):
    spec = SPEC + "optimizer: {type: random_few_shot, epochs: 2, min_examples: 3, max_examples: 4, baseline_demos: [0, 1]}\n"
    report = optimize(quiz, spec)
    assert [b["name"] for b in report["baselines"]] == ["spec demos", "zero-shot", "1 labeled demos"]
    verdict = report["verdict"]
    assert report["best"]["demos"] >= 3  # a searched candidate: no baseline has 3 or more demos
    strongest = max(report["baselines"], key=lambda b: b["test"]["baseline"])
    assert verdict["against"] == strongest["name"]
    assert verdict["difference"] == pytest.approx(strongest["test"]["difference"])
    assert "better than the strongest baseline" in verdict["text"] and verdict["ci95"][0] > 0


def test_labeled_baselines_are_seeded_and_skipped_without_enough_rows(quiz):
    spec = load_spec(write(quiz / "quiz.yaml", SPEC))
    labeled = [Example(input={"q": f"q{i}"}, output={"answer": f"a{i}"}) for i in range(10)]

    def states(seed, k=(0, 3, 8), rows=labeled):
        config = resolve_config(spec, OptimizeOptions(train="-", seed=seed, optimizer="random_few_shot"))
        return baseline_states(spec, config.model_copy(update={"baseline_demos": list(k)}), rows)

    assert [s.key() for _, s in states(0)] == [s.key() for _, s in states(0)]
    assert [s.key() for _, s in states(0)] != [s.key() for _, s in states(1)]
    assert [name for name, _ in states(0, rows=labeled[:5])] == ["spec demos", "zero-shot", "3 labeled demos"]
    assert [name for name, _ in states(0, k=())] == ["spec demos"]
    assert [name for name, _ in states(7, k=(0, 3))] == ["spec demos", "zero-shot", "3 labeled demos"]
    # The kl optimizer scores none by default: each costs a sampled evaluation of the validation set.
    config = resolve_config(spec, OptimizeOptions(train="-", optimizer="kl"))
    assert [name for name, _ in baseline_states(spec, config, labeled)] == ["spec demos"]


def test_the_default_optimizer_is_demo_search_and_it_searches_up_to_16_demos(quiz):
    assert DEFAULT_OPTIMIZER == "demo_search"
    report = optimize(quiz, SPEC, "--epochs", "1")
    assert report["optimizer"]["type"] == "demo_search" and report["optimizer"]["val_batch_size"] == 0
    # Every candidate was scored on the whole validation set.
    assert {s["rows"] for s in report["steps"]} == {report["data"]["val_rows"]}
    assert report["test"]["optimized"] == 1.0 and report["verdict"]["held_out"]


def test_a_budget_in_model_calls_ends_the_search_and_resume_can_raise_it(quiz):
    spec = SPEC + "optimizer: {type: random_few_shot, epochs: 4, batch_size: 4, patience: null, max_calls: 60}\n"
    report = optimize(quiz, spec)
    assert report["budget_exhausted"] is True and 60 <= report["calls"] < 60 + 4 + 9 * 4 + 1
    assert len(report["history"]) == 1  # 4 baselines on 5 validation rows, then steps until 60
    assert "the budget of max_calls was spent" in (quiz / "run" / "report.md").read_text()
    # A rerun replays the cache and stops at the same step: the budget counts cached replies.
    again = optimize(quiz, spec)
    assert again["calls"] == report["calls"] and again["best"] == report["best"]


NO_DEMOS = SPEC.replace("""examples:
  - input: {q: seed question}
    output: {answer: seed answer}
""", "")


def test_confident_selection_takes_a_candidate_only_for_a_gain_whose_ci_is_above_zero(quiz):
    # Zero-shot is the only baseline and gets about a quarter right; demos found by the search get
    # every row right: a gain far outside the noise, so the candidate replaces the baseline.
    report = optimize(quiz, NO_DEMOS + "optimizer: {type: demo_search, epochs: 1, baseline_demos: []}\n")
    sel = report["selection"]
    assert sel["chose"] == "candidate" and sel["baseline"] == "zero-shot" and sel["ci95"][0] > 0
    # Validation rows plus the training rows that are not the candidate's demos.
    assert report["data"]["val_rows"] < sel["rows"] <= report["data"]["val_rows"] + report["data"]["train_rows"]
    assert report["best"]["demos"] == sel["candidate_demos"] and report["test"]["optimized"] == 1.0
    assert "the candidate replaces it" in (quiz / "run" / "report.md").read_text()


def test_confident_selection_keeps_the_baseline_when_nothing_beats_it_clearly(quiz):
    # 3 labeled demos already get every row right: no searched candidate can do better.
    report = optimize(quiz, NO_DEMOS + "optimizer: {type: demo_search, epochs: 1}\n")
    sel = report["selection"]
    assert sel["chose"] == "baseline" and report["best"]["demos"] in (3, 8)
    assert report["verdict"]["text"].startswith("On the held-out test split: the best state is the ")
    assert "so the baseline is kept" in (quiz / "run" / "report.md").read_text()


def test_choose_needs_the_whole_ci_above_zero():
    from rewardctl.optimize import Candidate, choose
    from rewardctl.state import ProgramState

    base = Candidate(ProgramState(None, []), "base", baseline="zero-shot")
    new = Candidate(ProgramState(None, []), "new")
    lucky = {"base": dict.fromkeys(range(20), 0.5), "new": {i: 0.5 + (0.5 if i < 3 else 0.0) for i in range(20)}}
    record, chosen = choose(base, new, lucky, seed=0)
    assert chosen is base and record.chose == "baseline" and record.ci95[0] == 0.0 < record.difference
    clear = {"base": dict.fromkeys(range(20), 0.0), "new": dict.fromkeys(range(20), 1.0)}
    record, chosen = choose(base, new, clear, seed=0)
    assert chosen is new and record.chose == "candidate" and record.ci95 == [1.0, 1.0]
    record, chosen = choose(base, None, clear, seed=0)
    assert chosen is base and record.candidate_mean is None


def test_a_test_split_that_repeats_training_rows_is_not_called_held_out(quiz):
    # The training file given as --test too: a user's slip that would make any gain look real.
    spec = write(quiz / "quiz.yaml", SPEC + "optimizer: {type: random_few_shot, epochs: 1}\n")
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(quiz / "train.jsonl"), "--test",
                                 str(quiz / "train.jsonl"), "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    verdict = json.loads(result.stdout)["verdict"]
    assert verdict["split"] == "test" and verdict["held_out"] is False
    assert verdict["text"].startswith("Not held out: 30 test rows have the inputs of training or validation rows")


def test_selection_gives_both_means_on_the_rows_they_were_paired_on():
    from rewardctl.optimize import Candidate, choose
    from rewardctl.state import ProgramState

    base = Candidate(ProgramState(None, []), "base", baseline="8 labeled demos")
    new = Candidate(ProgramState(None, []), "new")
    # The baseline saw rows 0-3 only (its demos took the rest); the candidate saw rows 0-9.
    scores = {"base": dict.fromkeys(range(4), 1.0), "new": {**dict.fromkeys(range(4), 1.0), **dict.fromkeys(range(4, 10), 0.0)}}
    record, _ = choose(base, new, scores, seed=0)
    assert record.rows == 4 and record.baseline_mean == record.candidate_mean == 1.0 and record.difference == 0.0


def test_the_default_resumes_to_the_same_choice_as_an_uninterrupted_run(quiz):
    spec = NO_DEMOS + "optimizer: {type: demo_search, epochs: 2, patience: null, baseline_demos: [0]}\n"
    whole = optimize(quiz, spec)
    optimize(quiz, spec, "--epochs", "1", out="parts")
    resumed = optimize(quiz, spec, "--resume", out="parts")
    assert resumed["resumed_from_epoch"] == 1
    for key in ("best", "selection", "verdict", "baselines", "test"):
        assert resumed[key] == whole[key], key
