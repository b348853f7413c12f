"""Sharding a dataset across CI jobs: ``eval --shard K/N`` evaluates the K-th of N shards, and
``rewardctl merge`` (rewardctl.merge) joins them."""

from __future__ import annotations

from rewardctl.errors import InputError

Shard = tuple[int, int]  # (K, N), 1-based K


def parse_shard(value: str | None) -> Shard | None:
    """'2/4' -> (2, 4): the second of four shards (1-based, as CI matrices count jobs)."""
    if value is None:
        return None
    try:
        k_text, n_text = str(value).split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise InputError("expected K/N, for example 2/4", field="--shard") from None
    if n < 1 or not 1 <= k <= n:
        raise InputError(f"expected K/N with 1 <= K <= N, got {value}", field="--shard")
    return k, n


def in_shard(index: int, shard: Shard | None) -> bool:
    """Rows are dealt round-robin by their index in the dataset, so every shard gets a similar
    mix of rows (an ordered dataset split in contiguous blocks would not)."""
    return shard is None or index % shard[1] == shard[0] - 1
