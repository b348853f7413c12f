"""Eval throughput and CPU per row against a loopback OpenAI-compatible server with a fixed latency.

    python bench/eval_throughput.py [--rows 2000] [--concurrency 64] [--latency 0.2] [--repeats 1]
                                    [--workers 0,auto] [--providers openai] [--bare openai,hosted_vllm,aiohttp_openai]
                                    [--skip-dspy] [--skip-cli] [--baseline REV] [--json]

Starts bench/loopback_server.py in its own process, then runs each client in a fresh process of
its own, side by side on the same rows:
  - floor:     raw aiohttp posting the same requests under a semaphore (what the server allows);
  - bare litellm loop: litellm.acompletion alone under a semaphore, per route in --bare (what any
               client through litellm pays: the routes differ, openai/ goes through the OpenAI SDK);
  - rewardctl: rewardctl's evaluate() (prompt, litellm call, parse, score, write predictions and
               the report; no response cache), per provider in --providers and per --workers
               count (auto: what eval picks for this run), litellm imported and worker processes
               started before the clock;
  - CLI:       `rewardctl eval` end to end (process start, imports, workers, eval, report);
  - dspy:      DSPy's Evaluate with a JSONAdapter Predict program at the same number of threads,
               no cache (skipped when dspy is not installed: pip install -e .[bench]).
Each line gives wall / ideal, where ideal = ceil(rows / concurrency) x latency; the CPU time per
row of the client's main process and of its whole process tree (LM workers included), both
over the timed part; the peak RSS of the whole process tree over the client's life (start-up
included, sampled every 20 ms); and the reward (every client must score 1.0: the same work was
done). The server runs on the same cores (about 0.3 ms of CPU per request).

--baseline REV runs rewardctl's clients (the library and the CLI) a second time on the code of a
git revision (a temporary worktree), in the same run, and prints each one's ratio to it: the same
machine under the same load, before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The code under test: this tree, or a --baseline revision's worktree (set for each child process).
CODE = Path(os.environ.get("REWARDCTL_BENCH_CODE") or ROOT)
sys.path.insert(0, str(CODE))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
TICK = os.sysconf("SC_CLK_TCK")

# Issue 17: (rows, concurrency, latency) -> (wall / ideal, peak RSS of the tree in MB) to stay under.
TARGETS = {(2000, 64, 0.2): (1.25, 300), (50000, 64, 0.05): (2.0, 300)}


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


# --- measuring a process tree ---------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(c) for c in handle.read().split()]
    except OSError:
        pass
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += _children(current)
    return pids


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1])
        except OSError:
            pass
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


class TreeSampler:
    """The peak RSS of a process and its descendants, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(tree(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


class Clock:
    """Wall and CPU time of this process and of ``workers`` (pids) over a block."""

    def __init__(self, workers: list[int] | None = None):
        self.workers = workers or []

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.worker_cpu = sum(cpu_s(p) for p in self.workers)
        return self

    def __exit__(self, *_) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.worker_cpu = sum(cpu_s(p) for p in self.workers) - self.worker_cpu

    def result(self, score: float, **more) -> dict:
        return {"wall": self.wall, "cpu_main": self.cpu, "cpu_tree": self.cpu + self.worker_cpu,
                "reward": score, **more}


# --- the clients (each runs in a child process: `--child JSON`) ------------------------------------

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


async def litellm_loop(port: int, rows: int, concurrency: int, provider: str) -> float:
    """litellm.acompletion alone under a semaphore: what any litellm client pays on this route."""
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


def run_rewardctl(spec_path: Path, data: Path, out: Path, concurrency: int, workers: str) -> dict:
    """evaluate() with litellm imported (workers=0) or its worker processes started (and their
    litellm imported) before the clock; ``auto``: the count eval picks for this run."""
    from rewardctl.dataset import count_lines
    from rewardctl.evaluate import EvalOptions, evaluate, lm_workers
    from rewardctl.lm.workers import WorkerPool
    from rewardctl.spec import load_spec

    spec = load_spec(str(spec_path))
    options = EvalOptions(data=str(data), out_dir=str(out), concurrency=concurrency, use_cache=False,
                          workers=None if workers == "auto" else int(workers))
    count = lm_workers(spec, options, count_lines(str(data), None))

    async def run():
        pool = WorkerPool(count) if count else None
        if pool is None:
            from rewardctl.lm.litellm_setup import get_litellm

            get_litellm()
        else:
            await pool.ready()
        try:
            with Clock([w.process.pid for w in pool._workers] if pool else []) as clock:
                report = await evaluate(spec, options, spec_path=str(spec_path), pool=pool)
        finally:
            if pool is not None:
                await pool.close()
        return report, clock

    report, clock = asyncio.run(run())
    assert report.summary.count == report.summary.ok, report.summary
    return clock.result(report.summary.reward, workers=count)


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


def child(job: dict) -> dict | None:
    """One client, in this (fresh) process."""
    kind, port, rows, concurrency = job["kind"], job["port"], job["rows"], job["concurrency"]
    if kind == "rewardctl":
        return run_rewardctl(Path(job["spec"]), Path(job["data"]), Path(job["out"]), concurrency, job["workers"])
    if kind == "dspy":
        with Clock() as clock:
            score = run_dspy(port, rows, concurrency)
        return None if score is None else clock.result(score)
    if kind == "floor":
        with Clock() as clock:
            score = asyncio.run(floor(port, rows, concurrency))
        return clock.result(score)
    from rewardctl.lm.litellm_setup import get_litellm

    get_litellm()  # import time is start-up, not throughput (the CLI lines include it)

    async def timed() -> Clock:
        # One event loop: litellm's aiohttp_openai/ route keeps its session across calls.
        await litellm_loop(port, 64, 64, job["provider"])  # litellm's first call sets up
        with Clock() as clock:
            clock.score = await litellm_loop(port, rows, concurrency, job["provider"])
        return clock

    clock = asyncio.run(timed())
    return clock.result(clock.score)


def in_child(job: dict, code: Path = ROOT) -> dict | None:
    """Run ``job`` in a fresh process on the rewardctl in ``code``; its result, with the peak RSS
    of its process tree."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]),
               REWARDCTL_BENCH_CODE=str(code))
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(job)], stdout=subprocess.PIPE,
                            text=True, env=env)
    with TreeSampler(proc.pid) as sampler:
        out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{job['kind']} failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    return None if result is None else {**result, "rss": sampler.peak}


def run_cli(spec: Path, data: Path, out: Path, concurrency: int, workers: str, code: Path = ROOT) -> dict:
    """`rewardctl eval` end to end, in its own process: wall, CPU of the whole tree, peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, "-m", "rewardctl", "eval", str(spec), "--data", str(data), "--concurrency",
               str(concurrency), "--no-cache", "--out", str(out)]
    if workers != "auto":
        command += ["--workers", workers]
    started = time.perf_counter()
    # -m puts the working folder first on sys.path: the code under test is imported.
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=code)
    with TreeSampler(proc.pid) as sampler:
        proc.wait()
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"rewardctl eval failed (exit {proc.returncode})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall": wall, "cpu_tree": cpu, "rss": sampler.peak}


