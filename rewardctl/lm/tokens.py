"""Token-level work on the embedded model: teacher-forced scoring and exact sampling for KL.

Two procedures, each used identically for a policy and its reference:

- ``score_continuation``: the per-token log-probabilities of a given continuation under a prompt,
  by evaluating prompt and continuation once and reading logits only at the continuation's
  positions (``llama_get_logits_ith``). llama-cpp-python's ``logits_all`` would keep logits for
  every position (an n_ctx x 262,144 buffer) and its ``logprobs`` option sorts the vocabulary in
  Python per token (30 s for 64 tokens).
- ``sample`` and ``score_sampled``: token ids drawn from the model's full softmax at temperature 1
  (no top-k, top-p, min-p, repetition penalty or minimum length), by our own seeded generator,
  with each drawn id's log-probability and the distribution's entropy; then the same ids scored
  under another prompt by the same one-token-at-a-time procedure. A KL estimated on these is
  unbiased: the ids scored are the ids sampled, from exactly the distribution that is scored.
  (Sampling with create_completion and re-tokenizing its text gave a mean k1 of -2.5 nats here.)

All functions take a loaded ``llama_cpp.Llama`` and must run on the engine's thread under its lock.
They leave llama-cpp-python's own prefix cache marked empty, so its next completion starts clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Sample:
    ids: list[int]
    logprobs: list[float]  # log p(id) under the prompt that sampled it
    entropies: list[float]  # entropy (nats) of each step's distribution
    text: str
    finished: str  # "eog", "stop" or "length"
    ref_logprobs: list[float] = field(default_factory=list)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max()
    return x - np.log(np.exp(x).sum())


class _Decoder:
    """Decodes tokens into sequence 0 of a llama.cpp context, reading the logits asked for."""

    def __init__(self, llama: Any):
        # llama_cpp loads a native library: only the embedded model needs it.
        import llama_cpp

        self.llama = llama
        self.lib = llama_cpp
        self.ctx = llama._ctx
        self.batch = llama._batch
        self.n_batch = llama.n_batch
        self.n_vocab = llama.n_vocab()
        self.vocab = llama_cpp.llama_model_get_vocab(llama._model.model)

    def clear(self) -> None:
        self.ctx.kv_cache_clear()
        self.llama.n_tokens = 0  # llama-cpp-python's prefix cache no longer matches the context

    def truncate(self, n: int) -> bool:
        """Drop positions from n on; False when the cache cannot do that partially."""
        return bool(self.ctx.kv_cache_seq_rm(0, n, -1))

    def decode(self, tokens: list[int], start: int, want: set[int]) -> dict[int, np.ndarray]:
        """Decode ``tokens`` at positions start..; returns logits for the indices in ``want``."""
        out: dict[int, np.ndarray] = {}
        for offset in range(0, len(tokens), self.n_batch):
            chunk = tokens[offset : offset + self.n_batch]
            b = self.batch.batch
            b.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                b.token[i] = token
                b.pos[i] = start + offset + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = (offset + i) in want
            self.ctx.decode(self.batch)
            for i in range(len(chunk)):
                if (offset + i) in want:
                    pointer = self.lib.llama_get_logits_ith(self.ctx.ctx, i)
                    out[offset + i] = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
        return out

    def is_eog(self, token: int) -> bool:
        return bool(self.lib.llama_vocab_is_eog(self.vocab, token))


def tokenize_prompt(llama: Any, prompt: str) -> list[int]:
    return llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)


def tokenize_continuation(llama: Any, text: str) -> list[int]:
    return llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)


def score_continuation(llama: Any, prompt: str, continuation: list[int]) -> list[float]:
    """log p(continuation[j] | prompt, continuation[:j]) for each j, in one evaluation."""
    if not continuation:
        return []
    dec = _Decoder(llama)
    prompt_ids = tokenize_prompt(llama, prompt)
    n = len(prompt_ids)
    if n + len(continuation) > llama.n_ctx():
        raise ValueError(f"prompt and continuation have {n + len(continuation)} tokens; the context holds {llama.n_ctx()}")
    dec.clear()
    try:
        logits = dec.decode(prompt_ids + continuation, 0, set(range(n - 1, n + len(continuation) - 1)))
    finally:
        dec.clear()
    return [float(_log_softmax(logits[n - 1 + j])[token]) for j, token in enumerate(continuation)]


def _prime(dec: _Decoder, prompt_ids: list[int]) -> np.ndarray:
    dec.clear()
    return dec.decode(prompt_ids, 0, {len(prompt_ids) - 1})[len(prompt_ids) - 1]


def _rewind(dec: _Decoder, prompt_ids: list[int], first: np.ndarray) -> np.ndarray:
    if not dec.truncate(len(prompt_ids)):
        return _prime(dec, prompt_ids)
    return first


def sample(llama: Any, prompt: str, *, n: int, max_tokens: int, stop: list[str],
           rng: np.random.Generator) -> list[Sample]:
    """``n`` continuations drawn token by token from the full softmax at temperature 1."""
    dec = _Decoder(llama)
    prompt_ids = tokenize_prompt(llama, prompt)
    if len(prompt_ids) + max_tokens > llama.n_ctx():
        raise ValueError(f"prompt has {len(prompt_ids)} tokens; the context holds {llama.n_ctx()}")
    samples = []
    try:
        first = _prime(dec, prompt_ids)
        for s in range(n):
            logits = first if s == 0 else _rewind(dec, prompt_ids, first)
            ids: list[int] = []
            logprobs: list[float] = []
            entropies: list[float] = []
            finished = "length"
            text = ""
            for t in range(max_tokens):
                logp = _log_softmax(logits)
                probs = np.exp(logp)
                cdf = np.cumsum(probs)
                token = int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))
                ids.append(token)
                logprobs.append(float(logp[token]))
                entropies.append(float(-(probs * logp).sum()))
                if dec.is_eog(token):
                    finished = "eog"
                    break
                text = llama.detokenize(ids).decode("utf-8", errors="ignore")
                if any(s_ in text for s_ in stop):
                    finished = "stop"
                    break
                if t + 1 < max_tokens:
                    logits = dec.decode([token], len(prompt_ids) + t, {0})[0]
            for s_ in stop:
                if s_ in text:
                    text = text[: text.index(s_)]
            samples.append(Sample(ids, logprobs, entropies, text, finished))
    finally:
        dec.clear()
    return samples


def score_sampled(llama: Any, prompt: str, samples: list[Sample]) -> list[list[float]]:
    """The log-probability of each sampled id under ``prompt``, by the procedure that sampled them
    (prompt decoded once, then one token at a time)."""
    dec = _Decoder(llama)
    prompt_ids = tokenize_prompt(llama, prompt)
    longest = max((len(s.ids) for s in samples), default=0)
    if len(prompt_ids) + longest > llama.n_ctx():
        raise ValueError(f"prompt has {len(prompt_ids)} tokens; the context holds {llama.n_ctx()}")
    out = []
    try:
        first = _prime(dec, prompt_ids)
        for k, sample_ in enumerate(samples):
            logits = first if k == 0 else _rewind(dec, prompt_ids, first)
            scores = []
            for t, token in enumerate(sample_.ids):
                scores.append(float(_log_softmax(logits)[token]))
                if t + 1 < len(sample_.ids):
                    logits = dec.decode([token], len(prompt_ids) + t, {0})[0]
            out.append(scores)
    finally:
        dec.clear()
    return out
