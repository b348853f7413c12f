"""CLI tests through typer's runner. The model is a chat model answered by litellm's
mock_response (offline); end-to-end tests with the real local model are in test_e2e_local.py."""

import json

import pytest
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.rewards import REWARDS

from conftest import MINIMAL_SPEC, write

runner = CliRunner()


def mock_spec(tmp_path, reply='{"answer": "4"}', extra=""):
    text = MINIMAL_SPEC.replace(
        "  name: openai/gpt-4o-mini\n",
        f"  name: openai/gpt-4o-mini\n  extra: {{mock_response: {json.dumps(reply)}}}\n",
    ) + extra
    return write(tmp_path / "spec.yaml", text)


def data(tmp_path, rows):
    return write(tmp_path / "data.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


ROWS = [{"question": "2+2?", "answer": "4"}, {"question": "3+1?", "answer": "4"}, {"question": "1+1?", "answer": "2", "id": "x"}]


def test_help_lists_commands_and_exit_codes():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("eval", "validate", "schema"):
        assert command in result.stdout
    result = runner.invoke(app, ["eval", "--help"])
    assert "Exit codes: 0 done; 1" in " ".join(result.stdout.split())


def test_validate_ok_and_json(tmp_path):
    spec = mock_spec(tmp_path)
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0 and result.stdout == ""
    assert "ok:" in result.stderr
    result = runner.invoke(app, ["validate", str(spec), "--json"])
    assert json.loads(result.stdout)["valid"] is True


def test_validate_bad_spec_one_line_exit_2(tmp_path):
    spec = write(tmp_path / "bad.yaml", MINIMAL_SPEC.replace("type: exact_match", "type: nope"))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rewardctl: error: {spec}:15: rewards[0].type:")
    assert "Traceback" not in result.stderr


def test_validate_lists_every_problem_one_line_each_exit_2(tmp_path):
    text = MINIMAL_SPEC.replace("type: exact_match", "type: nope").replace("name: demo", "name: demo\nreward: 1")
    text += "metrics:\n  - {type: python, function: 'absent.py:f'}\nthresholds: {rewards: {zz: 1}}\n"
    spec = write(tmp_path / "bad.yaml", text)
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"rewardctl: error: {spec}:2: reward: unknown key 'reward' (did you mean 'rewards'?)",
        f"rewardctl: error: {spec}:16: rewards[0].type: unknown reward type 'nope'; known: {', '.join(REWARDS.names())}",
        f"rewardctl: error: {spec}:18: reward 'python'.function: no such file: {tmp_path / 'absent.py'}",
        f"rewardctl: error: {spec}:19: thresholds.rewards.zz: no reward named 'zz' (known: em)",
    ]
    result = runner.invoke(app, ["validate", str(spec), "--json"])
    assert result.exit_code == 2 and result.stderr == ""
    report = json.loads(result.stdout)
    assert report["valid"] is False and report["path"] == str(spec)
    assert [(p["path"], p["line"], p["field"]) for p in report["problems"]] == [
        (str(spec), 2, "reward"), (str(spec), 16, "rewards[0].type"), (str(spec), 18, "reward 'python'.function"),
        (str(spec), 19, "thresholds.rewards.zz")]
    assert report["problems"][0]["message"] == "unknown key 'reward' (did you mean 'rewards'?)"


def test_validate_json_of_a_file_that_is_not_there(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "absent.yaml"), "--json"])
    assert result.exit_code == 2
    problems = json.loads(result.stdout)["problems"]
    assert len(problems) == 1 and problems[0]["path"] == str(tmp_path / "absent.yaml") and problems[0]["line"] is None


def test_schema_is_json():
    result = runner.invoke(app, ["schema"])
    assert json.loads(result.stdout)["title"] == "rewardctl program spec"


