"""rewardctl score: re-scoring predictions files, through the CLI."""

import json

import pytest
from typer.testing import CliRunner

from rewardctl.cli import app

from conftest import MINIMAL_SPEC, write

runner = CliRunner()


def spec_file(tmp_path, extra=""):
    return write(tmp_path / "spec.yaml", MINIMAL_SPEC + "    text_normalization: [casefold]\n" + extra)


def preds_file(tmp_path, lines, name="preds.jsonl"):
    return write(tmp_path / name, "".join(json.dumps(line) + "\n" for line in lines))


LINES = [
    {"inputs": {"question": "2+2?"}, "y_true": {"answer": "4"}, "y_pred": {"answer": "4"}, "id": "a"},
    {"inputs": {"question": "3+3?"}, "y_true": {"answer": "6"}, "y_pred": {"answer": "six"}},
    {"y_true": {"answer": "2"}, "y_pred": None, "status": "error", "error": "timeout"},
    {"y_true": {"answer": "8"}, "y_pred": {"answer": "8"}},
]


def test_score_writes_each_reward_by_name_and_keeps_the_line(tmp_path):
    out = tmp_path / "o"
    result = runner.invoke(app, ["score", str(spec_file(tmp_path)), "-p", str(preds_file(tmp_path, LINES)),
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["kind"] == "score"
    assert report["summary"]["count"] == 4 and report["summary"]["errors"] == 1
    assert report["summary"]["rewards"]["em"] == pytest.approx(0.5)  # 1, 0, failed -> 0, 1
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["rewards"]["em"] for line in lines] == [1.0, 0.0, 0.0, 1.0]
    assert lines[0]["id"] == "a" and lines[2]["error"] == "timeout"
    assert (out / "report.md").exists()


def test_score_of_eval_predictions_reproduces_eval(tmp_path):
    spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC.replace(
        "  name: openai/gpt-4o-mini\n", '  name: openai/gpt-4o-mini\n  extra: {mock_response: \'{"answer": "4"}\'}\n'))
    data = write(tmp_path / "d.jsonl", '{"question": "a", "answer": "4"}\n{"question": "b", "answer": "5"}\n')
    ev = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--out", str(tmp_path / "ev"), "--json"])
    sc = runner.invoke(app, ["score", str(spec), "-p", str(tmp_path / "ev" / "predictions.jsonl"), "--json"])
    assert json.loads(ev.stdout)["summary"] == json.loads(sc.stdout)["summary"]


def test_excluded_failures_are_counted(tmp_path):
    spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC + "    on_error: exclude\n")
    result = runner.invoke(app, ["score", str(spec), "-p", str(preds_file(tmp_path, LINES)), "--json"])
    report = json.loads(result.stdout)
    assert report["summary"]["rewards"]["em"] == pytest.approx(2 / 3)
    assert report["stats"]["rewards"]["em"]["excluded"] == 1 and report["summary"]["errors"] == 1


@pytest.mark.parametrize("line,message", [
    ({"y_pred": {"answer": "4"}}, "y_true: expected an object"),
    ({"y_true": {"answer": 4}, "y_pred": {"answer": "4"}}, "y_true.answer: expected a string, got integer"),
    ({"y_true": {"answer": "4"}, "y_pred": "4"}, "y_pred: expected an object or null"),
    ({"y_true": {"other": "4"}, "y_pred": {"answer": "4"}}, "y_true.answer: missing (read by 'em')"),
])
def test_bad_prediction_lines_exit_2(tmp_path, line, message):
    path = preds_file(tmp_path, [LINES[0], line])
    result = runner.invoke(app, ["score", str(spec_file(tmp_path)), "-p", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"rewardctl: error: {path}:2: ")
    assert message in result.stderr


def test_fail_under_and_stdin(tmp_path):
    spec = spec_file(tmp_path)
    text = "".join(json.dumps(line) + "\n" for line in LINES)
    assert runner.invoke(app, ["score", str(spec), "-p", "-", "--fail-under", "0.6"], input=text).exit_code == 1
    assert runner.invoke(app, ["score", str(spec), "-p", "-", "--fail-under", "0.5"], input=text).exit_code == 0


def test_missing_normalization_parameters_are_fitted_on_the_file(tmp_path):
    spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC.replace("type: exact_match", "type: length\n    target: 2")
                 + "    normalization: {method: minmax}\n")
    lines = [{"y_true": {"answer": "x"}, "y_pred": {"answer": "x" * n}} for n in (1, 2, 3, 4)]
    result = runner.invoke(app, ["score", str(spec), "-p", str(preds_file(tmp_path, lines)), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # raw length rewards: 0.5, 1, 0.5, 0 -> fitted min 0, max 1 -> unchanged values, mean 0.5
    assert report["normalization"]["em"] == {"method": "minmax", "min": 0.0, "max": 1.0}
    assert report["summary"]["rewards"]["em"] == pytest.approx(0.5)
    # eval cannot fit while it generates: it refuses before any model call
    data = write(tmp_path / "d.jsonl", '{"question": "a", "answer": "4"}\n')
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data)])
    assert result.exit_code == 2 and "needs fitted parameters" in result.stderr


