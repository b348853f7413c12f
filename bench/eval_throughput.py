"""Eval throughput against a loopback OpenAI-compatible server with a fixed latency.

    python bench/eval_throughput.py [--rows 2000] [--concurrency 64] [--latency 0.2] [--repeats 1]

Starts bench/loopback_server.py in its own process, then times, side by side on the same rows:
  - floor:     raw aiohttp posting the same requests under a semaphore (what the server allows);
  - litellm:   litellm.acompletion alone under a semaphore, per provider (what litellm allows);
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


def write_spec(folder: Path, port: int, provider: str = "openai") -> Path:
    path = folder / f"spec-{provider}.yaml"
    path.write_text(f"""
name: loopback
model:
  name: {provider}/bench
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


def run_rewardctl(spec_path: Path, data: Path, out: Path, concurrency: int, workers: int = 0) -> float:
    """evaluate() with litellm already imported: in this process (workers=0), or in a pool of
    worker processes started (and their litellm imported) before the clock, as it is for an
    in-process run; the CLI line below shows start-up included."""
    from rewardctl.evaluate import EvalOptions, evaluate
    from rewardctl.lm.workers import WorkerPool
    from rewardctl.spec import load_spec

    spec = load_spec(str(spec_path))
    options = EvalOptions(data=str(data), out_dir=str(out), concurrency=concurrency, use_cache=False,
                          workers=workers)

    async def run():
        pool = WorkerPool(workers) if workers else None
        if pool is not None:
            await pool.ready()
        try:
            with Timer() as timer:
                report = await evaluate(spec, options, spec_path=str(spec_path), pool=pool)
        finally:
            if pool is not None:
                await pool.close()
        return report, timer

    report, timer = asyncio.run(run())
    assert report.summary.count == report.summary.ok, report.summary
    return report.summary.reward, timer
    assert report.summary.count == report.summary.ok, report.summary
    return report.summary.reward


async def litellm_floor(port: int, rows: int, concurrency: int, provider: str) -> float:
    """litellm.acompletion alone under a semaphore, in this process: what any litellm client pays."""
    from rewardctl.lm.litellm_setup import get_litellm

    litellm = get_litellm()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> bool:
        async with gate:
            reply = await litellm.acompletion(
                model=f"{provider}/bench", api_base=f"http://127.0.0.1:{port}/v1", api_key="x", num_retries=0,
                timeout=30, temperature=0, max_tokens=16,
                messages=[{"role": "system", "content": "Answer the question."},
                          {"role": "user", "content": json.dumps({"question": f"q{i}"})}])
        return json.loads(reply.choices[0].message.content)["answer"] == f"a{i}"

    results = await asyncio.gather(*(one(i) for i in range(rows)))
    return sum(results) / rows


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
    parser.add_argument("--workers", default="0,2", help="rewardctl runs: in-process (0) and with N worker processes")
    parser.add_argument("--providers", default="openai,hosted_vllm",
                        help="litellm providers rewardctl names the server by (openai/: through the OpenAI SDK; "
                             "hosted_vllm/: litellm's own HTTP path for vLLM-style servers)")
    parser.add_argument("--skip-dspy", action="store_true")
    parser.add_argument("--skip-cli", action="store_true")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    providers = args.providers.split(",")

    from rewardctl.lm.litellm_setup import get_litellm

    get_litellm()  # import time is start-up, not throughput (the CLI lines include it)
    ideal = math.ceil(args.rows / args.concurrency) * args.latency
    server, port = start_server(args.latency)
    results: dict[str, list[tuple[float, float | None, float]]] = {}
    cli: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            data = write_data(folder, args.rows)
            specs = {p: write_spec(folder, port, provider=p) for p in providers}
            asyncio.run(floor(port, 64, 64))  # warm the server
            for repeat in range(args.repeats):
                with Timer() as t:
                    score = asyncio.run(floor(port, args.rows, args.concurrency))
                results.setdefault("raw aiohttp (floor)", []).append((t.wall, t.cpu, score))
                for provider in providers:
                    with Timer() as t:
                        score = asyncio.run(litellm_floor(port, args.rows, args.concurrency, provider))
                    results.setdefault(f"bare litellm loop, {provider}/", []).append((t.wall, t.cpu, score))
                    for count in workers:
                        with Timer() as t:
                            score, timed = run_rewardctl(specs[provider], data, folder / f"r{repeat}{provider}{count}",
                                                         args.concurrency, workers=count)
                        name = f"rewardctl {provider}/ --workers {count}"
                        results.setdefault(name, []).append((timed.wall, timed.cpu if not count else None, score))
                if not args.skip_dspy:
                    with Timer() as t:
                        score = run_dspy(port, args.rows, args.concurrency)
                    if score is not None:
                        results.setdefault("dspy Evaluate (JSONAdapter)", []).append((t.wall, t.cpu, score))
            if not args.skip_cli:
                for count in workers:
                    with Timer() as t:
                        subprocess.run([sys.executable, "-m", "rewardctl", "eval", str(specs[providers[0]]),
                                        "--data", str(data), "--concurrency", str(args.concurrency), "--no-cache",
                                        "--workers", str(count), "--out", str(folder / f"cli{count}")],
                                       check=True, stderr=subprocess.DEVNULL)
                    cli[f"--workers {count}"] = t.wall
    finally:
        server.kill()

    print(f"{args.rows} rows, concurrency {args.concurrency}, latency {args.latency * 1000:.0f} ms: "
          f"ideal {ideal:.2f} s (median of {args.repeats}; litellm imported and workers started before the clock)")
    print(f"{'client':36} {'wall s':>8} {'/ideal':>7} {'CPU ms/row':>11} {'reward':>7}")
    medians = {}
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpus = [r[1] for r in runs if r[1] is not None]
        medians[name] = wall
        cpu = f"{statistics.median(cpus) / args.rows * 1000:11.2f}" if cpus else f"{'(workers)':>11}"
        print(f"{name:36} {wall:8.2f} {wall / ideal:6.2f}x {cpu} {runs[0][2]:7.3f}")
    ours = {n: w for n, w in medians.items() if n.startswith("rewardctl")}
    for provider in providers:
        bare = medians.get(f"bare litellm loop, {provider}/")
        if bare:
            print(f"bare litellm loop, {provider}/: {bare / ideal:.2f}x the ideal (no client through litellm "
                  "does better in one process here)")
    best = min(ours, key=ours.get)
    if "dspy Evaluate (JSONAdapter)" in medians:
        for name in ours:
            print(f"DSPy Evaluate / {name}: {medians['dspy Evaluate (JSONAdapter)'] / ours[name]:.2f}x")
    print(f"fastest rewardctl run: {best}, {ours[best] / ideal:.2f}x the ideal")
    for name, wall in cli.items():
        print(f"rewardctl CLI end to end, {providers[0]}/ {name} (process start, litellm import, eval, report): {wall:.2f} s")


if __name__ == "__main__":
    main()