@contextlib.contextmanager
def worktree(rev: str | None) -> Iterator[Path | None]:
    """A temporary git worktree of ``rev`` (None: none)."""
    if not rev:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), rev], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- the parent: every client, side by side ---------------------------------------------------------

def measure(args: argparse.Namespace, port: int, folder: Path,
            baseline: Path | None) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    data = write_data(folder, args.rows)
    specs = {p: write_spec(folder, port, provider=p) for p in args.providers}
    base = {"port": port, "rows": args.rows, "concurrency": args.concurrency}
    codes = [("", ROOT)] + ([(f" @{args.baseline}", baseline)] if baseline is not None else [])
    results: dict[str, list[dict]] = {}
    for repeat in range(args.repeats):
        results.setdefault("raw aiohttp (floor)", []).append(in_child({**base, "kind": "floor"}))
        for provider in args.bare:
            results.setdefault(f"bare litellm loop, {provider}/", []).append(
                in_child({**base, "kind": "litellm", "provider": provider}))
        for provider in args.providers:
            for workers in args.workers:
                for label, code in codes:
                    job = {**base, "kind": "rewardctl", "spec": str(specs[provider]), "data": str(data),
                           "out": str(folder / f"r{repeat}{provider}{workers}{label}"), "workers": workers}
                    results.setdefault(f"rewardctl {provider}/ --workers {workers}{label}", []).append(
                        in_child(job, code))
        if not args.skip_dspy:
            found = in_child({**base, "kind": "dspy"})
            if found is not None:
                results.setdefault("dspy Evaluate (JSONAdapter)", []).append(found)
    cli = {}
    if not args.skip_cli:
        for workers in args.workers:
            for label, code in codes:
                cli[f"{args.providers[0]}/ --workers {workers}{label}"] = run_cli(
                    specs[args.providers[0]], data, folder / f"cli{workers}{label}", args.concurrency, workers, code)
    return results, cli


