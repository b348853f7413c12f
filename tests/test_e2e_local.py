"""End-to-end: the real embedded model (Gemma 3 270M on llama.cpp), offline, on a few rows.

These run the installed console script in a subprocess, so they also prove that stdout holds
nothing but the JSON report even though llama.cpp and litellm run in the same process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def rewardctl(*args, env=None, timeout=3600):  # generous: a loaded CI machine is slow, never flaky
    cmd = [sys.executable, "-m", "rewardctl", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_quickstart_eval_then_cached_rerun(tmp_path):
    args = ["eval", "recipes/capitals.yaml", "--data", "datasets/capitals/test.jsonl", "--limit", "8",
            "--json", "--out", str(tmp_path / "run")]
    first = rewardctl(*args)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)  # the whole of stdout is the report
    assert report["summary"]["count"] == 8 and report["summary"]["errors"] == 0
    assert report["summary"]["reward"] >= 0.5  # 3 demos: ~0.87 on the full test set
    assert report["usage"]["requests"] == 8
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 8 and all(p["tokens"]["completion"] > 0 for p in preds)

    second = rewardctl(*args)
    assert second.returncode == 0, second.stderr
    cached = json.loads(second.stdout)
    assert cached["usage"]["requests"] == 0 and cached["usage"]["cached_rows"] == 8
    assert cached["summary"] == report["summary"]
    assert "rewardctl: error" not in second.stderr


def test_enum_output_decodes_under_grammar(tmp_path):
    result = rewardctl("eval", "recipes/sentiment.yaml", "-d", "datasets/sentiment/test.jsonl", "--limit", "6",
                       "--json", "--out", str(tmp_path))
    assert result.returncode in (0, 1), result.stderr
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert all(p["status"] == "ok" for p in preds)
    assert {p["y_pred"]["sentiment"] for p in preds} <= {"positive", "negative"}
    assert json.loads(result.stdout)["summary"]["reward"] >= 0.5


def test_chain_of_thought_scored_on_answer(tmp_path):
    result = rewardctl("eval", "recipes/continents_cot.yaml", "-d", "datasets/continents/test.jsonl",
                       "--limit", "6", "--json", "--out", str(tmp_path))
    assert result.returncode in (0, 1), result.stderr
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    ok = [p for p in preds if p["status"] == "ok"]
    assert len(ok) >= 5
    assert all(set(p["y_pred"]) == {"thinking", "answer"} for p in ok)
    assert all(set(p["y_true"]) == {"answer"} for p in preds)
    assert json.loads(result.stdout)["summary"]["reward"] > 0


def test_nested_extraction_recipe_reads_its_csv_and_takes_one_call_per_row(tmp_path):
    """recipes/orders.yaml: a nested object with a nullable field, from a CSV whose order cell is JSON."""
    result = rewardctl("eval", "recipes/orders.yaml", "--data", "datasets/orders/test.csv", "--limit", "4",
                       "--json", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["count"] == 4 and report["summary"]["errors"] == 0
    assert report["usage"]["requests"] == 4  # one plain completion per row: order.* lines
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [p["line"] for p in preds] == [2, 3, 4, 5]  # the CSV's lines: the header is line 1
    assert preds[3]["y_true"]["order"]["city"] is None  # a null reference, read from the JSON cell
    assert all(set(p["y_pred"]["order"]) == {"customer", "item", "quantity", "city", "gift_wrap"} for p in preds)


def test_json_prompt_format_on_the_local_model(tmp_path):
    spec = (ROOT / "recipes" / "capitals.yaml").read_text().replace(
        "  max_tokens: 16\n", "  max_tokens: 24\n  prompt_format: json\n")
    path = tmp_path / "capitals_json.yaml"
    path.write_text(spec)
    result = rewardctl("eval", str(path), "-d", str(ROOT / "datasets/capitals/test.jsonl"), "--limit", "3",
                       "--json", "--out", str(tmp_path / "o"))
    assert result.returncode in (0, 1), result.stderr
    preds = [json.loads(line) for line in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    assert all(p["status"] == "ok" for p in preds)  # the JSON Schema grammar guarantees the shape


NO_NETWORK = """
import socket, sys
def refuse(*args, **kwargs):
    raise RuntimeError("network access attempted")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.getaddrinfo = refuse
