"""Scale-out and cost: --shard K/N and `rewardctl merge` give the report of an unsharded run;
token counts and cost in the report; --max-cost stops cleanly; several deployments balanced by
litellm's Router; optimizers reuse cached calls. Against real HTTP servers on 127.0.0.1."""

import json
import re

import pytest
from faultserver import FaultServer
from typer.testing import CliRunner

from rewardctl.cli import app

from conftest import write

runner = CliRunner()
ROWS = 30


def answer(messages):
    """Right for two rows in three, so the statistics have something to show."""
    number = int(re.sub(r"\D", "", json.loads(messages[-1]["content"])["question"]))
    return json.dumps({"answer": str(number) if number % 3 else f"{number} wrong", "label": "even" if number % 2 == 0 else "odd"})


def spec(tmp_path, url, *, model="openai/served", extra_model="", name="spec.yaml"):
    text = f"""\
name: scale
model:
  name: {model}
  api_base: {url}
  retries: 2
  backoff_base: 0.01
{extra_model}inputs: {{question: string}}
outputs:
  answer: string
  label: {{type: enum, values: [even, odd]}}
rewards:
  - {{name: em, type: exact_match, in_mask: [answer]}}
  - {{name: f1, type: f1_score, in_mask: [answer], weight: 0.5}}
metrics:
  - {{name: label_f1, type: classification, field: label}}
"""
    return write(tmp_path / name, text)


def data(tmp_path, rows=ROWS, bad_line=True):
    lines = [json.dumps({"question": f"q{i}", "answer": str(i), "label": "even" if i % 2 == 0 else "odd"})
             for i in range(rows)]
    if bad_line:
        lines.insert(7, '{"question": "q-broken"')  # skipped (and counted) by every shard alike
    return write(tmp_path / "data.jsonl", "\n".join(lines) + "\n")


def invoke(*args):
    result = runner.invoke(app, [*map(str, args)])
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, report


VOLATILE = ("created_at", "wall_time_s", "latency_s", "outputs", "merged_from")


def comparable(report):
    return {k: v for k, v in report.items() if k not in VOLATILE}


def test_shards_merged_equal_the_unsharded_run(tmp_path):
    with FaultServer(answer) as server:
        path, rows = spec(tmp_path, server.url), data(tmp_path)
        result, whole = invoke("eval", path, "-d", rows, "--skip-invalid", "--no-cache", "--json",
                               "--out", tmp_path / "whole")
        assert result.exit_code == 1 or result.exit_code == 0, result.stderr
        served_whole = server.served
        shard_dirs = []
        for k in (1, 2, 3):
            out = tmp_path / f"shard{k}"
            result, shard = invoke("eval", path, "-d", rows, "--skip-invalid", "--no-cache", "--json",
                                   "--shard", f"{k}/3", "--out", out)
            assert shard["data"]["shard"] == f"{k}/3" and shard["summary"]["count"] == 10
            indexes = [json.loads(line)["index"] for line in (out / "predictions.jsonl").read_text().splitlines()]
            assert indexes == list(range(k - 1, ROWS, 3))
            shard_dirs.append(out)
        assert server.served == 2 * served_whole  # the shards together made the same calls
    # Shards in any order on the command line.
    result, merged = invoke("merge", path, shard_dirs[2], shard_dirs[0], shard_dirs[1],
                            "--out", tmp_path / "merged", "--json")
    assert result.exit_code == 0, result.stderr
    assert comparable(merged) == comparable(whole)
    assert merged["summary"]["count"] == ROWS and merged["data"]["skipped"] == 1
    assert 0 < merged["summary"]["rewards"]["em"] < 1
    def rows(folder):
        return [{k: v for k, v in json.loads(line).items() if k != "latency_s"}
                for line in (folder / "predictions.jsonl").read_text().splitlines()]

    assert rows(tmp_path / "merged") == rows(tmp_path / "whole")
    assert merged["merged_from"] and len(merged["merged_from"]) == 3
    on_disk = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert comparable(on_disk) == comparable(whole)


