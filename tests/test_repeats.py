"""--repeat: samples aggregated per row (mean, best, all pass, any pass, a row rule), pass^k
beside pass@k, and each sample an independent request."""

import asyncio
import json

import pytest
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.lm.client import Completion, LMClient
from rewardctl.lm.request import Request
from rewardctl.modelconfig import ModelConfig

from conftest import MINIMAL_SPEC, write

runner = CliRunner()
# Row 0 passes 2 of 3 samples, row 1 none, row 2 all.
SAMPLES = {0: ["4", "4", "x"], 1: ["x", "x", "x"], 2: ["4", "4", "4"]}


def sampled_lines():
    return [{"index": i, "sample": s, "inputs": {"question": f"q{i}"}, "y_true": {"answer": "4"},
             "y_pred": {"answer": answer}}
            for i, answers in SAMPLES.items() for s, answer in enumerate(answers)]


def score(tmp_path, extra=""):
    spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC + extra)
    preds = write(tmp_path / "p.jsonl", "".join(json.dumps(x) + "\n" for x in sampled_lines()))
    result = runner.invoke(app, ["score", str(spec), "-p", str(preds), "--json", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result


def test_samples_are_aggregated_per_row(tmp_path):
    report, result = score(tmp_path)
    r = report["repeats"]
    assert r["samples"] == 3 and r["rows"] == 3 and r["row_rule"] == "mean"
    assert r["mean"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert r["best"] == pytest.approx(2 / 3)
    assert r["all_pass"] == pytest.approx(1 / 3) and r["any_pass"] == pytest.approx(2 / 3)
    assert r["row_pass_rate"] == pytest.approx(2 / 3)
    assert "pass^3" in (tmp_path / "o" / "report.md").read_text()
    assert "repeats: 3 samples of 3 rows" in result.stderr


def test_pass_hat_k_beside_pass_at_k(tmp_path):
    report, _ = score(tmp_path, "metrics:\n  - {name: at2, type: pass_at_k, k: 2}\n"
                                "  - {name: hat2, type: pass_hat_k, k: 2}\n")
    at2, hat2 = report["stats"]["metrics"]["at2"], report["stats"]["metrics"]["hat2"]
    # row 0: n 3, c 2: pass@2 1, pass^2 C(2,2)/C(3,2) = 1/3; row 1: 0, 0; row 2: 1, 1
    assert at2["value"] == pytest.approx(2 / 3) and hat2["value"] == pytest.approx(4 / 9)
    assert at2["pass_hat_k"] == pytest.approx(4 / 9) and hat2["pass_at_k"] == pytest.approx(2 / 3)


def test_a_run_without_repeats_has_no_repeats_section(tmp_path):
    spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC)
    preds = write(tmp_path / "p.jsonl", json.dumps({"y_true": {"answer": "4"}, "y_pred": {"answer": "4"}}) + "\n")
    result = runner.invoke(app, ["score", str(spec), "-p", str(preds), "--json"])
    assert "repeats" not in json.loads(result.stdout)


def test_row_rule_all_and_any(tmp_path):
    spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC.replace(
        "  name: openai/gpt-4o-mini\n", '  name: openai/gpt-4o-mini\n  temperature: 1\n'
        '  extra: {mock_response: \'{"answer": "4"}\'}\n'))
    data = write(tmp_path / "d.jsonl", '{"question": "a", "answer": "4"}\n{"question": "b", "answer": "5"}\n')
    for rule, rate in (("all", 0.5), ("any", 0.5), ("mean", 0.5)):
        result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--repeat", "2", "--row-pass", rule, "--json"])
        assert result.exit_code == 0, result.output
        repeats = json.loads(result.stdout)["repeats"]
        assert repeats["row_rule"] == rule and repeats["row_pass_rate"] == rate
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--row-pass", "some"])
    assert result.exit_code == 2 and "--row-pass" in result.stderr


@pytest.mark.parametrize("seed", [None, 0, 7])
def test_each_sample_is_its_own_request_and_seed(seed):
    client = LMClient(ModelConfig(name="openai/x", temperature=1, seed=seed))
    seen = []

    async def call(request, params, attempt=0):
        seen.append(params.get("seed"))
        return Completion("{}", "stop", 1, 1, cached=False, latency_s=0.0)

    client._call = call
    for sample in range(3):
        asyncio.run(client.complete(Request([{"role": "user", "content": "hi"}]), sample=sample))
    base = 0 if seed is None else seed
    assert seen == [seed, base + 1, base + 2]


def test_sharded_repeats_merge_like_one_run(tmp_path):
    spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC.replace(
        "  name: openai/gpt-4o-mini\n", '  name: openai/gpt-4o-mini\n  temperature: 1\n'
        '  extra: {mock_response: \'{"answer": "4"}\'}\n'))
    data = write(tmp_path / "d.jsonl", "".join(f'{{"question": "q{i}", "answer": "{4 if i % 2 else 5}"}}\n'
                                               for i in range(5)))
    whole = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--repeat", "2", "--json"])
    for k in (1, 2):
        result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--repeat", "2", "--shard", f"{k}/2",
                                     "--out", str(tmp_path / f"s{k}"), "-q"])
        assert result.exit_code in (0, 1), result.output
    merged = runner.invoke(app, ["merge", str(spec), str(tmp_path / "s1"), str(tmp_path / "s2"),
                                 "--out", str(tmp_path / "m"), "--json"])
    assert merged.exit_code in (0, 1), merged.output
    assert json.loads(merged.stdout)["repeats"] == json.loads(whole.stdout)["repeats"]
    lines = [json.loads(x) for x in (tmp_path / "m" / "predictions.jsonl").read_text().splitlines()]
    assert [(x["index"], x["sample"]) for x in lines] == [(i, s) for i in range(5) for s in range(2)]