def summarize(results: dict[str, list[dict]], rows: int, ideal: float) -> dict[str, dict]:
    """The median of each client's runs: wall / ideal, CPU ms per row (main process, tree), RSS."""
    out = {}
    for name, runs in results.items():
        out[name] = {"wall_s": round(statistics.median(r["wall"] for r in runs), 3),
                     "ideal_ratio": round(statistics.median(r["wall"] for r in runs) / ideal, 3),
                     "cpu_ms_per_row_main": round(statistics.median(r["cpu_main"] for r in runs) / rows * 1000, 3),
                     "cpu_ms_per_row_tree": round(statistics.median(r["cpu_tree"] for r in runs) / rows * 1000, 3),
                     "peak_rss_mb": round(max(r["rss"] for r in runs), 1),
                     "reward": min(r["reward"] for r in runs)}
        if "workers" in runs[0]:
            out[name]["workers"] = runs[0]["workers"]
    return out


def against_baseline(args: argparse.Namespace, clients: dict[str, dict], cli: dict[str, dict]) -> dict[str, dict]:
    """Each rewardctl client's ratio (this tree / --baseline) of wall, CPU per row and RSS."""
    if not args.baseline:
        return {}
    suffix = f" @{args.baseline}"
    out = {}
    for name, c in clients.items():
        old = clients.get(name + suffix)
        if old is not None:
            out[name] = {"wall": c["wall_s"] / old["wall_s"],
                         "cpu_main": c["cpu_ms_per_row_main"] / max(old["cpu_ms_per_row_main"], 1e-9),
                         "cpu_tree": c["cpu_ms_per_row_tree"] / max(old["cpu_ms_per_row_tree"], 1e-9),
                         "rss": c["peak_rss_mb"] / old["peak_rss_mb"]}
    for name, c in cli.items():
        old = cli.get(name + suffix)
        if old is not None:
            out[f"CLI {name}"] = {"wall": c["wall"] / old["wall"], "cpu_tree": c["cpu_tree"] / max(old["cpu_tree"], 1e-9),
                                  "rss": c["rss"] / old["rss"]}
    return {n: {k: round(v, 3) for k, v in r.items()} for n, r in out.items()}


