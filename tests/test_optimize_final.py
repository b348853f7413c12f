"""rewardctl optimize's final phase and its bookkeeping: the phase names in progress events, the
final KL to the reference (a bounded seeded sample of rows, off with --final-kl-rows 0, exactly 0
without sampling when the best is the reference), the wall time of a resumed run, and Ctrl-C in
the final phase (a real SIGINT, then --resume without a second search)."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import fakelm
import pytest
from faultserver import FaultServer
from typer.testing import CliRunner

import rewardctl.optimize as optimize_module
from rewardctl.checkpoint import fixed_fingerprint, write_checkpoint
from rewardctl.cli import app
from rewardctl.dataset import Row
from rewardctl.lm.tokens import Sample
from rewardctl.optimize import Candidate, OptimizeRun, Splits, optimize, resolve_config
from rewardctl.options import OptimizeOptions
from rewardctl.records.optimize import CandidateRecord, Checkpoint, KLEstimate, StateRecord
from rewardctl.report import render
from rewardctl.runner import kl_to_reference
from rewardctl.spec import load_spec
from rewardctl.state import Example, ProgramState

from conftest import write

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

SPEC = """\
name: quiz
model: {name: fakelm/demo-hungry, prompt_format: fields}
inputs: {q: string}
outputs: {answer: string}
rewards:
  - {name: em, type: exact_match}
optimizer: {type: random_few_shot, epochs: 2, batch_size: 6, patience: null}
"""


@pytest.fixture
def quiz(tmp_path):
    fakelm.register()
    rows = []
    for i in range(30):
        fakelm.ANSWERS[f"question {i}"] = f"answer {i}"
        rows.append({"q": f"question {i}", "answer": f"answer {i}"})
    write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:20]))
    write(tmp_path / "test.jsonl", "".join(json.dumps(r) + "\n" for r in rows[20:]))
    return write(tmp_path / "quiz.yaml", SPEC), tmp_path


def run_cli(spec, tmp_path, out, *extra):
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"),
                                 "--test", str(tmp_path / "test.jsonl"), "--out", str(out), "--json", "-q", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_progress_events_name_every_phase(quiz):
    spec_path, tmp_path = quiz
    events = []
    options = OptimizeOptions(train=str(tmp_path / "train.jsonl"), test=str(tmp_path / "test.jsonl"))
    asyncio.run(optimize(load_spec(spec_path), options, on_progress=events.append))
    phases = list(dict.fromkeys(e.phase for e in events))
    assert phases[0] == "baselines: validation split"
    assert "search: epoch 1/2, steps" in phases and "search: epoch 2/2, steps" in phases
    final = [p for p in phases if p.startswith("final: ")]
    # The best state first, then each simple baseline that is not the best, on each split.
    assert final[0] == "final: validation split, best" and "final: test split, best" in final
    assert {p.split(", ")[1] for p in final} <= {"best", "zero-shot", "3 labeled demos", "8 labeled demos"}
    assert len(final) == 2 * len({p.split(", ")[1] for p in final})
    # Each phase with a known size counts up to it: 0 first, then its units, the last one done.
    for phase in phases[1:]:
        counts = [(e.done, e.total) for e in events if e.phase == phase]
        assert counts[0][0] == 0 and counts[-1][0] == counts[-1][1], (phase, counts)
    final = [e for e in events if e.phase == "final: test split, best"]
    assert [e.done for e in final] == list(range(11)) and final[-1].total == 10


def test_optimize_help_gives_the_final_kl_default():
    result = runner.invoke(app, ["optimize", "--help"], env={"COLUMNS": "200"})
    assert "--final-kl-rows" in result.stdout
    assert f"[default: {OptimizeOptions.final_kl_rows}; x>=0]" in result.stdout


# --- the final KL: which rows, and when nothing is sampled --------------------------------------

LOCAL_SPEC = """\
name: capitals
model: {name: local/gemma-3-270m}
inputs: {country: string}
outputs: {capital: string}
rewards:
  - {name: em, type: exact_match}
