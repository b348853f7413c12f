"""Eval throughput against a loopback OpenAI-compatible server with a fixed latency.

    python bench/eval_throughput.py [--rows 2000] [--concurrency 64] [--latency 0.2] [--repeats 1]

Starts bench/loopback_server.py in its own process, then times, side by side on the same rows:
  - floor:     raw aiohttp posting the same requests under a semaphore (what the server allows);
  - rewardctl: rewardctl's evaluate() (prompt, litellm call, parse, score, write predictions and
               the report), no response cache, litellm imported before the clock starts;
  - dspy:      DSPy's Evaluate with a JSONAdapter Predict program at the same number of threads,
               no cache (skipped when dspy is not installed: pip install -e .[bench]).
Each line gives wall / ideal, where ideal = ceil(rows / concurrency) x latency, the CPU time per
row of this process, and the reward (every client must score 1.0: the same work was done).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def start_server(latency: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "loopback_server.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the loopback server did not start: {line!r}")
    return proc, int(line.split()[1])


def write_data(folder: Path, rows: int) -> Path:
    path = folder / "data.jsonl"
    with open(path, "w") as handle:
        for i in range(rows):
            handle.write(json.dumps({"question": f"q{i}", "answer": f"a{i}"}) + "\n")
    return path


def write_spec(folder: Path, port: int) -> Path:
    path = folder / "spec.yaml"
    path.write_text(f"""
name: loopback
model:
  name: openai/bench
  api_base: http://127.0.0.1:{port}/v1
  temperature: 0
  max_tokens: 16
  timeout: 30
inputs:
  question: {{type: string}}
outputs:
  answer: {{type: string}}
instructions: Answer the question.
rewards:
  - {{name: exact, type: exact_match}}
""")
    return path


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


async def floor(port: int, rows: int, concurrency: int) -> float:
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(i: int) -> bool:
            async with gate:
                body = {"model": "bench", "messages": [{"role": "user", "content": f"question: q{i}"}]}
                async with session.post(url, json=body) as response:
                    reply = await response.json()
            return json.loads(reply["choices"][0]["message"]["content"])["answer"] == f"a{i}"

        results = await asyncio.gather(*(one(i) for i in range(rows)))
    return sum(results) / rows


def run_rewardctl(spec_path: Path, data: Path, out: Path, concurrency: int) -> float:
    from rewardctl.evaluate import EvalOptions, evaluate
    from rewardctl.spec import load_spec

    spec = load_spec(str(spec_path))
    options = EvalOptions(data=str(data), out_dir=str(out), concurrency=concurrency, use_cache=False)
    report = asyncio.run(evaluate(spec, options, spec_path=str(spec_path)))
    assert report.summary.count == report.summary.ok, report.summary
    return report.summary.reward


def run_dspy(port: int, rows: int, concurrency: int) -> float | None:
    try:
        import dspy
    except ImportError:
        return None
    lm = dspy.LM("openai/bench", api_base=f"http://127.0.0.1:{port}/v1", api_key="x", cache=False,
                 temperature=0.0, max_tokens=16)
    program = dspy.Predict("question -> answer")
    devset = [dspy.Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(rows)]

    def metric(example, prediction, trace=None):
        return float(str(prediction.answer).strip() == example.answer)

    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        result = dspy.Evaluate(devset=devset, metric=metric, num_threads=concurrency,
                               display_progress=False, provide_traceback=False)(program)
    score = getattr(result, "score", result)
    return float(score) / 100 if float(score) > 1 else float(score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each client; the median is shown")
    parser.add_argument("--skip-dspy", action="store_true")
    args = parser.parse_args()

    from rewardctl.lm.litellm_setup import get_litellm

    get_litellm()  # import time is start-up, not throughput (reported by the CLI line below)
    ideal = math.ceil(args.rows / args.concurrency) * args.latency
    server, port = start_server(args.latency)
    results: dict[str, list[tuple[float, float, float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            data = write_data(folder, args.rows)
            spec = write_spec(folder, port)
            asyncio.run(floor(port, 64, 64))  # warm the server
            for repeat in range(args.repeats):
                with Timer() as t:
                    score = asyncio.run(floor(port, args.rows, args.concurrency))
                results.setdefault("raw aiohttp (floor)", []).append((t.wall, t.cpu, score))
                with Timer() as t:
                    score = run_rewardctl(spec, data, folder / f"out{repeat}", args.concurrency)
                results.setdefault("rewardctl eval", []).append((t.wall, t.cpu, score))
                if not args.skip_dspy:
                    with Timer() as t:
                        score = run_dspy(port, args.rows, args.concurrency)
                    if score is not None:
                        results.setdefault("dspy Evaluate (JSONAdapter)", []).append((t.wall, t.cpu, score))
            with Timer() as t:
                subprocess.run([sys.executable, "-m", "rewardctl", "eval", str(spec), "--data", str(data),
                                "--concurrency", str(args.concurrency), "--no-cache", "--out",
                                str(folder / "cli")], check=True, stderr=subprocess.DEVNULL)
            cli_wall = t.wall
    finally:
        server.kill()

    print(f"{args.rows} rows, concurrency {args.concurrency}, latency {args.latency * 1000:.0f} ms: "
          f"ideal {ideal:.2f} s (median of {args.repeats})")
    print(f"{'client':32} {'wall s':>8} {'/ideal':>7} {'CPU ms/row':>11} {'reward':>7}")
    medians = {}
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        medians[name] = wall
        print(f"{name:32} {wall:8.2f} {wall / ideal:6.2f}x {cpu / args.rows * 1000:11.2f} {runs[0][2]:7.3f}")
    if "dspy Evaluate (JSONAdapter)" in medians:
        ratio = medians["dspy Evaluate (JSONAdapter)"] / medians["rewardctl eval"]
        print(f"rewardctl is {ratio:.2f}x as fast as DSPy Evaluate on the same server and rows")
    print(f"rewardctl CLI end to end (process start, litellm import, eval, report): {cli_wall:.2f} s")


if __name__ == "__main__":
    main()