socket.create_connection = refuse
from rewardctl.cli import main
sys.argv = ["rewardctl"] + sys.argv[1:]
main()
"""


def test_local_eval_touches_no_network(tmp_path):
    # litellm is imported fresh in this process: its price-map lookup would show up here.
    cmd = [sys.executable, "-c", NO_NETWORK, "eval", "recipes/capitals.yaml", "-d", "datasets/capitals/test.jsonl",
           "--limit", "2", "--no-cache", "--json"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode in (0, 1), result.stderr  # 1: two rows may miss the recipe's threshold
    assert "network access attempted" not in result.stderr
    assert json.loads(result.stdout)["summary"]["errors"] == 0


def test_sigint_keeps_finished_rows_and_exits_3(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rewardctl", "eval", "recipes/continents_cot.yaml",
                             "-d", "datasets/continents/test.jsonl", "--no-cache", "--out", str(out), "-q"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out / "predictions.jsonl.partial"
    # A generous deadline: on a loaded machine the first rows can take minutes.
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and \
            not (partial.exists() and partial.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 3, stderr
    assert "interrupted after" in stderr and "Traceback" not in stderr
    assert stdout == ""
    lines = partial.read_text().splitlines()
    assert len(lines) >= 2 and all(json.loads(line)["status"] for line in lines)  # whole lines only
    assert not (out / "predictions.jsonl").exists() and not (out / "report.json").exists()


def test_lm_judge_refuses_the_embedded_model():
    """Measured: the 270M base model grades at chance (the same grade for right and wrong answers,
    even reading the grades' log-probabilities directly), so a judge on it is refused at load, in
    one line (tests/test_judge_honest.py checks validate and eval)."""
    from rewardctl.errors import InputError
    from rewardctl.rewards import REWARDS, RewardContext

    with pytest.raises(InputError, match="cannot use the embedded model local/gemma-3-270m"):
        REWARDS.build({"type": "lm_judge", "rubric": "Is the response the correct capital city?"},
                      RewardContext(default_model=None))


def test_support_recipe_scores_with_its_trained_reward_model_and_ensemble(tmp_path):
    result = rewardctl("eval", "recipes/support_reply.yaml", "-d", "datasets/support/test.jsonl", "--limit", "3",
                       "--json", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["errors"] == 0
    assert 0 < report["summary"]["metrics"]["rm_probability"] < 1
    assert set(report["stats"]["components"]) == {"helpfulness.reward_model", "helpfulness.similarity"}
    assert report["stats"]["agreement"]["helpfulness"]["rows"] == 3
    line = json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])
    assert set(line["components"]) == {"helpfulness.reward_model", "helpfulness.similarity"}


def test_shipped_reward_model_is_reproduced_by_train_reward(tmp_path):
    shipped = json.loads((ROOT / "recipes/models/support-rm/training_report.json").read_text())
    options = shipped["options"]
    result = rewardctl("train-reward", "--pairs", options["pairs"], "--out", str(tmp_path / "rm"),
                       "--seed", str(options["seed"]), "--centering", str(options["centering"]), "--json", "-q")
    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["val_accuracy"] == shipped["val_accuracy"] >= 0.9
    assert again["train_pairs"] == shipped["train_pairs"] and again["val_pairs"] == shipped["val_pairs"] == 50


def test_optimize_interrupted_by_sigint_then_resumed_ends_like_an_uninterrupted_run(tmp_path):
    import signal
    import time

    spec = (ROOT / "recipes" / "capitals.yaml").read_text() + (
        "optimizer: {type: random_few_shot, epochs: 3, batch_size: 6, patience: null, val_batch_size: 0}\n")
    (tmp_path / "capitals.yaml").write_text(spec)
    train = (ROOT / "datasets/capitals/train.jsonl").read_text().splitlines()[:24]
    (tmp_path / "train.jsonl").write_text("\n".join(train) + "\n")
    args = ["optimize", str(tmp_path / "capitals.yaml"), "--train", str(tmp_path / "train.jsonl"), "--zero-shot", "-q"]

    # The interrupted run goes first, with a cold cache, so the signal lands mid-run; the cache it
    # fills then makes the model's outputs identical for the runs after it.
    proc = subprocess.Popen([sys.executable, "-m", "rewardctl", *args, "--out", str(tmp_path / "parts")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "parts" / "checkpoints" / "epoch-001.json"
    deadline = time.time() + 300
    while time.time() < deadline and not first.exists() and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 3, stderr
    assert "interrupted during epoch" in stderr and "--resume" in stderr and "Traceback" not in stderr
    done = sorted(p.name for p in (tmp_path / "parts" / "checkpoints").glob("*.json"))
    assert "epoch-001.json" in done and "epoch-003.json" not in done

    resumed = rewardctl(*args, "--out", str(tmp_path / "parts"), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    whole = rewardctl(*args, "--out", str(tmp_path / "whole"), "--json")
    assert whole.returncode == 0, whole.stderr

    def comparable(report):
        history = [{k: v for k, v in row.items() if k != "seconds"} for row in report["history"]]
        return report["best"], history, report["validation"]

    resumed_report, whole_report = json.loads(resumed.stdout), json.loads(whole.stdout)
    assert resumed_report["resumed_from_epoch"] >= 1
    assert comparable(resumed_report) == comparable(whole_report)


def _gamed_run(tmp_path, name, spec, *extra):
    """An optimize run on the gamed recipe's first 20 training rows (alternately terse and verbose
    references; 14 train, 6 validation) and the first 12 test rows. Every sampled output is decoded
    token by token and scored under the reference, and no cache answers it, so the runs stay this
    small (issue 17); the drift they show is as wide as on the whole sets."""
    train = (ROOT / "datasets/capitals_gamed/train.jsonl").read_text().splitlines()[:20]
    (tmp_path / "train.jsonl").write_text("\n".join(train) + "\n")
    test = (ROOT / "datasets/capitals/test.jsonl").read_text().splitlines()[:12]
    (tmp_path / "test.jsonl").write_text("\n".join(test) + "\n")
    # --final-kl-rows 3: the best state's KL from 6 sampled outputs (the drifted state's k1: 14.7
    # +- 0.9 nats on them, 15.7 +- 0.6 on all 6 validation rows; far from the bound below).
    result = rewardctl("optimize", str(spec), "--train", str(tmp_path / "train.jsonl"),
                       "--test", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / name), "-q", "--json",
                       "--final-kl-rows", "3", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_kl_optimizer_keeps_the_true_metric_where_reward_alone_drifts(tmp_path):
    recipe = ROOT / "recipes/capitals_gamed.yaml"
    text = recipe.read_text()
    # Reward alone: random_few_shot, 2 epochs (the drift is complete after the second: validation
    # reward 0.39 -> 0.81), without the extra baselines (zero-shot, 3 and 8 demos), which only cost
    # calls here. Measured on these rows: test reward 0.384 -> 0.778, exact match 0.917 -> 0.0.
    drift_spec = tmp_path / "drift.yaml"
    drift_spec.write_text(text[: text.index("optimizer:")]
                          + "optimizer: {type: random_few_shot, epochs: 2, baseline_demos: []}\n")
    drift = _gamed_run(tmp_path, "few_shot", drift_spec)
    # The recipe's kl optimizer, one epoch: its second step proposes verbose demos.
    kept = _gamed_run(tmp_path, "kl", recipe, "--epochs", "1")
    # Reward alone: the gamed reward rises, exact match falls, the program moves far from its reference.
    assert drift["test"]["optimized"] > drift["test"]["baseline"] + 0.2
    assert drift["test"]["scores"]["correct"]["optimized"] < drift["test"]["scores"]["correct"]["baseline"] - 0.4
    assert drift["kl_to_reference"]["k1"] > 5  # 7.4 nats measured on the whole sets, 14.7 here
    # The kl optimizer stays in the band and keeps the true metric.
    assert kept["kl_to_reference"]["k1"] < drift["kl_to_reference"]["k1"] / 2
    assert kept["test"]["scores"]["correct"]["optimized"] >= kept["test"]["scores"]["correct"]["baseline"] - 0.1
    steps = kept["steps"]
    assert steps and {"score", "kl", "beta", "non_score_reward", "objective", "entropy"} <= set(steps[0])
    # It met a candidate that reward alone would take (more reward than the initial program on the
    # same 6 validation rows) and the KL penalty sank it. Measured: reward 0.464 against 0.394,
    # KL 5.7 nats, objective -0.107.
    initial = kept["baselines"][0]["val_objective"]
    assert any(step["score"] > initial > step["objective"] for step in steps)
    for step in steps:
        assert step["non_score_reward"] == pytest.approx(-step["beta"] * step["kl"])
        assert step["objective"] == pytest.approx(step["score"] - step["beta"] * step["kl"])
    assert (tmp_path / "kl" / "kl_curve.png").read_bytes()[:4] == b"\x89PNG"
    checkpoint = json.loads((tmp_path / "kl" / "best.json").read_text())
    assert checkpoint["optimizer_state"]["beta"] == pytest.approx(0.1)


@pytest.mark.slow
def test_kl_optimizer_resumes_to_the_same_result(tmp_path):
    # Sampled outputs are never cached and the whole run repeats them all, so the runs are the
    # smallest that still cross an epoch boundary (issue 17): 12 training rows (8 train, one step
    # an epoch; 4 validation), 1 sample a row, and no final KL, which is not compared (it sampled
    # 2 outputs on each validation row at the end of every run whose best state had moved).
    # Measured: 40 sampled outputs in all, 116 before; 33 s on an idle 2-core machine, 57 s before.
    spec = (ROOT / "recipes/capitals_gamed.yaml").read_text().replace("epochs: 3", "epochs: 2").replace(
        "val_batch_size: 8", "val_batch_size: 4").replace("samples_per_row: 2", "samples_per_row: 1")
    (tmp_path / "gamed.yaml").write_text(spec)
    train = (ROOT / "datasets/capitals_gamed/train.jsonl").read_text().splitlines()[:12]
    (tmp_path / "train.jsonl").write_text("\n".join(train) + "\n")
    args = ["optimize", str(tmp_path / "gamed.yaml"), "--train", str(tmp_path / "train.jsonl"), "-q", "--json",
            "--optimizer", "kl", "--seed", "3", "--final-kl-rows", "0"]
    first = rewardctl(*args, "--out", str(tmp_path / "parts"), "--epochs", "1")
    assert first.returncode == 0, first.stderr
    resumed_run = rewardctl(*args, "--out", str(tmp_path / "parts"), "--resume")
    assert resumed_run.returncode == 0, resumed_run.stderr
    whole_run = rewardctl(*args, "--out", str(tmp_path / "whole"))
    assert whole_run.returncode == 0, whole_run.stderr
    resumed, whole = json.loads(resumed_run.stdout), json.loads(whole_run.stdout)
    assert len(whole["history"]) == 2 and whole["steps"]  # two epochs ran and scored candidates
    def strip(r):
        return (([{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]], r["steps"], r["best"]))
    assert resumed["resumed_from_epoch"] == 1 and strip(resumed) == strip(whole)
