"""An LM judge is honest: a row it could not grade is *ungraded* everywhere (its predictions line
with the reason, report.json, report.md, the stderr summary), never a 0.0; its requests, tokens and
cost count in the run's usage; and the embedded base model, which grades at chance, is refused."""

import asyncio
import json

import pytest
from faultserver import FaultServer
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.errors import InputError
from rewardctl.rewards import REWARDS, RewardContext
from rewardctl.scoring import Scorer

from conftest import write

runner = CliRunner()
CLOSED_PORT = "http://127.0.0.1:9/v1"  # nothing listens: every request fails to connect


def mocked(reply, **extra):
    # A served model name needs no API key; mock_response answers before any connection.
    return {"name": "openai/judge", "api_base": CLOSED_PORT, "max_parse_retries": 0,
            "extra": {"mock_response": reply}, **extra}


def judge(model, **extra):
    config = {"type": "lm_judge", "name": "judge", "rubric": "Is the answer correct?", "scale": [1, 5],
              "model": model, **extra}
    return REWARDS.build(config, RewardContext(use_cache=False))


# --- the reward and the scorer ---------------------------------------------------------------------

def test_an_unparseable_grade_is_ungraded_not_the_failure_score():
    reward = judge(mocked("I refuse to grade this."), failure_score=0.5)
    values = asyncio.run(reward.score_batch([{"a": "x"}, {"a": "x"}], [{"a": "y"}, None]))
    assert values == [None, 0.5]  # ungraded: no value; a failed prediction keeps the failure policy
    assert list(reward.last_ungraded) == [0]
    assert reward.last_ungraded[0].startswith("reply unparseable: ")
    assert "I refuse to grade this." in reward.last_ungraded[0]
    assert reward.failures == 1


def test_a_failed_judge_provider_is_ungraded_with_its_reason():
    reward = judge({"name": "openai/judge", "api_base": CLOSED_PORT, "retries": 0, "timeout": 5})
    assert reward.score({"a": "x"}, {"a": "y"}) is None
    assert reward.last_ungraded[0].startswith("provider failed: ")
    usage = reward.usage()
    assert usage.requests == 1 and usage.failed_requests == 1


def test_the_total_leaves_an_ungraded_reward_out_like_an_excluded_one():
    scorer = Scorer([{"type": "exact_match", "name": "em"},
                     {"type": "lm_judge", "name": "judge", "rubric": "Right?", "model": mocked("no idea")}],
                    context=RewardContext(use_cache=False))
    (row,) = asyncio.run(scorer.score([{"a": "x"}], [{"a": "x"}], [{"q": "?"}]))
    assert row.rewards == {"em": 1.0, "judge": None}
    assert row.reward == 1.0  # the weighted mean of the rewards that have a value
    assert list(row.ungraded) == ["judge"] and row.ungraded["judge"].startswith("reply unparseable")
    usage = scorer.usage()
    assert usage.requests == 1 and usage.prompt_tokens > 0


def test_an_ungraded_part_is_left_out_of_its_composite_and_named():
    scorer = Scorer([{"type": "composite", "name": "combo", "rewards": [
        {"type": "exact_match", "name": "em"},
        {"type": "lm_judge", "name": "judge", "rubric": "Right?", "model": mocked("??")}]}],
        context=RewardContext(use_cache=False))
    (row,) = asyncio.run(scorer.score([{"a": "x"}], [{"a": "y"}]))
    assert row.rewards == {"combo": 0.0} and row.components == {"combo.em": 0.0, "combo.judge": None}
    assert list(row.ungraded) == ["combo.judge"]
    alone = Scorer([{"type": "composite", "name": "combo", "rewards": [
        {"type": "lm_judge", "name": "judge", "rubric": "Right?", "model": mocked("??")}]}],
        context=RewardContext(use_cache=False))
    (row,) = asyncio.run(alone.score([{"a": "x"}], [{"a": "y"}]))
    assert row.rewards == {"combo": None} and row.reward is None
    assert row.ungraded["combo"].startswith("judge: reply unparseable")