def test_run_level_metrics_in_the_report(tmp_path):
    spec_text = """\
name: clf
model: {name: openai/gpt-4o-mini}
inputs: {text: string}
outputs:
  label: {type: enum, values: [pos, neg]}
rewards:
  - {name: em, type: exact_match}
metrics:
  - {name: clf, type: classification, field: label}
  - {name: corpus_f1, type: field_f1}
thresholds:
  metrics: {clf: 0.3}
"""
    spec = write(tmp_path / "clf.yaml", spec_text)
    lines = [{"y_true": {"label": t}, "y_pred": {"label": p}} for t, p in
             [("pos", "pos"), ("pos", "neg"), ("neg", "neg"), ("neg", "neg")]]
    result = runner.invoke(app, ["score", str(spec), "-p", str(preds_file(tmp_path, lines)), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # pos: P 1, R .5, F1 2/3; neg: P 2/3, R 1, F1 .8 -> macro F1 (2/3 + .8) / 2
    assert report["summary"]["metrics"]["clf"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert report["stats"]["metrics"]["clf"]["confusion_matrix"] == [[1, 1], [0, 2]]
    assert report["summary"]["metrics"]["corpus_f1"] == pytest.approx(0.75)
    assert report["thresholds"][0]["name"] == "clf" and report["thresholds"][0]["passed"]


def test_eval_repeat_feeds_pass_at_k(tmp_path):
    spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC.replace(
        "  name: openai/gpt-4o-mini\n",
        '  name: openai/gpt-4o-mini\n  temperature: 1\n  extra: {mock_response: \'{"answer": "4"}\'}\n')
        + "metrics:\n  - {name: p2, type: pass_at_k, k: 2}\n")
    data = write(tmp_path / "d.jsonl", '{"question": "a", "answer": "4"}\n{"question": "b", "answer": "5"}\n')
    out = tmp_path / "o"
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--repeat", "3", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [(line["index"], line["sample"]) for line in lines] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    report = json.loads(result.stdout)
    assert report["summary"]["metrics"]["p2"] == 0.5  # row a always passes, row b never
    assert report["stats"]["metrics"]["p2"]["examples"] == 2


def test_spec_checks_for_metric_entries(tmp_path):
    bad_field = MINIMAL_SPEC + "metrics:\n  - {type: classification, field: nope}\n"
    result = runner.invoke(app, ["validate", str(write(tmp_path / "a.yaml", bad_field))])
    assert result.exit_code == 2 and "metrics[0].field: no output field 'nope'" in result.stderr
    bad_score = MINIMAL_SPEC + "metrics:\n  - {type: pass_at_k, score: nope}\n"
    result = runner.invoke(app, ["validate", str(write(tmp_path / "b.yaml", bad_score))])
    assert result.exit_code == 2 and "metrics[0].score: no reward or metric named 'nope'" in result.stderr
    nested = MINIMAL_SPEC.replace("    type: exact_match\n", "    type: composite\n    rewards:\n      - {type: exact_match, in_mask: [nope]}\n")
    result = runner.invoke(app, ["validate", str(write(tmp_path / "c.yaml", nested))])
    assert result.exit_code == 2 and "rewards[0].rewards[0].in_mask" in result.stderr


def test_score_memory_stays_flat(tmp_path):
    import asyncio
    import tracemalloc

    from rewardctl.scorefile import ScoreOptions, score_predictions
    from rewardctl.spec import load_spec

    spec = load_spec(spec_file(tmp_path))
    path = tmp_path / "big.jsonl"
    line = json.dumps({"y_true": {"answer": "some answer"}, "y_pred": {"answer": "some answer"}}) + "\n"

    def peak(rows: int) -> int:
        path.write_text(line * rows)
        tracemalloc.start()
        asyncio.run(score_predictions(spec, ScoreOptions(predictions=str(path), out_dir=str(tmp_path / "o"))))
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return high

    small, large = peak(5_000), peak(50_000)
    # 45,000 more rows may add the compact per-row statistics (a few doubles each), nothing more.
    assert large - small < 45_000 * 64, (small, large)


def test_a_python_reward_that_raises_names_the_row(tmp_path):
    """The user's function failing on a row stops the run (exit 2, one line) and names the
    predictions file and line, whether it scores row by row or takes lists."""
    write(tmp_path / "checks.py", "def judge(y_true, y_pred):\n"
          "    if y_true['answer'] == '8':\n        raise ValueError('no eights')\n    return 1.0\n"
          "def judge_all(y_trues, y_preds):\n    return [judge(t, p) for t, p in zip(y_trues, y_preds)]\n"
          "def word(y_true, y_pred):\n    return 'high' if y_true['answer'] == '6' else 1.0\n")
    preds = preds_file(tmp_path, LINES)
    for entry, message in [
        ("{name: mine, type: python, function: 'checks.py:judge'}", "reward 'mine' raised ValueError: no eights"),
        ("{name: mine, type: python, function: 'checks.py:judge_all', batched: true}",
         "reward 'mine' raised ValueError: no eights"),
        ("{type: composite, name: both, rewards: [{name: mine, type: python, function: 'checks.py:judge'}]}",
         "reward 'mine' raised ValueError: no eights"),
        ("{name: mine, type: python, function: 'checks.py:word'}", "reward 'mine' returned str, not a number"),
    ]:
        spec = spec_file(tmp_path, f"  - {entry}\n")
        result = runner.invoke(app, ["score", str(spec), "-p", str(preds)])
        line = 2 if "word" in entry else 4
        assert result.exit_code == 2, result.stderr
        assert result.stderr == f"rewardctl: error: {preds}:{line}: {message}\n"
