"""What real servers do, against the fault server on 127.0.0.1: outages read as outages (exit 3,
the URL named), failed rows are asked again by --resume and --retry-errors with usage counted
across runs, odd replies are retried or recorded, parse retries reach the provider, and the
`fields` format on a served model goes to the completions endpoint."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultserver import FaultServer
from test_faults import answer, data, eval_json, predictions, spec

from rewardctl.lm.client import _retry_after, fault_kind
from rewardctl.modelconfig import ModelConfig

from conftest import write

ROOT = Path(__file__).resolve().parent.parent


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there now


def test_an_outage_stops_the_run_with_exit_3_naming_the_url(tmp_path):
    url = closed_port_url()
    out = tmp_path / "out"
    started = time.monotonic()
    result, _ = eval_json(spec(tmp_path, url, retries=4), "-d", data(tmp_path, 40), "--out", out,
                          "--concurrency", "4")
    elapsed = time.monotonic() - started
    assert result.exit_code == 3
    message = result.stderr.strip().splitlines()[-1]
    assert f"cannot connect to {url}" in message and "rows in a row could not reach the server" in message
    assert "object at 0x" not in result.stderr and "InternalServerError" not in message
    rows = predictions(out)
    assert len(rows) == 40  # every row recorded...
    kinds = [r["error_kind"] for r in rows]
    assert kinds.count("connection") <= 8 and kinds.count("not_run") >= 32  # ...most never tried
    report = json.loads((out / "report.json").read_text())
    assert set(report["usage"]["faults"]) == {"connection"}
    assert report["usage"]["failed_requests"] == report["usage"]["requests"] <= 20  # gives up after 10 in a row
    assert elapsed < 120  # generous for a loaded machine; about 2 s idle


def test_fault_kinds_for_connection_failures():
    class APIConnectionError(Exception):
        pass

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise APIConnectionError("Connection error.") from inner
    except APIConnectionError as exc:
        assert fault_kind(exc) == "connection"

    class InternalServerError(Exception):
        status_code = 500

    assert fault_kind(InternalServerError("OpenAIException - Connection error.")) == "connection"
    assert fault_kind(InternalServerError("boom")) == "http_500"


def test_odd_retry_after_is_ignored():
    class RateLimitError(Exception):
        status_code = 429

        def __init__(self, value):
            super().__init__("slow down")
            self.litellm_response_headers = {"retry-after": value}

    assert _retry_after(RateLimitError("soon")) is None
    assert _retry_after(RateLimitError("1.5")) == 1.5
    assert _retry_after(RateLimitError("Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0


@pytest.mark.parametrize("fault,kind", [("429_odd", "rate_limit"), ("empty_choices", "empty_reply"),
                                        ("null_content", "empty_reply"), ("bad_utf8", "bad_reply")])
def test_odd_replies_are_retried(tmp_path, fault, kind):
    with FaultServer(answer, script=[fault, fault]) as server:
        out = tmp_path / "out"
        result, report = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path, 3), "--out", out,
                                   "--concurrency", "1")
    assert result.exit_code == 0, result.stderr
    assert all(r["status"] == "ok" for r in predictions(out))
    usage = report["usage"]
    assert usage["faults"][kind] == 2  # (a loaded machine may add a timeout or two)
    assert usage["retries"] == usage["failed_requests"] == sum(usage["faults"].values())


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_trickling_body_hits_the_whole_request_deadline(tmp_path, workers):
    """model.timeout bounds the whole request, in-process and in an LM worker process."""
    with FaultServer(answer, script=["trickle"], slow_s=6.0) as server:
        out = tmp_path / "out"
        result, report = eval_json(spec(tmp_path, server.url, timeout=1.0), "-d", data(tmp_path, 1),
                                   "--out", out, "--workers", workers)
    assert result.exit_code == 0, result.stderr
    assert report["usage"]["faults"] == {"timeout": 1}  # without the deadline it would answer, late


def answer_first_question(messages):
    """answer(), also for a retry (whose last message is the problem, not the question)."""
    return answer([m for m in messages if m.get("content", "").startswith("{")][-1:])


def test_a_huge_reply_is_recorded_not_crashed(tmp_path):
    """A server that ignores max_tokens: the row fails as unparseable after its retries, with the
    reply clipped in its line and in what is shown back to the model."""
    with FaultServer(answer_first_question, script=["huge"] * 3) as server:
        out = tmp_path / "out"
        result, _ = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path, 2), "--out", out,
                              "--concurrency", "1")
        sent = max(len(json.dumps(b)) for b in server.bodies)
    assert result.exit_code == 0, result.stderr
    rows = predictions(out)
    assert rows[0]["status"] == "error" and rows[0]["error_kind"] == "unparseable"
    assert len(rows[0]["raw"]) < 5000 and rows[0]["raw"].endswith("more characters]")
    assert rows[1]["status"] == "ok" and sent < 10_000


def test_parse_retries_reach_the_provider_and_count_as_calls(tmp_path):
    """A retry after an unparseable reply is a new request even when it is the same prompt (a
    completion prompt carries no problem) and the cache holds the failed reply; a rerun replays
    both from the cache."""
    replies = iter(["", " 0\n"])  # an empty reply does not parse

    text = spec(tmp_path, "URL").read_text().replace("  retries: 8\n", "  retries: 8\n  prompt_format: fields\n")
    cache = tmp_path / "cache"
    with FaultServer(lambda messages: next(replies)) as server:
        spec_file = write(tmp_path / "spec.yaml", text.replace("URL", server.url))
        result = runner_eval(spec_file, "-d", data(tmp_path, 1), "--cache-dir", cache, "--out", tmp_path / "a")
        served = len(server.log)
        rerun = runner_eval(spec_file, "-d", data(tmp_path, 1), "--cache-dir", cache, "--out", tmp_path / "b")
        served_again = len(server.log)
    assert result.exit_code == 0 and rerun.exit_code == 0, result.stderr + rerun.stderr
    assert served == 2 and served_again == 2
    first, second = predictions(tmp_path / "a")[0], predictions(tmp_path / "b")[0]
    assert first["status"] == second["status"] == "ok" and first["y_pred"] == {"answer": "0"}
    assert first["calls"] == 2 and second["calls"] == 0 and second["cached"]


def runner_eval(*args):
    from typer.testing import CliRunner

    from rewardctl.cli import app

    return CliRunner().invoke(app, ["eval", *map(str, args)])


def test_resume_and_retry_errors_ask_failed_rows_again_and_count_usage_across_runs(tmp_path):
    """--resume asks a finished run's transient failures again (500s) but not a row the provider
    refused (400); --retry-errors asks every failed row; usage adds up across the three runs."""
    out = tmp_path / "out"
    run = [spec(tmp_path, "URL", retries=0), "-d", data(tmp_path, 6), "--out", out, "--concurrency", "1"]
    with FaultServer(answer, script=["500", "400", None, "500"]) as server:
        run[0] = spec(tmp_path, server.url, retries=0)
        first, _ = eval_json(*run)
    assert first.exit_code == 3 and "3 rows failed at the provider" in first.stderr  # not scored
    report = json.loads((out / "report.json").read_text())
    assert [r.get("error_kind") for r in predictions(out)] == ["http_500", "provider", None, "http_500", None, None]
    assert report["usage"]["requests"] == 6 and report["usage"]["failed_requests"] == 3
    with FaultServer(answer) as server:
        run[0] = spec(tmp_path, server.url, retries=0)
        resumed, _ = eval_json(*run, "--resume")
        report = json.loads((out / "report.json").read_text())
        asked_by_resume = len(server.log)
        after_resume = [r["status"] for r in predictions(out)]
        finished, _ = eval_json(*run, "--resume")
        retried, report_after = eval_json(*run, "--retry-errors")
        asked_by_retry = len(server.log) - asked_by_resume
    assert resumed.exit_code == 3 and "1 rows failed at the provider" in resumed.stderr  # the 400 stays
    assert asked_by_resume == 2 and report["usage"]["resumed_rows"] == 4
    assert after_resume == ["ok", "error", "ok", "ok", "ok", "ok"]
    assert finished.exit_code == 2 and "--retry-errors" in finished.stderr  # nothing left for --resume
    assert retried.exit_code == 0, retried.stderr
    assert asked_by_retry == 1  # only the refused row
    rows = predictions(out)
    assert [r["index"] for r in rows] == list(range(6)) and all(r["status"] == "ok" for r in rows)
    usage = report_after["usage"]
    assert usage["requests"] == 9 and usage["failed_requests"] == 3 and usage["faults"] == {"http_500": 2}
    assert not (out / "predictions.jsonl.partial").exists() and not (out / "usage.partial.json").exists()


def test_resume_redoes_transient_failures_of_an_interrupted_run(tmp_path):
    """An interrupted run's rows that failed on a connection error are asked again by --resume;
    the good ones are kept; a row the provider refused (400) is not asked again."""
    out = tmp_path / "out"
    out.mkdir()
    lines = []
    for i in range(4):
        ok = i % 2 == 1
        record = {"index": i, "line": i + 1, "inputs": {"question": f"q{i}"}, "y_true": {"answer": str(i)},
                  "y_pred": {"answer": str(i)} if ok else None, "status": "ok" if ok else "error",
                  "error": None if ok else "boom", "error_kind": None if ok else ["connection", "provider"][i // 2]}
        lines.append(json.dumps(record) + "\n")
    (out / "predictions.jsonl.partial").write_text("".join(lines))
    (out / "usage.partial.json").write_text(json.dumps({"requests": 7, "failed_requests": 5, "faults": {"connection": 5}}))
    with FaultServer(answer) as server:
        result, _ = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path, 6), "--out", out, "--resume",
                              "--max-errors", "1")  # the refused row is tolerated
        asked = sorted(json.loads(p)[-1]["content"] for p in server.prompts)
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert len(asked) == 3 and all('"q0"' in a or '"q4"' in a or '"q5"' in a for a in asked)
    rows = predictions(out)
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert report["usage"]["requests"] == 10 and report["usage"]["faults"] == {"connection": 5}


def test_reports_missing_after_a_crash_are_written_by_resume(tmp_path):
    out = tmp_path / "out"
    with FaultServer(answer) as server:
        first, _ = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path, 3), "--out", out)
        assert first.exit_code == 0, first.stderr
        for name in ("report.json", "report.md"):
            (out / name).unlink()  # as if killed between the predictions and the reports
        again, report = eval_json(spec(tmp_path, server.url), "-d", data(tmp_path, 3), "--out", out, "--resume")
        asked = len(server.log)
    assert again.exit_code == 0, again.stderr
    assert asked == 3 and report["summary"]["count"] == 3 and (out / "report.json").exists()


def test_missing_api_key_fails_at_once_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    text = spec(tmp_path, "http://unused").read_text().replace("  api_base: http://unused\n", "")
    text = text.replace("openai/served", "openai/gpt-4o-mini")
    result, _ = eval_json(write(tmp_path / "spec.yaml", text), "-d", data(tmp_path, 3))
    assert result.exit_code == 2
    assert "set OPENAI_API_KEY" in result.stderr and "model.api_key_env" in result.stderr


def test_fields_on_a_served_openai_model_use_the_completions_endpoint(tmp_path):
    def complete(messages):
        assert messages[-1]["content"].rstrip().endswith("answer:")  # the raw prompt, no chat template
        return " 7\n"

    text = spec(tmp_path, "URL").read_text().replace("  retries: 8\n", "  retries: 8\n  prompt_format: fields\n")
    with FaultServer(complete) as server:
        result, report = eval_json(write(tmp_path / "spec.yaml", text.replace("URL", server.url)), "-d",
                                   data(tmp_path, 2))
        bodies = server.bodies
    assert result.exit_code == 0, result.stderr
    assert all("prompt" in b and "messages" in b for b in bodies)  # /completions (messages added by the server)
    assert "Unclosed client session" not in result.stderr
    assert report["summary"]["count"] == 2 and report["summary"]["errors"] == 0


def test_fields_on_a_chat_only_route_warn_with_the_fix(tmp_path):
    config = ModelConfig(name="anthropic/claude-3-5-haiku-20241022", prompt_format="fields")
    assert "prompt_format json" in config.route_warning()
    assert ModelConfig(name="openai/m", api_base="http://h/v1", prompt_format="fields").route_warning() is None
    assert ModelConfig(name="openai/m", api_base="http://h/v1", prompt_format="fields").call_name() == \
        "text-completion-openai/m"
    assert ModelConfig(name="openai/m", api_base="http://h/v1").call_name() == "openai/m"
    text = spec(tmp_path, "URL").read_text().replace("  retries: 8\n", "  retries: 8\n  prompt_format: fields\n")
    text = text.replace("openai/served", "ollama_chat/served")
    with FaultServer(lambda messages: "answer: 1") as server:
        result, _ = eval_json(write(tmp_path / "spec.yaml", text.replace("URL", server.url)), "-d", data(tmp_path, 1))
    assert "rewardctl: warning: prompt_format fields sends ollama_chat/served" in result.stderr


def test_model_extra_reaches_the_server(tmp_path):
    text = spec(tmp_path, "URL").read_text().replace("  retries: 8\n", "  retries: 8\n  extra: {min_p: 0.05, top_k: 7}\n")
    with FaultServer(answer) as server:
        result, _ = eval_json(write(tmp_path / "spec.yaml", text.replace("URL", server.url)), "-d", data(tmp_path, 1))
        body = server.bodies[0]
    assert result.exit_code == 0, result.stderr
    assert body.get("min_p") == 0.05 and body.get("top_k") == 7


def test_a_dead_worker_process_stops_the_run_with_the_resume_hint(tmp_path):
    out = tmp_path / "out"
    with FaultServer(answer, delay_s=0.3) as server:
        command = [sys.executable, "-m", "rewardctl", "eval", str(spec(tmp_path, server.url)), "-d",
                   str(data(tmp_path, 60)), "--out", str(out), "--workers", "1", "--concurrency", "2", "--no-cache"]
        proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        worker = None
        deadline = time.monotonic() + 300
        while worker is None and time.monotonic() < deadline:
            worker = _child_worker(proc.pid) if len(server.log) >= 3 else None
            time.sleep(0.2)
        assert worker is not None, "no LM worker process appeared"
        os.kill(worker, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 3
    assert "an LM worker process exited" in stderr and "--resume" in stderr


def _child_worker(parent: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if ppid == parent and "rewardctl.lm.workers" in cmdline:
            return int(entry.name)
    return None


def test_optimize_against_a_dead_server_stops_with_exit_3(tmp_path):
    """An outage during optimize is not a validation score of 0.000 (it used to finish, exit 0)."""
    from test_faults import runner

    from rewardctl.cli import app

    url = closed_port_url()
    result = runner.invoke(app, ["optimize", str(spec(tmp_path, url, retries=1)), "--train", str(data(tmp_path, 8)),
                                 "--out", str(tmp_path / "opt"), "-q"])
    assert result.exit_code == 3, result.stderr
    assert f"cannot connect to {url}" in result.stderr and "could not be reached" in result.stderr


def test_score_leaves_provider_failures_out(tmp_path):
    from test_faults import runner

    from rewardctl.cli import app

    lines = [{"inputs": {"question": "q1"}, "y_true": {"answer": "1"}, "y_pred": {"answer": "1"}},
             {"inputs": {"question": "q2"}, "y_true": {"answer": "2"}, "y_pred": None, "status": "error",
              "error": "cannot connect", "error_kind": "connection"},
             {"inputs": {"question": "q3"}, "y_true": {"answer": "3"}, "y_pred": None, "status": "error",
              "error": "unparseable reply: x", "error_kind": "unparseable"}]
    predictions_file = write(tmp_path / "p.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(app, ["score", str(spec(tmp_path, "http://unused")), "-p", str(predictions_file),
                                 "--out", str(tmp_path / "s"), "--json", "-q"])
    assert result.exit_code in (0, 1), result.stderr
    rows = predictions(tmp_path / "s")
    assert [r["reward"] for r in rows] == [1.0, None, 0.0]  # the model's failure scores 0; the outage nothing
    assert json.loads(result.stdout)["summary"]["reward"] == 0.5
