"""Provider faults against a real OpenAI-compatible HTTP server on 127.0.0.1 that injects them:
retries with backoff, Retry-After, the error budget, fatal errors, and no row ever dropped."""

import json
import re

import pytest
from faultserver import FAULTS, FaultServer
from typer.testing import CliRunner

from rewardctl.cli import app

from conftest import write

runner = CliRunner()
ROWS = 24


def answer(messages):
    question = json.loads(messages[-1]["content"])["question"]
    return json.dumps({"answer": re.sub(r"\D", "", question)})


def spec(tmp_path, url, *, retries=8, timeout=1.0, extra=""):
    # model.timeout is a deadline for the whole request: under load, 0.5 s cut off real answers.
    text = f"""\
name: faults
model:
  name: openai/served
  api_base: {url}
  timeout: {timeout}
  retries: {retries}
  backoff_base: 0.02
  backoff_max: 1.0
inputs: {{question: string}}
outputs: {{answer: string}}
rewards:
  - {{name: em, type: exact_match}}
""" + extra
    return write(tmp_path / "spec.yaml", text)


def data(tmp_path, rows=ROWS):
    return write(tmp_path / "data.jsonl", "".join(json.dumps({"question": f"q{i}", "answer": str(i)}) + "\n"
                                                  for i in range(rows)))


def eval_json(*args):
    result = runner.invoke(app, ["eval", *map(str, args), "--json", "--no-cache"])
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def predictions(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_survived_and_no_row_is_lost(tmp_path, fault):
    with FaultServer(answer, rates={fault: 0.3}, seed=1, slow_s=2.0) as server:
        out = tmp_path / "out"
        result, report = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path), "--out", out,
                                   "--concurrency", "4")
    assert result.exit_code == 0, result.stderr
    assert server.injected[fault] >= 3
    rows = predictions(out)
    assert [r["index"] for r in rows] == list(range(ROWS))  # every input row, in order
    assert all(r["status"] == "ok" for r in rows) and report["summary"]["reward"] == 1.0
    kind = {"timeout": "timeout", "429": "rate_limit"}.get(fault)
    if kind:
        assert report["usage"]["faults"][kind] >= 3
    assert report["usage"]["retries"] >= server.injected[fault] - 1


def test_all_faults_at_once(tmp_path):
    rates = {fault: 0.06 for fault in FAULTS}  # 42% of requests fail, each kind in turn
    with FaultServer(answer, rates=rates, seed=2, slow_s=2.0) as server:
        out = tmp_path / "out"
        result, report = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path, 40), "--out", out,
                                   "--concurrency", "8")
    assert result.exit_code == 0, result.stderr
    assert sum(server.injected.values()) >= 10 and len(server.injected) >= 5
    assert len(predictions(out)) == 40 and report["summary"]["errors"] == 0


def test_retry_after_is_honored(tmp_path):
    with FaultServer(answer, script=["429"], retry_after=0.6) as server:
        result, _ = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path, 1))
        assert result.exit_code == 0, result.stderr
        (first, fault, _), (second, _, _) = server.log[:2]
    assert fault == "429" and second - first >= 0.55


@pytest.mark.parametrize("tolerate", [False, True])
def test_rows_that_still_fail_are_recorded_and_left_out_of_the_scores(tmp_path, tolerate):
    """A row the provider failed after its retries is recorded with its error, scores nothing
    (an outage is not a quality drop), and fails the run (exit 3) unless --max-errors allows it."""
    with FaultServer(answer, script=["500"] * 3) as server:
        out = tmp_path / "out"
        budget = ["--max-errors", "1"] if tolerate else []
        result, report = eval_json(spec(tmp_path, server.url, retries=2), "-d", data(tmp_path, 4), "--out", out,
                                   "--concurrency", "1", *budget)
    rows = predictions(out)
    assert [r["status"] for r in rows] == ["error", "ok", "ok", "ok"]
    assert "InternalServerError" in rows[0]["error"] and "after 3 attempts" in rows[0]["error"]
    assert rows[0]["reward"] is None and rows[0]["rewards"] == {"em": None} and rows[0]["error_kind"] == "http_500"
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["errors"] == 1 and report["summary"]["reward"] == 1.0  # the 3 scored rows
    if tolerate:
        assert result.exit_code == 0, result.stderr
    else:
        assert result.exit_code == 3 and "1 rows failed at the provider" in result.stderr
        assert "--retry-errors" in result.stderr