def print_table(args: argparse.Namespace, ideal: float, clients: dict[str, dict], cli: dict[str, dict]) -> None:
    print(f"{args.rows} rows, concurrency {args.concurrency}, latency {args.latency * 1000:.0f} ms: ideal {ideal:.2f} s "
          f"(median of {args.repeats}; each client in its own process, litellm imported and workers started "
          f"before the clock; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"{'client':44} {'wall s':>8} {'/ideal':>7} {'CPU ms/row':>11} {'tree ms/row':>12} {'RSS MB':>7} {'reward':>7}")
    for name, c in clients.items():
        label = name + (f" (= {c['workers']})" if name.endswith("auto") else "")
        print(f"{label:44} {c['wall_s']:8.2f} {c['ideal_ratio']:6.2f}x {c['cpu_ms_per_row_main']:11.2f} "
              f"{c['cpu_ms_per_row_tree']:12.2f} {c['peak_rss_mb']:7.0f} {c['reward']:7.3f}")
    floor_ms = clients["raw aiohttp (floor)"]["cpu_ms_per_row_main"]
    ours = {n: c for n, c in clients.items() if n.startswith("rewardctl") and " @" not in n}
    bare = {n: c for n, c in clients.items() if n.startswith("bare litellm")}
    for name, c in ours.items():
        versus = ", ".join(f"{b.removeprefix('bare litellm loop, ')} {c['cpu_ms_per_row_tree'] / v['cpu_ms_per_row_main']:.2f}x"
                           for b, v in bare.items())
        print(f"{name}: CPU per row (tree) / the floor's {c['cpu_ms_per_row_tree'] / floor_ms:.1f}x; "
              f"/ the bare litellm loop's: {versus or '-'}")
    target = TARGETS.get((args.rows, args.concurrency, args.latency))
    if target is not None:
        best = min(ours, key=lambda n: ours[n]["ideal_ratio"])
        print(f"issue 17's targets here: within {target[0]:g}x of the ideal, under {target[1]} MB (the tree), "
              f"under 1.5 ms of CPU per row in the main process; fastest rewardctl run: {best}, "
              f"{ours[best]['ideal_ratio']:.2f}x, {ours[best]['peak_rss_mb']:.0f} MB, "
              f"{ours[best]['cpu_ms_per_row_main']:.2f} ms")
    for name, c in cli.items():
        print(f"rewardctl CLI end to end, {name} (process start, imports, workers, eval, report): {c['wall']:.2f} s, "
              f"{c['wall'] / ideal:.2f}x the ideal, CPU {c['cpu_tree'] / args.rows * 1000:.2f} ms per row over the "
              f"tree, peak RSS {c['rss']:.0f} MB")
    for name, r in against_baseline(args, clients, cli).items():
        main = f", CPU per row (main) {r['cpu_main']:.2f}x" if "cpu_main" in r else ""
        print(f"{name} / the same @{args.baseline}: wall {r['wall']:.2f}x{main}, CPU per row (tree) "
              f"{r['cpu_tree']:.2f}x, peak RSS {r['rss']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each client; the median is shown")
    parser.add_argument("--workers", default="0,auto",
                        help="rewardctl runs: in-process (0), with N worker processes, or auto (eval's choice)")
    parser.add_argument("--providers", default="openai", help="litellm providers rewardctl names the server by")
    parser.add_argument("--bare", default="openai,hosted_vllm,aiohttp_openai",
                        help="litellm routes timed alone (bare litellm.acompletion loops); '' for none")
    parser.add_argument("--skip-dspy", action="store_true")
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--baseline", default="", metavar="REV",
                        help="also run rewardctl's clients on this git revision's code, side by side (e.g. HEAD)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    args.workers = args.workers.split(",")
    args.providers = args.providers.split(",")
    args.bare = [b for b in args.bare.split(",") if b]
    ideal = math.ceil(args.rows / args.concurrency) * args.latency
    server, port = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(floor(port, 64, 64))  # warm the server
            with worktree(args.baseline) as baseline:
                results, cli = measure(args, port, Path(tmp), baseline)
    finally:
        server.kill()
    clients = summarize(results, args.rows, ideal)
    if args.json:
        print(json.dumps({"rows": args.rows, "concurrency": args.concurrency, "latency_s": args.latency,
                          "ideal_s": ideal, "load_average": os.getloadavg()[0], "clients": clients,
                          "cli": {n: {"wall_s": round(c["wall"], 3), "ideal_ratio": round(c["wall"] / ideal, 3),
                                      "cpu_ms_per_row_tree": round(c["cpu_tree"] / args.rows * 1000, 3),
                                      "peak_rss_mb": round(c["rss"], 1)} for n, c in cli.items()},
                          "against_baseline": against_baseline(args, clients, cli)},
                         indent=1))
    else:
        print_table(args, ideal, clients, cli)


if __name__ == "__main__":
    main()