def test_merge_refuses_incomplete_or_mixed_shards(tmp_path):
    with FaultServer(answer) as server:
        path, rows = spec(tmp_path, server.url), data(tmp_path, rows=6, bad_line=False)
        for k in (1, 2):
            result, _ = invoke("eval", path, "-d", rows, "--no-cache", "--shard", f"{k}/2", "--out", tmp_path / f"s{k}", "-q")
            assert result.exit_code == 0, result.stderr
        other = spec(tmp_path, server.url, extra_model="  temperature: 0.5\n", name="other.yaml")
    result, _ = invoke("merge", path, tmp_path / "s1", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "missing shards: 2/2" in result.stderr
    result, _ = invoke("merge", path, tmp_path / "s1", tmp_path / "s1", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "shard 1/2 given twice" in result.stderr
    result, _ = invoke("merge", other, tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "another spec" in result.stderr
    result, _ = invoke("merge", path, tmp_path / "nowhere", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "no report.json" in result.stderr
    for bad in ("0/2", "3/2", "1", "a/b"):
        result, _ = invoke("eval", path, "-d", rows, "--shard", bad)
        assert result.exit_code == 2 and "--shard" in result.stderr, bad


def test_cost_from_the_offline_price_map_and_from_spec_prices(tmp_path):
    with FaultServer(answer) as server:
        rows = data(tmp_path, rows=10, bad_line=False)
        # gpt-4o-mini's price comes from litellm's bundled map (no network).
        _, report = invoke("eval", spec(tmp_path, server.url, model="openai/gpt-4o-mini"), "-d", rows,
                                "--no-cache", "--json")
        usage = report["usage"]
        assert usage["prompt_tokens"] == 50 and usage["completion_tokens"] == 30
        import litellm

        prompt_cost, completion_cost = litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=50, completion_tokens=30)
        assert usage["cost_usd"] == pytest.approx(prompt_cost + completion_cost) and usage["cost_usd"] > 0
        priced = spec(tmp_path, server.url, name="priced.yaml",
                      extra_model="  input_cost_per_token: 0.001\n  output_cost_per_token: 0.002\n")
        _, report = invoke("eval", priced, "-d", rows, "--no-cache", "--json", "--out", tmp_path / "priced")
        assert report["usage"]["cost_usd"] == pytest.approx(10 * (5 * 0.001 + 3 * 0.002))
        record = json.loads((tmp_path / "priced" / "predictions.jsonl").read_text().splitlines()[0])
        assert record["cost_usd"] == pytest.approx(5 * 0.001 + 3 * 0.002)
        assert "$0.11" in (tmp_path / "priced" / "report.md").read_text()
        # Unknown model, no prices: the cost is unknown (null), and said so.
        _result, report = invoke("eval", spec(tmp_path, server.url, name="unknown.yaml"), "-d", rows, "--no-cache", "--json")
        assert report["usage"]["cost_usd"] is None
        assert any("no price" in w for w in report["warnings"])


def test_max_cost_stops_cleanly_and_keeps_every_row(tmp_path):
    with FaultServer(answer, delay_s=0.02) as server:
        rows = data(tmp_path, rows=40, bad_line=False)
        priced = spec(tmp_path, server.url, extra_model="  input_cost_per_token: 0.001\n  output_cost_per_token: 0.002\n")
        out = tmp_path / "out"
        # 0.011 per row: the budget is spent after 10 rows; calls in flight then still finish.
        result, report = invoke("eval", priced, "-d", rows, "--no-cache", "--json", "--concurrency", "2",
                                "--max-cost", "0.11", "--out", out)
        assert result.exit_code == 3 and "cost budget" in result.stderr
        lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert [r["index"] for r in lines] == list(range(40))
        ran = [r for r in lines if r["status"] == "ok"]
        assert 10 <= len(ran) <= 12 and server.served == len(ran)
        assert all(r["error"].startswith("not run: cost budget") for r in lines if r["status"] != "ok")
        report = json.loads((out / "report.json").read_text())
        assert report["usage"]["cost_usd"] == pytest.approx(len(ran) * 0.011)
        assert any("cost budget spent" in w for w in report["warnings"])
        # A budget needs a price.
        result, _ = invoke("eval", spec(tmp_path, server.url, name="unpriced.yaml"), "-d", rows, "--max-cost", "1")
        assert result.exit_code == 2 and "--max-cost" in result.stderr and "price" in result.stderr
        result, _ = invoke("eval", priced, "-d", rows, "--max-cost", "-1")
        assert result.exit_code == 2 and "--max-cost" in result.stderr


def test_deployments_are_balanced_through_the_router(tmp_path):
    with FaultServer(answer) as first, FaultServer(answer) as second:
        text = f"""\
name: balanced
model:
  name: openai/served
  deployments:
    - {{api_base: {first.url}}}
    - {{api_base: {second.url}}}
inputs: {{question: string}}
outputs: {{answer: string, label: {{type: enum, values: [even, odd]}}}}
rewards:
  - {{name: em, type: exact_match, in_mask: [answer]}}
"""
        path = write(tmp_path / "balanced.yaml", text)
        result, report = invoke("eval", path, "-d", data(tmp_path, rows=40, bad_line=False), "--no-cache", "--json")
        assert result.exit_code == 0, result.stderr
        assert report["summary"]["count"] == 40 and report["summary"]["errors"] == 0
        assert first.served + second.served == 40 and first.served >= 5 and second.served >= 5
        assert report["usage"]["requests"] == 40


def test_deployments_fail_over_when_one_is_down(tmp_path):
    with FaultServer(answer, rates={"500": 1.0}) as down, FaultServer(answer) as up:
        text = f"""\
name: failover
model:
  name: openai/served
  retries: 6
  backoff_base: 0.01
  deployments:
    - {{api_base: {down.url}}}
    - {{api_base: {up.url}}}
inputs: {{question: string}}
outputs: {{answer: string, label: {{type: enum, values: [even, odd]}}}}
rewards:
  - {{name: em, type: exact_match, in_mask: [answer]}}
"""
        path = write(tmp_path / "failover.yaml", text)
        result, report = invoke("eval", path, "-d", data(tmp_path, rows=12, bad_line=False), "--no-cache", "--json")
        assert result.exit_code == 0, result.stderr
        assert report["summary"]["errors"] == 0 and up.served == 12


def test_deployments_are_validated(tmp_path):
    bad = write(tmp_path / "bad.yaml", """\
name: bad
model:
  name: openai/served
  deployments:
    - {api_bsae: http://127.0.0.1:9}
inputs: {question: string}
outputs: {answer: string}
rewards:
  - {name: em, type: exact_match}
""")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "model.deployments[0].api_base: required but missing" in result.stderr and "bad.yaml:5" in result.stderr


def test_optimize_reuses_cached_calls(tmp_path):
    with FaultServer(answer) as server:
        text = spec(tmp_path, server.url).read_text() + """\
optimizer:
  type: random_few_shot
  epochs: 2
  batch_size: 4
  max_examples: 2
"""
        path = write(tmp_path / "opt.yaml", text)
        train = data(tmp_path, rows=12, bad_line=False)
        cache = tmp_path / "cache"
        first, _report = invoke("optimize", path, "--train", train, "--seed", "0", "--out", tmp_path / "o1",
                               "--cache-dir", cache, "--json", "-q")
        assert first.exit_code == 0, first.stderr
        calls_first = server.served
        distinct_prompts = len(set(server.prompts))
        # Within a run, a prompt already answered is never sent again.
        assert calls_first == distinct_prompts
        second, report2 = invoke("optimize", path, "--train", train, "--seed", "0", "--out", tmp_path / "o2",
                                 "--cache-dir", cache, "--json", "-q")
        assert second.exit_code == 0, second.stderr
        assert server.served == calls_first  # the same seed asks the same questions: all cached
        assert report2["usage"]["requests"] == 0
