"""The benchmarks under bench/ keep running (tiny sizes; no timing is asserted: these machines are
noisy, and the ratios are read from the full-size runs)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(name, *args, timeout=1800):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / name), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_eval_throughput_runs_every_client_on_the_same_work():
    out = bench("eval_throughput.py", "--rows", 96, "--concurrency", 32, "--latency", 0.05, "--skip-dspy",
                "--workers", "0,2", "--providers", "openai")
    for client in ("raw aiohttp (floor)", "rewardctl openai/ --workers 0", "rewardctl openai/ --workers 2"):
        line = next(line for line in out.splitlines() if line.startswith(client))
        assert line.split()[-1] == "1.000"  # every row answered and graded right
        assert re.search(r"\d+\.\d+x", line)
    assert "ideal 0.15 s" in out and "rewardctl CLI end to end" in out
    # Beside the floor and each bare litellm route: CPU per row (main process, whole tree) and RSS.
    assert "CPU ms/row" in out and "tree ms/row" in out and "RSS MB" in out
    for route in ("openai/", "hosted_vllm/", "aiohttp_openai/"):
        assert next(line for line in out.splitlines() if line.startswith(f"bare litellm loop, {route}")).endswith("1.000")


def test_eval_throughput_json_gives_each_client_s_cpu_and_memory():
    out = bench("eval_throughput.py", "--rows", 64, "--concurrency", 32, "--latency", 0.05, "--skip-dspy",
                "--skip-cli", "--workers", "0,1", "--bare", "hosted_vllm", "--json")
    report = json.loads(out)
    assert report["ideal_s"] == 0.1
    for name in ("raw aiohttp (floor)", "bare litellm loop, hosted_vllm/", "rewardctl openai/ --workers 0",
                 "rewardctl openai/ --workers 1"):
        client = report["clients"][name]
        assert client["reward"] == 1.0 and client["peak_rss_mb"] > 0
        assert client["cpu_ms_per_row_tree"] >= client["cpu_ms_per_row_main"] > 0
    worker = report["clients"]["rewardctl openai/ --workers 1"]
    assert worker["workers"] == 1  # its CPU is in the tree's (read in 10 ms ticks: 0 at this size, maybe)


def test_cosine_bench_compares_with_direct_encode():
    out = bench("cosine_throughput.py", "--rows", 64, "--epochs", 2, "--repeats", 1)
    assert re.search(r"first epoch \(cold\)\s+[\d,]+\s+[\d,]+\s+\d+\.\d+x", out)
    assert re.search(r"all epochs\s+[\d,]+\s+[\d,]+\s+\d+\.\d+x", out)


def test_score_bench_reports_rows_per_second_and_memory():
    out = bench("score_throughput.py", "--rows", 2000, "--rewards", "exact_match")
    assert re.search(r"exact_match\s+[\d,]+\s+[\d,]+\s+\d+\.\d+x", out)
    assert "peak RSS" in out


def test_score_bench_scale_mode_measures_a_child_process():
    out = bench("score_throughput.py", "--rows", 200, "--rewards", "exact_match", "--scale-rows", 2000)
    assert re.search(r"2,000\s+[\d.]+\s+[\d,]+\s+[\d,]+", out) and "memory" in out


@pytest.mark.e2e
def test_embedded_bench_replays_the_same_completions():
    out = bench("embedded_tokens.py", "--recipe", ROOT / "recipes" / "capitals.yaml", "--rows", 3, "--repeats", 1)
    assert re.search(r"ratio\s+\d+\.\d+x", out)


@pytest.mark.e2e
def test_startup_bench_times_each_command_beside_its_target(tmp_path):
    """Prepares the cache on the embedded model (2 rows), then times fresh processes."""
    out = bench("startup.py", "--rows", 2, "--repeats", 1, "--cache-dir", tmp_path / "cache")
    assert "prepared the cache" in out and "2 requests" in out
    for command, target in (("--help", "1.00"), ("validate", "1.00"), ("eval (2 cached)", "1.50")):
        assert re.search(rf"^{re.escape(command)}\s+\d+\.\d+s\s+\d+\.\d+s\s+{target}s\s+\d+\.\d+x", out, re.MULTILINE), command


def test_dataset_bench_streams_every_format_in_a_child_process():
    out = bench("dataset_memory.py", "--rows", 3000)
    assert "baseline (a child that only imports)" in out
    for fmt in ("jsonl", "csv", "tsv", "parquet", "arrow", "shards"):
        assert re.search(rf"^{fmt}\s+3,000\s+[\d.]+\s+[\d.]+\s+[\d,]+\s+[\d.]+\s+-?[\d.]+$", out, re.MULTILINE), fmt


def test_html_bench_reports_size_and_build_time():
    out = bench("html_report.py", "--rows", 300, "--repeats", 1, "--no-browser")
    assert "bytes" in out or "MB" in out


def test_optimizers_bench_help_names_its_options():
    out = bench("optimizers.py", "--help", timeout=600)
    for option in ("--tasks", "--methods", "--limit-test", "--epochs", "--option", "--seed", "--out", "--json"):
        assert option in out


HELD_OUT_TASKS = ("animal_class", "element_names", "number_words", "person_age", "sum_check")


@pytest.mark.parametrize("task", HELD_OUT_TASKS)
def test_held_out_task_is_valid_and_split_40_20_40_without_overlap(task):
    """The optimizers bench's held-out tasks: each spec validates, has no demos (the optimizers
    learn them), and its splits hold 40, 20 and 40 distinct rows that no other split repeats."""
    import json

    folder = ROOT / "bench" / "tasks" / task
    result = subprocess.run([str(Path(sys.executable).with_name("rewardctl")), "validate", str(folder / "spec.yaml")],
                            capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 examples" in result.stdout + result.stderr
    seen = set()
    for split, size in (("train", 40), ("val", 20), ("test", 40)):
        rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == size, split
        keys = {json.dumps(row, sort_keys=True) for row in rows}
        assert len(keys) == size and not keys & seen, f"{split} repeats a row"
        seen |= keys