@pytest.mark.parametrize("budget,stopped_after", [("3", 4), ("10%", 3)])
def test_error_budget_stops_cleanly_and_keeps_every_row(tmp_path, budget, stopped_after):
    with FaultServer(answer, rates={"500": 1.0}) as server:
        out = tmp_path / "out"
        result, _ = eval_json(spec(tmp_path, server.url, retries=0), "-d", data(tmp_path), "--out", out,
                              "--concurrency", "1", "--max-errors", budget)
    assert result.exit_code == 3
    assert "error budget exceeded" in result.stderr and "every row is in predictions.jsonl" in result.stderr
    rows = predictions(out)
    assert [r["index"] for r in rows] == list(range(ROWS))
    called = [r for r in rows if not r["error"].startswith("not run:")]
    assert len(called) == stopped_after  # the row that crossed the budget, and no call after it
    assert all(r["status"] == "error" for r in rows)
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["count"] == ROWS and any("stopped calling" in w for w in report["warnings"])


def test_bad_error_budget_is_a_usage_error(tmp_path):
    with FaultServer(answer) as server:
        result, _ = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path), "--max-errors", "lots")
    assert result.exit_code == 2 and "--max-errors" in result.stderr


def test_a_fatal_error_stops_at_once_keeps_every_row_and_hides_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTED_KEY", "sk-planted-wrong-key-4242")
    with FaultServer(answer, require_key="sk-the-right-key") as server:
        out = tmp_path / "out"
        text = spec(tmp_path, server.url).read_text().replace("  retries: 8\n", "  retries: 8\n  api_key_env: PLANTED_KEY\n")
        result, _ = eval_json(write(tmp_path / "spec.yaml", text), "-d", data(tmp_path), "--out", out,
                              "--concurrency", "1")
        calls = len(server.log)
    assert result.exit_code == 3 and "AuthenticationError" in result.stderr
    assert calls == 1  # not retried, and no further row tried
    assert "sk-planted-wrong-key-4242" not in result.stderr + result.stdout
    rows = predictions(out)
    assert len(rows) == ROWS and all("sk-planted" not in json.dumps(r) for r in rows)
    assert "***" in rows[0]["error"]  # the server echoed the key; it was scrubbed
    assert "sk-planted" not in (out / "report.json").read_text()


def test_backoff_grows_and_is_capped():
    from rewardctl.lm.client import LMClient
    from rewardctl.modelconfig import ModelConfig

    client = LMClient(ModelConfig(name="openai/x", backoff_base=0.5, backoff_max=4.0))
    waits = [[client._backoff(attempt, None) for _ in range(200)] for attempt in range(6)]
    assert all(0 <= w <= min(4.0, 0.5 * 2**a) for a, ws in enumerate(waits) for w in ws)
    assert max(waits[0]) <= 0.5 and max(waits[3]) > 2.0  # it grows...
    assert max(waits[5]) <= 4.0  # ...up to the cap
    assert client._backoff(0, 99.0) == 4.0 and client._backoff(0, 1.5) == 1.5  # Retry-After, capped
    assert len(set(waits[2])) > 100  # jittered


def test_faults_are_survived_through_worker_processes(tmp_path):
    """With --workers the calls run in worker processes; faults come back described, and are
    classified and retried exactly as in-process (Retry-After included)."""
    rates = {fault: 0.06 for fault in FAULTS}
    with FaultServer(answer, rates=rates, seed=3, slow_s=2.0, retry_after=0.3) as server:
        out = tmp_path / "out"
        result, report = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path, 40), "--out", out,
                                   "--concurrency", "8", "--workers", "2")
    assert result.exit_code == 0, result.stderr
    assert sum(server.injected.values()) >= 10
    assert [r["index"] for r in predictions(out)] == list(range(40)) and report["summary"]["errors"] == 0
    assert report["usage"]["retries"] >= sum(server.injected.values()) - 2
    assert report["usage"]["faults"].get("rate_limit", 0) == server.injected["429"]


def test_a_fatal_error_through_workers_hides_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTED_KEY", "sk-planted-wrong-key-4343")
    with FaultServer(answer, require_key="sk-the-right-key", echo_auth=True) as server:
        out = tmp_path / "out"
        text = spec(tmp_path, server.url).read_text().replace("  retries: 8\n", "  retries: 8\n  api_key_env: PLANTED_KEY\n")
        result, _ = eval_json(write(tmp_path / "spec.yaml", text), "-d", data(tmp_path), "--out", out,
                              "--concurrency", "1", "--workers", "2")
    assert result.exit_code == 3 and "AuthenticationError" in result.stderr
    assert "sk-planted" not in result.stderr and "sk-planted" not in (out / "predictions.jsonl").read_text()
    assert len(predictions(out)) == ROWS