def test_eval_writes_outputs_and_json(tmp_path):
    spec, dataset, out = mock_spec(tmp_path), data(tmp_path, ROWS), tmp_path / "out"
    result = runner.invoke(app, ["eval", str(spec), "--data", str(dataset), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # nothing else on stdout
    assert report["schema_version"] == 1
    assert report["summary"]["count"] == 3 and report["summary"]["errors"] == 0
    assert report["summary"]["reward"] == pytest.approx(2 / 3)
    assert report["summary"]["rewards"] == {"em": pytest.approx(2 / 3)}
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert lines[2]["meta"] == {"id": "x"} and lines[2]["rewards"] == {"em": 0.0}
    assert {"inputs", "y_true", "y_pred", "reward", "status", "error", "latency_s", "tokens"} <= set(lines[0])
    assert json.loads((out / "report.json").read_text())["summary"]["count"] == 3
    assert "| reward |" in (out / "report.md").read_text()
    assert not (out / "predictions.jsonl.partial").exists()


def test_second_run_is_served_from_cache(tmp_path):
    spec, dataset = mock_spec(tmp_path), data(tmp_path, ROWS)
    first = json.loads(runner.invoke(app, ["eval", str(spec), "-d", str(dataset), "--json"]).stdout)
    second = json.loads(runner.invoke(app, ["eval", str(spec), "-d", str(dataset), "--json"]).stdout)
    assert first["usage"]["requests"] == 3 and first["usage"]["cached_rows"] == 0
    assert second["usage"]["requests"] == 0 and second["usage"]["cached_rows"] == 3
    assert second["summary"] == first["summary"]
    third = json.loads(runner.invoke(app, ["eval", str(spec), "-d", str(dataset), "--json", "--no-cache"]).stdout)
    assert third["usage"]["requests"] == 3


@pytest.mark.parametrize("args,code", [
    (["--fail-under", "0.9"], 1),
    (["--fail-under", "0.5"], 0),
    (["--fail-under", "0"], 0),
])
def test_fail_under_exit_codes(tmp_path, args, code):
    spec, dataset = mock_spec(tmp_path), data(tmp_path, ROWS)
    result = runner.invoke(app, ["eval", str(spec), "-d", str(dataset), *args])
    assert result.exit_code == code, result.stderr


def test_spec_thresholds_gate(tmp_path):
    spec = mock_spec(tmp_path, extra="thresholds:\n  rewards: {em: 0.8}\n")
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data(tmp_path, ROWS))])
    assert result.exit_code == 1
    assert "FAIL" in result.stderr


