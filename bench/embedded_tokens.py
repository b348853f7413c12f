"""The embedded model: eval's generated tokens/s against llama-cpp-python called directly.

    python bench/embedded_tokens.py [--recipe recipes/continents_cot.yaml] [--rows 30] [--repeats 3]

Side by side in one process, on the same loaded model:
  - rewardctl: evaluate() over the recipe's test rows, no response cache (prompting, the litellm
    custom provider, parsing, scoring and writing included). Every llama.cpp completion it makes is
    recorded with its exact arguments;
  - direct:    the same completions replayed by calling Llama.create_completion directly, one after
    another, as a hand-written script would.
Both generate exactly the same tokens (greedy decoding), so the ratio of their tokens/s is the
share of the model's speed that eval delivers. The model is loaded before either clock starts.
Alternating runs, median of --repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "continents_cot.yaml"))
    parser.add_argument("--data", default=None, help="default: datasets/<name>/test.jsonl (or <name before _>)")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from rewardctl.evaluate import EvalOptions, evaluate
    from rewardctl.lm.litellm_setup import get_litellm
    from rewardctl.lm.local import get_engine
    from rewardctl.spec import load_spec

    spec = load_spec(args.recipe)
    data = args.data or next(str(path) for name in (spec.name, spec.name.split("_")[0])
                             if (path := ROOT / "datasets" / name / "test.jsonl").exists())
    get_litellm()
    engine = get_engine(spec.model.resolved_name.removeprefix("local/"))
    llama = engine.llama  # loaded now, outside both clocks
    recorded: list[tuple[str, dict]] = []
    original = llama.create_completion

    def recording(prompt, **kwargs):
        recorded.append((prompt, dict(kwargs)))
        return original(prompt, **kwargs)

    def run_rewardctl() -> tuple[float, int]:
        recorded.clear()
        llama.create_completion = recording
        try:
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                report = asyncio.run(evaluate(spec, EvalOptions(data=data, out_dir=tmp, limit=args.rows,
                                                                use_cache=False)))
                wall = time.perf_counter() - started
        finally:
            llama.create_completion = original
        return wall, report.usage.completion_tokens, report.summary.reward

    def run_direct(calls) -> tuple[float, int]:
        started = time.perf_counter()
        tokens = 0
        for prompt, kwargs in calls:
            tokens += original(prompt, **kwargs)["usage"]["completion_tokens"]
        return time.perf_counter() - started, tokens

    run_rewardctl()  # warm-up: grammars compiled, caches filled, as on any run after the first
    ours, direct = [], []
    for _ in range(args.repeats):
        wall, tokens, reward = run_rewardctl()
        calls = list(recorded)
        ours.append(tokens / wall)
        d_wall, d_tokens = run_direct(calls)
        assert d_tokens == tokens, (d_tokens, tokens)
        direct.append(d_tokens / d_wall)
    ours_tps, direct_tps = statistics.median(ours), statistics.median(direct)
    print(f"{spec.name}: {args.rows} rows, {len(calls)} completions, {tokens} generated tokens per run, "
          f"reward {reward:.3f}, {engine.n_threads} threads (median of {args.repeats})")
    print(f"  direct llama-cpp-python  {direct_tps:8.1f} tok/s")
    print(f"  rewardctl eval           {ours_tps:8.1f} tok/s")
    print(f"  ratio                    {ours_tps / direct_tps:8.2f}x")


if __name__ == "__main__":
    main()
