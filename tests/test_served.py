"""rewardctl against a real served model: llama-cpp-python's OpenAI-compatible server on
127.0.0.1, running a real chat model (SmolLM2-135M-Instruct) and the embedded base model
(Gemma 3 270M), as users run vLLM, TGI or llama.cpp servers. Small budgets: a few rows each."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rewardctl.cli import app

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def served_spec(tmp_path: Path, recipe: str, model: dict, **changes) -> Path:
    """A shipped recipe pointed at a served model."""
    data = yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text())
    data["model"] = {**data.get("model", {}), **model}
    data.update(changes)
    path = tmp_path / f"{recipe}.served.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def head(path: Path, rows: int, tmp_path: Path) -> Path:
    out = tmp_path / f"head-{rows}-{path.name}"
    out.write_text("".join(path.read_text().splitlines(keepends=True)[:rows]))
    return out


def chat_model(server) -> dict:
    return {"name": "openai/smollm2", "api_base": server.base, "max_tokens": 32}


def test_eval_on_the_served_chat_model(chat_server, tmp_path):
    spec = served_spec(tmp_path, "sentiment", chat_model(chat_server))
    data = head(ROOT / "datasets/sentiment/test.jsonl", 8, tmp_path)
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["count"] == 8 and report["usage"]["requests"] >= 8
    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 8
    assert sum(json.loads(line)["status"] == "ok" for line in lines) >= 6, lines


def test_served_base_model_answers_like_the_embedded_one(base_server, tmp_path):
    """The same GGUF served, named as users name it (openai/ with api_base, no key) with the
    fields format, goes through /v1/completions and gives the in-process run's answers; stderr
    stays clean (no aiohttp "Unclosed client session")."""
    data = head(ROOT / "datasets/capitals/test.jsonl", 6, tmp_path)
    served = served_spec(tmp_path, "capitals", {"name": "openai/gemma", "prompt_format": "fields",
                                                "api_base": base_server.base})
    local = ROOT / "recipes" / "capitals.yaml"
    answers = {}
    for name, spec in (("served", served), ("local", local)):
        out = tmp_path / name
        result = subprocess.run([sys.executable, "-m", "rewardctl", "eval", str(spec), "-d", str(data), "--out",
                                 str(out), "-q", "--no-cache"], capture_output=True, text=True, timeout=900)
        assert result.returncode in (0, 1), result.stderr
        assert "Unclosed" not in result.stderr and "warning" not in result.stderr, result.stderr
        answers[name] = [json.loads(line)["y_pred"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert answers["served"] == answers["local"]


def test_an_outage_then_resume_and_retry_against_the_server(chat_server, tmp_path):
    """The server is down (nothing at its URL): the run stops on the outage, exit 3, naming the
    URL. It comes back: --resume asks the failed rows and finishes; usage counts both runs."""
    from llamaserver import Forwarder, free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    spec = served_spec(tmp_path, "sentiment", {**chat_model(chat_server), "api_base": url})
    data = head(ROOT / "datasets/sentiment/test.jsonl", 12, tmp_path)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rewardctl", "eval", str(spec), "-d", str(data), "--out", str(out), "-q"]
    down = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert down.returncode == 3 and f"cannot connect to {url}" in down.stderr, down.stderr
    first = json.loads((out / "report.json").read_text())["usage"]
    assert first["faults"].get("connection", 0) >= 3 and first["requests"] == first["failed_requests"]
    forwarder = Forwarder(port, chat_server.port)
    try:
        back = subprocess.run(command + ["--resume", "--json"], capture_output=True, text=True, timeout=900)
        assert back.returncode in (0, 1), back.stderr
        report = json.loads(back.stdout)
        rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 12 and not any(r.get("error_kind") in ("connection", "not_run") for r in rows)
        usage = report["usage"]
        assert usage["failed_requests"] >= first["failed_requests"]
        assert usage["requests"] >= first["requests"] + 12 - report["summary"]["errors"]
        failed = report["summary"]["errors"]
        again = subprocess.run(command + ["--retry-errors", "--json"], capture_output=True, text=True, timeout=900)
        assert again.returncode in (0, 1), again.stderr
        assert json.loads(again.stdout)["usage"]["resumed_rows"] == 12 - failed
    finally:
        forwarder.close()


def test_optimize_on_the_served_chat_model(chat_server, tmp_path):
    spec = served_spec(tmp_path, "sentiment", chat_model(chat_server),
                       optimizer={"type": "random_few_shot", "epochs": 1, "batch_size": 4, "val_batch_size": 4})
    train = head(ROOT / "datasets/sentiment/train.jsonl", 8, tmp_path)
    test = head(ROOT / "datasets/sentiment/test.jsonl", 6, tmp_path)
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(train), "--test", str(test),
                                 "--zero-shot", "--out", str(tmp_path / "opt"), "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["test"]["rows"] == 6 and report["usage"]["requests"] > 0
    assert (tmp_path / "opt" / "best.json").is_file()


def test_lm_judge_grades_on_the_served_chat_model(chat_server, tmp_path):
    spec = tmp_path / "judged.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "judged", "inputs": {"question": "string"}, "outputs": {"answer": "string"},
        "rewards": [{"type": "lm_judge", "name": "judge", "rubric": "Is the answer correct?",
                     "scale": [1, 5], "model": chat_model(chat_server)}],
    }))
    predictions = tmp_path / "p.jsonl"
    rows = [("What is the capital of France?", "Paris", "Paris"), ("What is 2+2?", "4", "4"),
            ("What colour is the sky?", "blue", "green")]
    predictions.write_text("".join(json.dumps({"inputs": {"question": q}, "y_true": {"answer": t},
                                               "y_pred": {"answer": p}}) + "\n" for q, t, p in rows))
    result = runner.invoke(app, ["score", str(spec), "-p", str(predictions), "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)["stats"]["rewards"]["judge"]
    assert stats["count"] + stats["ungraded"] == 3 and stats["count"] > 0  # the judge graded rows


def test_sigterm_then_resume_against_the_server(chat_server, tmp_path):
    spec = served_spec(tmp_path, "sentiment", chat_model(chat_server))
    data = head(ROOT / "datasets/sentiment/test.jsonl", 24, tmp_path)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rewardctl", "eval", str(spec), "-d", str(data), "--out", str(out),
               "--no-cache", "--concurrency", "1", "-q"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out / "predictions.jsonl.partial"
    deadline = time.time() + 900  # generous: a loaded machine answers slowly
    while time.time() < deadline and proc.poll() is None and \
            not (partial.exists() and partial.read_text().count("\n") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 3 and "--resume" in stderr, stderr
    kept = partial.read_text().count("\n")
    result = subprocess.run(command + ["--resume", "--json"], capture_output=True, text=True, timeout=900)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    # rows kept from the first run, less any that failed on a transient error (asked again)
    assert report["summary"]["count"] == 24 and report["usage"]["resumed_rows"] <= kept
    assert report["usage"]["requests"] >= 24 - kept
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 24