"""


def local_run(tmp_path, final_kl_rows, events, val_rows=10):
    spec = load_spec(write(tmp_path / "local.yaml", LOCAL_SPEC))
    options = OptimizeOptions(train="unused.jsonl", final_kl_rows=final_kl_rows)
    val = [Row(i, i + 1, {"country": f"c{i}"}, {"capital": f"k{i}"}, {}) for i in range(val_rows)]
    client = SimpleNamespace(requests=0, prompt_tokens=0, completion_tokens=0, retried=0, faults={},
                             run_cost=lambda: 0.0)  # no model is called: the KL is faked
    run = OptimizeRun(spec, options, resolve_config(spec, options), Splits([], val, None),
                      runner=SimpleNamespace(client=client), on_progress=events.append, started=time.perf_counter())
    best = ProgramState(None, [Example(input={"country": "France"}, output={"capital": "Paris"})])
    run.loop.best = Candidate(best, best.key())
    return run


@pytest.fixture
def fake_kl(monkeypatch):
    """kl_to_reference without a model: records the rows it was given and counts them off."""
    seen = []

    async def fake(runner, state, reference, rows, seed, on_row=None):
        seen.append([r.inputs["country"] for r in rows])
        for i in range(len(rows)):
            on_row(i + 1)
        return {"rows": len(rows), "samples_per_row": 2, "samples": 2 * len(rows), "k1": 1.5,
                "k1_stderr": 0.25, "k3": 1.25, "k3_stderr": 0.125, "entropy": 0.5}

    monkeypatch.setattr(optimize_module, "kl_to_reference", fake)
    return seen


def test_final_kl_is_estimated_on_a_bounded_seeded_sample_of_rows(tmp_path, fake_kl):
    events = []
    estimate = asyncio.run(local_run(tmp_path, 4, events).final_kl())
    again = asyncio.run(local_run(tmp_path, 4, []).final_kl())
    assert estimate.rows == 4 and estimate.val_rows == 10 and estimate.samples == 8 and estimate.seconds >= 0
    assert fake_kl[0] == fake_kl[1] and len(set(fake_kl[0])) == 4  # seeded: the same rows each time
    assert fake_kl[0] == sorted(fake_kl[0], key=lambda c: int(c[1:]))  # in the file's order
    assert again.k1 == estimate.k1
    assert [(e.phase, e.done, e.total) for e in events] == [
        ("final: KL to the reference on 4 rows", i, 4) for i in range(5)]
    every = asyncio.run(local_run(tmp_path, 32, []).final_kl())  # fewer rows than the bound: all of them
    assert every.rows == 10 and fake_kl[-1] == [f"c{i}" for i in range(10)]


def test_final_kl_off_and_off_for_a_model_that_cannot_sample(tmp_path, fake_kl):
    assert asyncio.run(local_run(tmp_path, 0, []).final_kl()) is None
    run = local_run(tmp_path, 32, [])
    run.spec = load_spec(write(tmp_path / "quiz.yaml", SPEC))
    assert asyncio.run(run.final_kl()) is None
    assert fake_kl == []
    with pytest.raises(Exception, match="--final-kl-rows"):
        OptimizeOptions(train="t.jsonl", final_kl_rows=-1)


def test_final_kl_is_exactly_zero_without_sampling_when_the_best_is_the_reference():
    state = ProgramState("Answer.", [Example(input={"country": "France"}, output={"capital": "Paris"})])
    same = ProgramState.from_json(state.to_json())
    rows = [Row(0, 1, {"country": "Peru"}, {"capital": "Lima"}, {})]
    # runner=None: any sampling would fail.
    estimate = asyncio.run(kl_to_reference(None, state, same, rows, seed=0))
    assert estimate == {"rows": 0, "samples_per_row": 2, "samples": 0, "k1": 0.0, "k1_stderr": 0.0, "k3": 0.0,
                        "k3_stderr": 0.0, "entropy": None, "identical": True}


def test_kl_to_reference_reports_its_rows_and_spread():
    class FakeRunner:
        async def sample(self, state, reference, rows, *, n, max_tokens, seed, on_row=None):
            out = []
            for i, _ in enumerate(rows):
                for k in range(n):
                    out.append(Sample([1, 2], [-0.5, -0.5], [1.0, 1.0], "x", "eog",
                                      ref_logprobs=[-1.0, -1.0 - k]))  # k1 per sample: 1.0, 2.0
                on_row(i + 1)
            return out

    rows = [Row(i, i + 1, {"country": f"c{i}"}, None, {}) for i in range(3)]
    done = []
    estimate = asyncio.run(kl_to_reference(FakeRunner(), ProgramState("a", []), ProgramState("b", []), rows,
                                           seed=0, on_row=done.append))
    assert done == [1, 2, 3]
    assert estimate["rows"] == 3 and estimate["samples"] == 6 and estimate["samples_per_row"] == 2
    assert estimate["k1"] == pytest.approx(1.5) and estimate["k1_stderr"] == pytest.approx(0.5477 / 6**0.5, rel=1e-3)
    assert estimate["entropy"] == pytest.approx(1.0) and "identical" not in estimate


def test_markdown_says_what_the_final_kl_computed(tmp_path, fake_kl):
    run = local_run(tmp_path, 4, [])
    report = run.report(None, optimize_module.compare([], [], 0), None, asyncio.run(run.final_kl()))
    text = render(report, "markdown")
    assert "KL(best || reference) from 8 sampled outputs on 4 of 10 validation rows, " in text
    assert "k1 1.50 ± 0.25, k3 1.25 ± 0.12 nats" in text
    run.loop.best = Candidate(run.reference, run.reference.key())
    report.kl_to_reference = KLEstimate(
        **asyncio.run(kl_to_reference(None, run.reference, run.reference, [], seed=0)))
    assert "KL(best || reference) is 0: the best state is the reference (nothing sampled)." in render(report, "markdown")


# --- wall time over --resume ---------------------------------------------------------------------


def test_resumed_report_covers_the_whole_run(quiz):
    spec, tmp_path = quiz
    out = tmp_path / "run"
    first = run_cli(spec, tmp_path, out, "--epochs", "1")
    checkpoint = json.loads((out / "checkpoints" / "epoch-001.json").read_text())
    assert 0 < checkpoint["elapsed_s"] <= first["wall_time_s"]
    assert checkpoint["usage"]["requests"] > 0 and first["resumed_wall_time_s"] is None
    resumed = run_cli(spec, tmp_path, out, "--resume")
    assert resumed["resumed_from_epoch"] == 1 and len(resumed["history"]) == 2
    assert resumed["resumed_wall_time_s"] == checkpoint["elapsed_s"]
    assert resumed["wall_time_s"] > checkpoint["elapsed_s"]
    assert resumed["usage"]["requests"] > checkpoint["usage"]["requests"]
    assert f"({checkpoint['elapsed_s']:.1f} s of it before --resume, which continued from epoch 1)" in (
        out / "report.md").read_text()


def test_resume_adds_the_time_an_interrupted_run_recorded(quiz):
    spec, tmp_path = quiz
    out = tmp_path / "run"
    run_cli(spec, tmp_path, out, "--epochs", "1")
    partial = out / "run.partial.json"
    # What an interruption after the checkpoint leaves: more time than the checkpoint holds.
    partial.write_text(json.dumps({"elapsed_s": 500.0, "usage": {"requests": 1000}, "where": "final: test split, best"}))
    resumed = run_cli(spec, tmp_path, out, "--resume")
    assert resumed["resumed_wall_time_s"] == 500.0 and resumed["wall_time_s"] > 500.0
    assert resumed["usage"]["requests"] >= 1000
    assert not partial.exists()  # report.json covers the whole run now
    # A record older than the last checkpoint (a later run was killed -9) gives way to it.
    partial.write_text(json.dumps({"elapsed_s": 0.01}))
    again = run_cli(spec, tmp_path, out, "--resume")
    checkpoint = json.loads((out / "checkpoints" / "epoch-002.json").read_text())
    assert again["resumed_wall_time_s"] == checkpoint["elapsed_s"] > 500.0


def test_a_new_run_in_the_folder_ignores_an_old_interrupted_runs_time(quiz):
    spec, tmp_path = quiz
    out = tmp_path / "run"
    write(out / "run.partial.json", json.dumps({"elapsed_s": 500.0}))
    report = run_cli(spec, tmp_path, out, "--epochs", "1")
    assert report["wall_time_s"] < 500 and report["resumed_wall_time_s"] is None
    assert not (out / "run.partial.json").exists()


# --- Ctrl-C in the final phase -------------------------------------------------------------------


def slow_test_rows(messages):
    """Training questions are answered at once, test questions (t...) slowly: the final phase
    (which alone asks the test split) is long enough to interrupt."""
    question = json.loads(messages[-1]["content"])["question"]
    if question.startswith("t"):
        time.sleep(0.4)
    return json.dumps({"answer": question[1:]})


def served_spec(tmp_path, url):
    return write(tmp_path / "spec.yaml", f"""\
