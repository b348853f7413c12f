"""Token-overlap rewards: f1_score, precision, recall and fbeta.

Leaves are paired by key path (``answer``, ``steps[0].text``), not by position, so a missing or
extra field cannot shift every later comparison. Per leaf: precision = common / predicted tokens,
recall = common / true tokens (multiset intersection, as SQuAD); the reward is the mean over the
union of leaf paths. Two empty leaves agree (1.0); one empty leaf against a non-empty one is 0.0.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Literal

from pydantic import Field

from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig
from rewardctl.rewards.leaves import paired_leaves

_SYNALINKS_STOPWORDS = re.compile(r"\b(a|an|the|of|is)\b", re.UNICODE)
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_ASCII_PUNCT = str.maketrans("", "", string.punctuation)


def tokens_synalinks(text: str) -> list[str]:
    """Synalinks: lowercase, drop a/an/the/of/is, drop ASCII punctuation, split on whitespace."""
    text = _SYNALINKS_STOPWORDS.sub(" ", text.lower())
    return text.translate(_ASCII_PUNCT).split()


def tokens_squad(text: str) -> list[str]:
    """SQuAD: lowercase, Unicode NFD, drop punctuation, drop a/an/the, split on whitespace."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(ch for ch in text if ch not in _SQUAD_PUNCT)
    return _SQUAD_ARTICLES.sub(" ", text).split()


_SQUAD_PUNCT = set(string.punctuation)
TOKENIZERS = {"synalinks": tokens_synalinks, "squad": tokens_squad, "none": str.split}


def overlap_counts(true_tokens: list[str], pred_tokens: list[str]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) with multiset intersection."""
    if len(true_tokens) == 1 and len(pred_tokens) == 1:  # the common short-answer case
        common = 1 if true_tokens[0] == pred_tokens[0] else 0
    else:
        common = sum((Counter(true_tokens) & Counter(pred_tokens)).values())
    return common, len(pred_tokens) - common, len(true_tokens) - common


def fbeta_from_counts(tp: int, fp: int, fn: int, beta: float, kind: str) -> float:
    if tp + fp == 0 and tp + fn == 0:
        return 1.0  # both empty: nothing to disagree on
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    if kind == "precision":
        return precision
    if kind == "recall":
        return recall
    if precision == 0.0 and recall == 0.0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall)


class TokenOverlapConfig(RewardConfig):
    text_normalization: Literal["synalinks", "squad", "none"] = Field(
        "synalinks",
        description="How text is normalized and split into tokens: 'synalinks' (lowercase, drop "
        "a/an/the/of/is and ASCII punctuation), 'squad' (lowercase, NFD, drop punctuation and "
        "a/an/the), 'none' (split on whitespace).",
    )


class _TokenOverlap(Reward):
    kind = "f1"

    def value_range(self) -> tuple[float, float] | None:
        return (0.0, 1.0)

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        self._tokenize = TOKENIZERS[self.config.text_normalization]
        self._beta = float(getattr(self.config, "beta", 1.0))

    def field_counts(self, y_true: JSON, y_pred: JSON) -> dict[str, tuple[int, int, int]]:
        """Per leaf path: (tp, fp, fn). Also used by the corpus-level field F1 metric."""
        return {path: overlap_counts(self._tokenize(t), self._tokenize(p))
                for path, t, p in paired_leaves(y_true, y_pred)}

    def compute(self, y_true: JSON, y_pred: JSON) -> float:
        counts = self.field_counts(y_true, y_pred)
        if not counts:
            return 1.0
        return sum(fbeta_from_counts(*c, self._beta, self.kind) for c in counts.values()) / len(counts)


class F1Config(TokenOverlapConfig):
    type: Literal["f1_score"] = "f1_score"


class PrecisionConfig(TokenOverlapConfig):
    type: Literal["precision"] = "precision"


class RecallConfig(TokenOverlapConfig):
    type: Literal["recall"] = "recall"


class FBetaConfig(TokenOverlapConfig):
    type: Literal["fbeta"] = "fbeta"
    beta: float = Field(1.0, gt=0, description="Weight of recall relative to precision.")


@REWARDS.register
class F1Score(_TokenOverlap):
    config_model = F1Config
    kind = "f1"


@REWARDS.register
class Precision(_TokenOverlap):
    config_model = PrecisionConfig
    kind = "precision"


@REWARDS.register
class Recall(_TokenOverlap):
    config_model = RecallConfig
    kind = "recall"


@REWARDS.register
class FBeta(_TokenOverlap):
    config_model = FBetaConfig
    kind = "fbeta"
