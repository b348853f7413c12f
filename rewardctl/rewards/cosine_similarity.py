"""cosine_similarity: embedding similarity of each leaf, (cos + 1) / 2, averaged over leaves.

Leaves are paired by key path; two empty leaves agree (1.0), an empty leaf against a non-empty
one scores 0.0. All texts of a batch are embedded together, and embeddings are cached by text,
so references repeated across epochs or rows are embedded once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from rewardctl.embeddings import get_embedder
from rewardctl.errors import InputError
from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig
from rewardctl.rewards.leaves import paired_leaves


class CosineSimilarityConfig(RewardConfig):
    type: Literal["cosine_similarity"] = "cosine_similarity"
    backend: Literal["sentence-transformers", "litellm"] = Field(
        "sentence-transformers", description="In-process sentence-transformers, or a litellm embedding model.")
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers: 'all-MiniLM-L6-v2' (embedded, offline) or a local "
        "model folder; litellm: an embedding model string such as 'openai/text-embedding-3-small'.")
    batch_size: int = Field(64, ge=1)
    api_base: str | None = None
    api_key_env: str | None = Field(None, description="litellm backend: environment variable holding the key.")


@REWARDS.register
class CosineSimilarity(Reward):
    config_model = CosineSimilarityConfig

    def value_range(self) -> tuple[float, float] | None:
        return (0.0, 1.0)

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        cfg = self.config
        api_key = None
        if cfg.api_key_env:
            api_key = os.environ.get(cfg.api_key_env)
            if not api_key:
                raise InputError(f"the environment variable {cfg.api_key_env} is not set",
                                 field=f"reward '{self.name}'.api_key_env")
        self.embedder = get_embedder(cfg.backend, cfg.model, base_dir=self.context.base_dir,
                                     batch_size=cfg.batch_size, api_base=cfg.api_base, api_key=api_key)

    async def compute_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON],
                            inputs: Sequence[JSON | None]) -> list[float]:
        rows = [paired_leaves(t, p) for t, p in zip(y_trues, y_preds, strict=True)]
        texts = [text for row in rows for _, t, p in row for text in (t, p) if t and p]
        vectors = await self.embedder.embed(texts) if texts else None
        index = {text: i for i, text in enumerate(texts)}
        scores = []
        for row in rows:
            per_leaf = []
            for _, t, p in row:
                if not t and not p:
                    per_leaf.append(1.0)
                elif not t or not p:
                    per_leaf.append(0.0)
                else:
                    cos = float(vectors[index[t]] @ vectors[index[p]])
                    per_leaf.append((max(-1.0, min(1.0, cos)) + 1.0) / 2.0)
            scores.append(sum(per_leaf) / len(per_leaf) if per_leaf else 1.0)
        return scores