def test_bad_dataset_line_exit_2_before_any_call(tmp_path):
    spec = mock_spec(tmp_path)
    dataset = write(tmp_path / "data.jsonl", '{"question": "a", "answer": "b"}\n{"question": 3, "answer": "b"}\n')
    result = runner.invoke(app, ["eval", str(spec), "-d", str(dataset), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"rewardctl: error: {dataset}:2: question: expected a string, got integer"
    assert not (tmp_path / "o" / "predictions.jsonl").exists()


def test_skip_invalid_counts_lines(tmp_path):
    spec = mock_spec(tmp_path)
    dataset = write(tmp_path / "data.jsonl", '{"question": "a", "answer": "4"}\nnot json\n')
    result = runner.invoke(app, ["eval", str(spec), "-d", str(dataset), "--skip-invalid", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["summary"]["skipped"] == 1


def test_unparseable_replies_are_row_errors_not_crashes(tmp_path):
    spec = mock_spec(tmp_path, reply="I think the answer is four.")
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data(tmp_path, ROWS)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3  # every row failed
    assert "every row failed" in result.stderr
    lines = [json.loads(line) for line in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(line["status"] == "error" for line in lines)
    assert lines[0]["calls"] == 3 and "unparseable reply" in lines[0]["error"]
    assert lines[0]["raw"] == "I think the answer is four."


def test_missing_model_file_exit_3(tmp_path):
    text = MINIMAL_SPEC.replace("  name: openai/gpt-4o-mini\n", "  name: local/does-not-exist.gguf\n")
    spec = write(tmp_path / "spec.yaml", text)
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data(tmp_path, ROWS))])
    assert result.exit_code == 3
    assert "does-not-exist.gguf" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_file_exit_2(tmp_path):
    result = runner.invoke(app, ["eval", str(mock_spec(tmp_path)), "-d", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_usage_error_exit_2(tmp_path):
    result = runner.invoke(app, ["eval", str(mock_spec(tmp_path))])  # --data missing
    assert result.exit_code == 2


def test_api_key_env_must_be_set(tmp_path, monkeypatch):
    monkeypatch.delenv("MY_KEY", raising=False)
    spec = mock_spec(tmp_path, extra="")
    text = spec.read_text().replace("  extra:", "  api_key_env: MY_KEY\n  extra:")
    spec.write_text(text)
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data(tmp_path, ROWS))])
    assert result.exit_code == 2 and "MY_KEY is not set" in result.stderr


def test_dataset_may_omit_output_fields_that_no_reward_reads(tmp_path):
    spec_text = MINIMAL_SPEC.replace("  answer:\n    type: string\n    max_length: 40\n",
                                     "  thinking: string\n  answer:\n    type: string\n    max_length: 40\n")
    spec_text = spec_text.replace('output: {answer: "4"}', 'output: {thinking: "2 and 2", answer: "4"}')
    spec_text = spec_text.replace("  name: openai/gpt-4o-mini\n",
                                  '  name: openai/gpt-4o-mini\n  extra: {mock_response: \'{"thinking": "t", "answer": "4"}\'}\n')
    unmasked = write(tmp_path / "a.yaml", spec_text)
    dataset = data(tmp_path, [{"question": "2+2?", "answer": "4"}])
    result = runner.invoke(app, ["eval", str(unmasked), "-d", str(dataset)])
    assert result.exit_code == 2
    assert "thinking: missing output field (read by 'em'" in result.stderr
    masked = write(tmp_path / "b.yaml", spec_text + "    in_mask: [answer]\n")
    result = runner.invoke(app, ["eval", str(masked), "-d", str(dataset), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["reward"] == 1.0


def test_failed_requests_are_never_cached(tmp_path, monkeypatch):
    import diskcache

    cache_dir = tmp_path / "responses"
    spec, dataset = mock_spec(tmp_path, reply="litellm.RateLimitError"), data(tmp_path, ROWS)
    for _ in range(2):
        result = runner.invoke(app, ["eval", str(spec), "-d", str(dataset), "--cache-dir", str(cache_dir),
                                     "--out", str(tmp_path / "o")])
        assert result.exit_code == 3 and "RateLimitError" in result.stderr
    preds = [json.loads(line) for line in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    assert [p["status"] for p in preds] == ["error"] * 3 and all(p["cached"] is False for p in preds)
    with diskcache.Cache(str(cache_dir)) as cache:
        assert len(cache) == 0


@pytest.mark.parametrize("concurrency", [1, 3, 64])
def test_many_rows_stay_in_order_at_any_concurrency(tmp_path, concurrency):
    rows = [{"question": f"q{i}", "answer": "4" if i % 3 else "x"} for i in range(150)]
    spec, dataset, out = mock_spec(tmp_path), data(tmp_path, rows), tmp_path / "o"
    result = runner.invoke(app, ["eval", str(spec), "-d", str(dataset), "--out", str(out), "--json",
                                 "--concurrency", str(concurrency)])
    assert result.exit_code == 0, result.stderr
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["index"] for p in preds] == list(range(150))
    assert [p["inputs"]["question"] for p in preds] == [f"q{i}" for i in range(150)]
    assert json.loads(result.stdout)["summary"]["reward"] == pytest.approx(100 / 150)


def test_response_format_only_where_the_model_supports_it():
    from rewardctl.lm.client import LMClient
    from rewardctl.lm.litellm_setup import get_litellm
    from rewardctl.spec import ModelConfig

    litellm = get_litellm()
    assert LMClient(ModelConfig(name="openai/gpt-4o-mini")).supports_response_schema(litellm) is True
    assert LMClient(ModelConfig(name="openai/some-unknown-model")).supports_response_schema(litellm) is False
def test_a_python_reward_that_raises_in_eval_names_the_dataset_row(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    write(tmp_path / "checks.py", "def picky(y_true, y_pred):\n    if y_true['answer'] == '7':\n"
          "        raise ValueError('sevens')\n    return 1.0\n")
    spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC.replace(
        "  name: openai/gpt-4o-mini\n", "  name: openai/gpt-4o-mini\n  extra: {mock_response: '{\"answer\": \"4\"}'}\n")
        + "  - {name: picky, type: python, function: 'checks.py:picky'}\n")
    data = write(tmp_path / "data.jsonl", "".join(json.dumps({"question": f"q{i}", "answer": str(i)}) + "\n"
                                                   for i in range(1, 10)))
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--no-cache", "-q"])
    assert result.exit_code == 2
    assert result.stderr == f"rewardctl: error: {data}:7: reward 'picky' raised ValueError: sevens\n"
