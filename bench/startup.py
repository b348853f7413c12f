"""Start-up: `rewardctl --help`, `validate` and a fully cached eval, each in fresh processes.

    python bench/startup.py [--repeats 7] [--rows 60] [--recipe recipes/capitals.yaml]
                            [--data datasets/capitals/test.jsonl] [--cache-dir DIR] [--compiled]

Times, best and median of --repeats fresh processes (the `rewardctl` console script beside this
Python), each command beside its target (issue 17): `rewardctl --help` (1 s), `rewardctl validate
RECIPE` (1 s), and `rewardctl eval RECIPE --data DATA --limit ROWS --out DIR --cache-dir CACHE`
with every row in the response cache (1.5 s; its report.json, report.md and report.html written,
the summary printed). The cache is prepared first by one untimed eval of the same rows: with an
empty --cache-dir (default: a temporary one) that runs the recipe's model (the embedded model for
capitals: about a minute for 60 rows); a timed run that made a request fails the bench.

Without --compiled, the children run as this environment does: with PYTHONDONTWRITEBYTECODE set
and no bytecode cached for rewardctl, each one compiles the rewardctl modules it imports. With
--compiled they run as an installed wheel does: bytecode is written once (an untimed warm-up run
of each command, into a temporary PYTHONPYCACHEPREFIX) and read by every timed run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"--help": 1.0, "validate": 1.0, "eval (cached)": 1.5}


def rewardctl() -> list[str]:
    """The console script users run; ``python -m rewardctl`` where there is none."""
    script = Path(sys.executable).with_name("rewardctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rewardctl"]


def run(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, cwd=ROOT)
    return time.perf_counter() - started, result


def check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode not in (0, 1):  # 1: a threshold not met, still a complete run
        sys.exit(f"{what} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")


def cached_rows(out: Path) -> tuple[int, int]:
    usage = json.loads((out / "report.json").read_text())["usage"]
    return usage["requests"], usage["cached_rows"]


def child_env(compiled: bool, pycache: Path) -> dict[str, str]:
    env = dict(os.environ)
    if compiled:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per command; best and median printed")
    parser.add_argument("--rows", type=int, default=60, help="rows of the cached eval (--limit)")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "capitals.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "datasets" / "capitals" / "test.jsonl")
    parser.add_argument("--cache-dir", type=Path, help="response cache to prepare and read (kept) "
                        "[default: a temporary one, prepared by running the model]")
    parser.add_argument("--compiled", action="store_true",
                        help="children read cached bytecode (as an installed wheel does)")
    args = parser.parse_args()

    cli = rewardctl()
    with tempfile.TemporaryDirectory(prefix="rewardctl-startup-") as tmp:
        work = Path(tmp)
        cache = args.cache_dir or work / "cache"
        out = work / "out"
        env = child_env(args.compiled, work / "pycache")
        commands = {
            "--help": [*cli, "--help"],
            "validate": [*cli, "validate", str(args.recipe)],
            "eval (cached)": [*cli, "eval", str(args.recipe), "--data", str(args.data), "--limit", str(args.rows),
                              "--out", str(out), "--cache-dir", str(cache)],
        }
        seconds, result = run(commands["eval (cached)"], env)  # fills the cache (and any bytecode)
        check(result, "preparing the cache")
        requests, cached = cached_rows(out)
        print(f"prepared the cache in {seconds:.1f} s: {requests} requests, {cached} rows already cached")
        if args.compiled:
            for name in ("--help", "validate"):
                check(run(commands[name], env)[1], name)
        load = os.getloadavg()[0]
        print(f"{' '.join(cli)} | {os.cpu_count()} CPUs, load {load:.2f} at the start | "
              f"bytecode: {'cached (--compiled)' if args.compiled else describe_bytecode()}")
        print(f"{'command':<16}{'best':>9}{'median':>9}{'target':>9}{'best/target':>13}  runs (s)")
        for name, argv in commands.items():
            times = []
            for _ in range(args.repeats):
                shutil.rmtree(out, ignore_errors=True)  # each eval writes a fresh --out
                seconds, result = run(argv, env)
                check(result, name)
                times.append(seconds)
            label = name
            if name == "eval (cached)":
                requests, cached = cached_rows(out)
                if requests:
                    sys.exit(f"the timed eval made {requests} requests: the cache was not complete")
                label = f"eval ({cached} cached)"
            best, median, target = min(times), statistics.median(times), TARGETS[name]
            print(f"{label:<16}{best:>8.2f}s{median:>8.2f}s{target:>8.2f}s{best / target:>12.2f}x  "
                  f"{', '.join(f'{t:.2f}' for t in times)}")
        print(f"load {os.getloadavg()[0]:.2f} at the end")


def describe_bytecode() -> str:
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return "PYTHONDONTWRITEBYTECODE set (rewardctl compiled in every run unless its .pyc exist)"
    return "written and read as Python does by default"


if __name__ == "__main__":
    main()