name: interrupted
model: {{name: openai/served, api_base: "{url}", timeout: 10, retries: 0}}
inputs: {{question: string}}
outputs: {{answer: string}}
rewards:
  - {{name: em, type: exact_match}}
optimizer: {{type: random_few_shot, epochs: 2, batch_size: 10, patience: null, val_batch_size: 0}}
""")


def questions(path, prefix, n):
    return write(path, "".join(json.dumps({"question": f"{prefix}{i}", "answer": str(i)}) + "\n" for i in range(n)))


def test_sigint_in_the_final_phase_says_resume_and_resume_skips_the_search(tmp_path):
    with FaultServer(slow_test_rows) as server:
        args = [sys.executable, "-m", "rewardctl", "optimize", served_spec(tmp_path, server.url),
                "--train", questions(tmp_path / "train.jsonl", "q", 30), "--test",
                questions(tmp_path / "test.jsonl", "t", 12), "--out", tmp_path / "opt", "--concurrency", "2", "-q"]
        args = [str(a) for a in args]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ})
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not any(
                json.loads(content)["question"].startswith("t") for _, _, content in list(server.log)):
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 3, stderr
        assert re.fullmatch(r"rewardctl: error: interrupted in the final phase \(test split, (baseline|best)\), "
                            r"after the search; 2 epochs are checkpointed in (.+), continue with --resume\n", stderr)
        so_far = json.loads((tmp_path / "opt" / "run.partial.json").read_text())
        assert so_far["where"].startswith("final: test split, ") and so_far["elapsed_s"] > 0
        search_requests = sum(1 for _, _, c in server.log if json.loads(c)["question"].startswith("q"))

        resumed = subprocess.run([*args, "--resume", "--json"], cwd=ROOT, capture_output=True, text=True,
                                 timeout=900)
        assert resumed.returncode == 0, resumed.stderr
        # Not one training or validation question asked again: the search is not redone.
        assert sum(1 for _, _, c in server.log if json.loads(c)["question"].startswith("q")) == search_requests
    report = json.loads(resumed.stdout)
    assert report["resumed_from_epoch"] == 2 and len(report["history"]) == 2 and report["test"]["rows"] == 12
    assert report["resumed_wall_time_s"] == so_far["elapsed_s"] < report["wall_time_s"]
    assert not (tmp_path / "opt" / "run.partial.json").exists()


@pytest.mark.e2e
def test_sigint_in_the_final_kl_on_the_embedded_model_then_resume(tmp_path):
    """The real model: Ctrl-C while the final KL samples, then --resume finishes with no model call
    of the search asked again, and the report's wall time covers both processes."""
    spec_path = write(tmp_path / "capitals.yaml", (ROOT / "recipes/capitals.yaml").read_text() + (
        "optimizer: {type: random_few_shot, epochs: 1, batch_size: 6, patience: null}\n"))
    spec = load_spec(spec_path)
    # The reference: no demos and other instructions, so that no candidate (the zero-shot baseline
    # included) is the reference and the final KL has to sample.
    zero_shot = StateRecord(instructions="Answer in one word.", examples=[])
    write_checkpoint(tmp_path / "reference.json", Checkpoint(
        spec=spec.name, spec_fingerprint=fixed_fingerprint(spec), data_fingerprint="-", epoch=0, state=zero_shot,
        optimizer={}, rng_state=[], population=[], best=CandidateRecord(state=zero_shot), best_epoch=0, history=[],
        no_improve=0, seen=[], baseline_val=0.0))
    rows = (ROOT / "datasets/capitals/train.jsonl").read_text().splitlines()
    write(tmp_path / "train.jsonl", "\n".join(rows[:8]) + "\n")
    write(tmp_path / "val.jsonl", "\n".join(rows[8:20]) + "\n")
    out = tmp_path / "opt"
    args = [sys.executable, "-m", "rewardctl", "optimize", str(spec_path), "--train", str(tmp_path / "train.jsonl"),
            "--val", str(tmp_path / "val.jsonl"), "--reference", str(tmp_path / "reference.json"),
            "--final-kl-rows", "12", "--out", str(out), "-q"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoints" / "epoch-001.json").exists():
        time.sleep(0.1)
    time.sleep(1.0)  # the validation comparison is cached: the KL samples now (12 rows: seconds)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 3, stderr
    assert stderr == (f"rewardctl: error: interrupted in the final phase (KL to the reference on 12 rows), after "
                      f"the search; 1 epoch is checkpointed in {out}, continue with --resume\n")
    so_far = json.loads((out / "run.partial.json").read_text())

    resumed = subprocess.run([*args, "--resume", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed_from_epoch"] == 1 and len(report["history"]) == 1
    assert report["usage"]["requests"] == so_far["usage"]["requests"]  # nothing of the search asked again
    assert report["resumed_wall_time_s"] == so_far["elapsed_s"] < report["wall_time_s"]
    kl = report["kl_to_reference"]
    assert kl["rows"] == 12 and kl["val_rows"] == 12 and kl["samples"] == 24 and not kl["identical"]
    assert kl["k1_stderr"] > 0 and kl["seconds"] > 0