def test_scorer_usage_sums_every_judge_and_is_none_without_one():
    scorer = Scorer([{"type": "lm_judge", "name": "a", "rubric": "Right?", "model": mocked('{"score": "5"}')},
                     {"type": "lm_judge", "name": "b", "rubric": "Right?", "model": mocked('{"score": "1"}')}],
                    context=RewardContext(use_cache=False))
    rows = asyncio.run(scorer.score([{"x": "1"}] * 3, [{"x": "1"}] * 3))
    assert [r.rewards for r in rows] == [{"a": 1.0, "b": 0.0}] * 3
    assert scorer.usage().requests == 6
    assert Scorer([{"type": "exact_match"}]).usage() is None


# --- the embedded base model is refused ------------------------------------------------------------

def test_the_embedded_base_model_cannot_judge():
    with pytest.raises(InputError, match="cannot use the embedded model local/gemma-3-270m") as caught:
        REWARDS.build({"type": "lm_judge", "rubric": "Right?"}, RewardContext())  # unset: the program's
    assert "\n" not in str(caught.value) and "instruction-tuned chat model" in str(caught.value)
    with pytest.raises(InputError, match="cannot use the embedded model"):
        judge({"name": "local/gemma-3-270m"})


def test_validate_and_eval_refuse_it_in_one_line_before_any_call(tmp_path):
    spec = write(tmp_path / "spec.yaml", """\
name: local
inputs: {question: string}
outputs: {answer: string}
rewards:
  - {name: em, type: exact_match}
  - {name: judge, type: lm_judge, rubric: "Is the answer right?"}
""")
    data = write(tmp_path / "d.jsonl", '{"question": "a", "answer": "b"}\n')
    for args in (["validate", str(spec)], ["eval", str(spec), "-d", str(data)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert f"{spec}:6:" in line and "reward 'judge'.model" in line
        assert "cannot use the embedded model local/gemma-3-270m" in line and "is the program's" in line


# --- through the command line ----------------------------------------------------------------------

def grade(messages):
    """A judge that grades Paris 5, Lyon 1, and answers prose to anything else."""
    content = json.loads(messages[-1]["content"])
    if "response" not in content:  # the program
        return json.dumps({"answer": {"France": "Paris", "Italy": "Lyon"}.get(content["question"], "Madrid")})
    response = content["response"]
    return {"Paris": '{"score": "5"}', "Lyon": '{"score": "1"}'}.get(response, "I would rather not say.")


def judged_spec(tmp_path, server, model=None):
    judge_model = {"name": "openai/judge", "api_base": server.url, "retries": 0, "max_parse_retries": 0,
                   "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    spec = {"name": "judged", "inputs": {"question": "string"}, "outputs": {"answer": "string"},
            "rewards": [{"type": "exact_match", "name": "em"},
                        {"type": "lm_judge", "name": "judge", "rubric": "Is the answer right?",
                         "concurrency": 1, "model": judge_model}],
            "thresholds": {"rewards": {"judge": 0.4}}}
    if model is not None:
        spec["model"] = model
    return write(tmp_path / "spec.yaml", json.dumps(spec))


def test_score_shows_ungraded_rows_everywhere_and_counts_judge_usage(tmp_path):
    rows = [("France", "Paris", "Paris"), ("France", "Paris", "Lyon"), ("Spain", "Madrid", "Madrid"),
            ("Peru", "Lima", "Paris")]
    predictions = write(tmp_path / "p.jsonl", "".join(
        json.dumps({"inputs": {"question": q}, "y_true": {"answer": t}, "y_pred": {"answer": p}}) + "\n"
        for q, t, p in rows))
    out = tmp_path / "out"
    # Requests in row order (concurrency 1): the 4th gets a 500 (no retries): the provider failed.
    with FaultServer(grade, script=[None, None, None, "500"]) as server:
        spec = judged_spec(tmp_path, server)
        result = runner.invoke(app, ["score", str(spec), "-p", str(predictions), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["rewards"]["judge"] for line in lines] == [1.0, 0.0, None, None]
    assert "ungraded" not in lines[0] and "ungraded" not in lines[1]
    assert lines[2]["ungraded"]["judge"].startswith("reply unparseable: ")
    assert "I would rather not say." in lines[2]["ungraded"]["judge"]
    assert lines[3]["ungraded"]["judge"].startswith("provider failed: ")
    assert lines[2]["reward"] == 1.0  # em alone: the ungraded judge is left out of the total

    stats = report["stats"]["rewards"]["judge"]
    assert (stats["count"], stats["ungraded"], stats["excluded"], stats["mean"]) == (2, 2, 0, 0.5)
    assert report["summary"]["ungraded"] == 2 and report["summary"]["rewards"]["judge"] == 0.5
    (gate,) = report["thresholds"]
    assert gate["value"] == 0.5 and gate["ungraded"] == 2 and gate["passed"]
    assert any("'judge' could not grade 2 of 4 rows" in w and "over the 2 graded rows" in w
               for w in report["warnings"])
    usage = report["usage"]
    assert usage["requests"] == 4 and usage["failed_requests"] == 1
    assert usage["judge"]["requests"] == 4 and usage["judge"]["prompt_tokens"] == 15  # 3 answered x 5
    assert usage["cost_usd"] == pytest.approx(3 * (5e-6 + 6e-6))

    md = (out / "report.md").read_text()
    assert "| judge | 1 | 0.500 (2 ungraded) |" in md and "0 errors, 2 ungraded" in md
    assert "4 by LM judges" in md and "could not grade 2 of 4 rows" in md
    saved = json.loads((out / "report.json").read_text())
    assert saved["stats"]["rewards"]["judge"]["ungraded"] == 2
    summary = " ".join(result.stderr.split())  # the table may wrap
    assert "0.500 (2 ungraded)" in summary and "2 ungraded" in summary
    assert "threshold judge: 0.500 (2 ungraded) >= 0.4 pass" in summary
    assert "0.000" not in json.dumps(stats)  # never a zero for what was not graded


def test_rescoring_replaces_the_reasons(tmp_path):
    """A line re-scored by a judge that now grades loses its old reason."""
    line = {"inputs": {"question": "France"}, "y_true": {"answer": "Paris"}, "y_pred": {"answer": "Paris"},
            "rewards": {"judge": None}, "ungraded": {"judge": "reply unparseable: old"}}
    predictions = write(tmp_path / "p.jsonl", json.dumps(line) + "\n")
    with FaultServer(grade) as server:
        result = runner.invoke(app, ["score", str(judged_spec(tmp_path, server)), "-p", str(predictions),
                                     "--out", str(tmp_path / "out"), "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    (rescored,) = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert rescored["rewards"]["judge"] == 1.0 and "ungraded" not in rescored
    assert json.loads(result.stdout)["stats"]["rewards"]["judge"]["ungraded"] == 0


def test_eval_writes_the_reason_in_the_line_and_counts_judge_usage(tmp_path):
    data = write(tmp_path / "d.jsonl", "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in
                                               [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid")]))
    out = tmp_path / "out"
    with FaultServer(grade) as server:
        program = {"name": "openai/program", "api_base": server.url, "retries": 0}
        spec = judged_spec(tmp_path, server, model=program)
        result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--out", str(out), "--json",
                                     "--concurrency", "1"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["rewards"]["judge"] for line in lines] == [1.0, 0.0, None]
    assert lines[2]["ungraded"]["judge"].startswith("reply unparseable: ")
    assert report["stats"]["rewards"]["judge"]["ungraded"] == 1 and report["summary"]["ungraded"] == 1
    usage = report["usage"]
    assert usage["judge"]["requests"] == 3
    assert usage["requests"] == 6  # 3 program requests + 3 judge requests
    assert "(1 ungraded)" in (out / "report.md").read_text()

    # Sharded, then merged: the merged report counts the shards' ungraded lines and judge usage.
    with FaultServer(grade) as server:
        program = {"name": "openai/program", "api_base": server.url, "retries": 0}
        spec = judged_spec(tmp_path, server, model=program)
        for k in (1, 2):
            result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--out", str(tmp_path / f"s{k}"),
                                         "--shard", f"{k}/2", "--no-cache", "-q"])
            assert result.exit_code in (0, 1), result.stderr  # 1: a shard under the judge's threshold
    result = runner.invoke(app, ["merge", str(spec), str(tmp_path / "s1"), str(tmp_path / "s2"),
                                 "--out", str(tmp_path / "merged"), "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    merged = json.loads(result.stdout)
    assert merged["stats"]["rewards"]["judge"]["ungraded"] == 1 and merged["summary"]["ungraded"] == 1
    assert merged["usage"]["judge"]["requests"] == 3 and merged["usage"]["requests"] == 6
