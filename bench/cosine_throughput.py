"""cosine_similarity against sentence-transformers' encode called directly, over several epochs.

    python bench/cosine_throughput.py [--rows 4000] [--epochs 3] [--repeats 3]

The workload of an optimizer or of repeated evals: the same references (y_true) every epoch, new
predictions each epoch, every text distinct within an epoch. Side by side, on one loaded model:
  - direct:    a well-written script: per epoch, SentenceTransformer.encode on all references and
               all predictions (batched, normalized), then a row-wise dot product;
  - rewardctl: the cosine_similarity reward through rewardctl's Scorer in batches of 256 rows (what
               `rewardctl score` and eval do), its embedding cache kept across epochs.
Prints rows/s of each and their ratio, for the first epoch (nothing cached: batching alone) and
over all epochs (references embedded once). Alternating runs, median of --repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ["paris", "london", "capital", "river", "mountain", "city", "north", "south", "old", "new", "great", "small", "blue", "red", "green", "house", "market", "bridge", "station", "tower", "harbor", "island", "valley", "forest", "lake", "road"]


def sentence(rng: random.Random, n: int, tag: str) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + f" {tag}"


def workload(rows: int, epochs: int, seed: int):
    rng = random.Random(seed)
    trues = [{"answer": sentence(rng, 10, f"r{i}")} for i in range(rows)]
    preds = [[{"answer": sentence(rng, 10, f"p{e}.{i}")} for i in range(rows)] for e in range(epochs)]
    return trues, preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from rewardctl.scoring import Scorer

    trues, preds = workload(args.rows, args.epochs, args.seed)
    embedder = Scorer([{"type": "cosine_similarity"}]).rewards[0].embedder  # the very model rewardctl uses
    model = embedder._load()
    model.encode(["warm up"], show_progress_bar=False)

    def direct() -> list[float]:
        walls = []
        for epoch in range(args.epochs):
            started = time.perf_counter()
            a = model.encode([t["answer"] for t in trues], batch_size=64, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
            b = model.encode([p["answer"] for p in preds[epoch]], batch_size=64, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
            scores = (np.clip(np.einsum("ij,ij->i", a, b), -1, 1) + 1) / 2
            assert len(scores) == args.rows
            walls.append(time.perf_counter() - started)
        return walls

    def ours() -> list[float]:
        embedder._cache.clear()  # each run starts cold
        scorer = Scorer([{"type": "cosine_similarity"}])
        assert scorer.rewards[0].embedder is embedder
        walls = []

        async def epoch_run(epoch: int) -> None:
            for start in range(0, args.rows, 256):
                await scorer.score(trues[start:start + 256], preds[epoch][start:start + 256])

        for epoch in range(args.epochs):
            started = time.perf_counter()
            asyncio.run(epoch_run(epoch))
            walls.append(time.perf_counter() - started)
        return walls

    d_first, d_all, o_first, o_all = [], [], [], []
    for _ in range(args.repeats):
        walls = direct()
        d_first.append(args.rows / walls[0])
        d_all.append(args.rows * args.epochs / sum(walls))
        walls = ours()
        o_first.append(args.rows / walls[0])
        o_all.append(args.rows * args.epochs / sum(walls))
    med = statistics.median
    print(f"{args.rows} rows x {args.epochs} epochs, all-MiniLM-L6-v2 on CPU (median of {args.repeats})")
    print(f"{'':26} {'direct rows/s':>14} {'rewardctl rows/s':>17} {'ratio':>7}")
    print(f"{'first epoch (cold)':26} {med(d_first):14,.0f} {med(o_first):17,.0f} {med(o_first) / med(d_first):6.2f}x")
    print(f"{'all epochs':26} {med(d_all):14,.0f} {med(o_all):17,.0f} {med(o_all) / med(d_all):6.2f}x")


if __name__ == "__main__":
    main()
