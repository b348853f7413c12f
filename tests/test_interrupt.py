"""Interruption with real signals, in a real subprocess, against a real HTTP server on 127.0.0.1:
SIGINT and SIGTERM flush what is done and say how to continue; --resume finishes without redoing
a row; kill -9 at random moments leaves every output file in its old or its new state."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from faultserver import FaultServer

from conftest import write

ROOT = Path(__file__).resolve().parents[1]
ROWS = 30


def answer(messages):
    question = json.loads(messages[-1]["content"])["question"]
    return json.dumps({"answer": re.sub(r"\D", "", question)})


def spec(tmp_path, url, extra=""):
    return write(tmp_path / "spec.yaml", f"""\
name: interrupted
model: {{name: openai/served, api_base: "{url}", timeout: 10, retries: 0}}
inputs: {{question: string}}
outputs: {{answer: string}}
rewards:
  - {{name: em, type: exact_match}}
""" + extra)


def data(tmp_path, rows=ROWS):
    return write(tmp_path / "data.jsonl", "".join(json.dumps({"question": f"q{i}", "answer": str(i)}) + "\n"
                                                  for i in range(rows)))


def start(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "rewardctl", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def wait_for_lines(path, n, proc, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} lines")


def questions_asked(server):
    return Counter(json.loads(content)["question"] for _, _, content in server.log)


@pytest.mark.parametrize("sig,workers", [(signal.SIGINT, 0), (signal.SIGTERM, 0), (signal.SIGTERM, 2)],
                         ids=["SIGINT", "SIGTERM", "SIGTERM-workers"])
def test_eval_interrupted_then_resumed_redoes_no_row(tmp_path, sig, workers):
    with FaultServer(answer, delay_s=0.05) as server:
        args = ["eval", spec(tmp_path, server.url), "-d", data(tmp_path), "--out", tmp_path / "run",
                "--no-cache", "--concurrency", "2", "-q", "--workers", workers]
        proc = start(*args)
        partial = tmp_path / "run" / "predictions.jsonl.partial"
        wait_for_lines(partial, 6, proc)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 3, stderr
        assert "interrupted after" in stderr and "--resume" in stderr and "Traceback" not in stderr
        assert len(stderr.strip().splitlines()) == 1, stderr  # one line, no warnings around it
        assert stdout == ""
        kept = partial.read_text().splitlines()
        assert len(kept) >= 6 and all(json.loads(line)["status"] == "ok" for line in kept)
        assert not (tmp_path / "run" / "predictions.jsonl").exists()

        resumed = subprocess.run([sys.executable, "-m", "rewardctl", *map(str, args), "--resume", "--json"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert resumed.returncode == 0, resumed.stderr
    asked = questions_asked(server)
    # Rows finished before the signal are never asked again; only rows in flight at the signal may be.
    assert set(asked) == {f"q{i}" for i in range(ROWS)}
    assert sum(asked.values()) - ROWS <= 2  # at most the two rows in flight (--concurrency 2)
    assert all(asked[json.loads(line)["inputs"]["question"]] == 1 for line in kept)
    report = json.loads(resumed.stdout)
    assert report["summary"]["count"] == ROWS and report["summary"]["reward"] == 1.0
    assert report["usage"]["resumed_rows"] == len(kept)
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(ROWS))


def _check_old_or_new(path: Path, old: bytes, complete) -> str:
    """'old' when the file holds its previous bytes, 'new' when it holds a complete new version."""
    if not path.exists():
        raise AssertionError(f"{path.name} vanished")
    now = path.read_bytes()
    if now == old:
        return "old"
    assert complete(now) is not False, f"{path.name} is torn"  # complete() raises or says False
    return "new"


def test_kill_9_at_random_moments_never_leaves_a_torn_file(tmp_path):
    def complete_predictions(raw: bytes):
        rows = [json.loads(line) for line in raw.decode().splitlines()]
        assert [r["index"] for r in rows] == list(range(ROWS))

    def complete_report(raw: bytes):
        assert json.loads(raw)["summary"]["count"] == ROWS

    rng = random.Random(0)
    with FaultServer(answer, delay_s=0.02) as server:
        out = tmp_path / "run"
        args = ["eval", spec(tmp_path, server.url), "-d", data(tmp_path), "--out", out, "--no-cache",
                "--concurrency", "2", "-q"]
        started = time.perf_counter()
        first = start(*args)
        assert first.wait(timeout=900) == 0, first.stderr.read()
        whole = time.perf_counter() - started
        files = {name: (out / name).read_bytes() for name in ("predictions.jsonl", "report.json", "report.md")}
        md_lines = files["report.md"].count(b"\n")
        states = Counter()
        # Kill moments spread over a whole run, start-up and the final writes included.
        # The first and last moments make sure both outcomes are seen on a loaded machine too.
        moments = [0.2, *sorted(rng.uniform(0.2, whole * 1.1) for _ in range(10)), whole * 3]
        for moment in moments:
            proc = start(*args)
            time.sleep(moment)
            proc.kill()
            proc.wait(timeout=30)
            states[_check_old_or_new(out / "predictions.jsonl", files["predictions.jsonl"], complete_predictions)] += 1
            _check_old_or_new(out / "report.json", files["report.json"], complete_report)
            _check_old_or_new(out / "report.md", files["report.md"],
                              lambda raw: raw.count(b"\n") == md_lines)
            files = {name: (out / name).read_bytes() for name in files}
            partial = out / "predictions.jsonl.partial"
            if partial.exists():  # the working file: whole lines, then at most one torn line
                lines = partial.read_bytes().split(b"\n")
                for line in lines[:-1]:
                    json.loads(line)
        assert states["old"] and states["new"]  # the kills landed both before and after the publish


def test_kill_9_then_resume_finishes_every_row(tmp_path):
    with FaultServer(answer, delay_s=0.05) as server:
        out = tmp_path / "run"
        args = ["eval", spec(tmp_path, server.url), "-d", data(tmp_path), "--out", out, "--no-cache",
                "--concurrency", "2", "-q"]
        proc = start(*args)
        wait_for_lines(out / "predictions.jsonl.partial", 8, proc)
        proc.kill()
        proc.wait(timeout=30)
        resumed = subprocess.run([sys.executable, "-m", "rewardctl", *map(str, args), "--resume", "--json"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["summary"]["count"] == ROWS and report["summary"]["errors"] == 0
    assert report["usage"]["resumed_rows"] >= 8
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(ROWS))


def test_optimize_sigterm_flushes_checkpoints_and_resumes(tmp_path):
    with FaultServer(answer, delay_s=0.02) as server:
        spec_path = spec(tmp_path, server.url, extra=(
            "optimizer: {type: random_few_shot, epochs: 4, batch_size: 10, patience: null, val_batch_size: 0}\n"))
        train = data(tmp_path, 40)
        args = ["optimize", spec_path, "--train", train, "--out", tmp_path / "opt", "-q"]
        proc = start(*args)
        first = tmp_path / "opt" / "checkpoints" / "epoch-001.json"
        deadline = time.time() + 120
        while time.time() < deadline and not first.exists() and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 3, stderr
        assert "interrupted during epoch" in stderr and "--resume" in stderr and "Traceback" not in stderr
        for checkpoint in (tmp_path / "opt" / "checkpoints").glob("*.json"):
            json.loads(checkpoint.read_text())  # whole files only
        resumed = subprocess.run([sys.executable, "-m", "rewardctl", *map(str, args), "--resume", "--json"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed_from_epoch"] >= 1 and len(report["history"]) == 4
