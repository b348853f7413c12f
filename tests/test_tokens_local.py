"""Token-level work on the embedded model: exact sampling, teacher forcing, an unbiased KL."""

import asyncio

import numpy as np
import pytest

from rewardctl.kl import sequence_kl
from rewardctl.lm import tokens

pytestmark = pytest.mark.e2e

DEMOS_A = "country: France\ncapital: Paris\n\ncountry: Japan\ncapital: Tokyo\n\ncountry: Kenya\ncapital: Nairobi\n\n"
DEMOS_B = "country: Chile\ncapital: Santiago\n\ncountry: Egypt\ncapital: Cairo\n\ncountry: Poland\ncapital: Warsaw\n\n"
QUESTIONS = ["Germany", "Italy", "Peru", "Canada", "Spain", "Norway", "Greece", "Cuba"]


@pytest.fixture(scope="module")
def llama():
    from rewardctl.lm.local import get_engine

    # Tests call the token functions directly, one at a time; the engine's own thread is idle.
    return get_engine("gemma-3-270m").llama


def first_token_distribution(llama, prompt):
    dec = tokens._Decoder(llama)
    ids = tokens.tokenize_prompt(llama, prompt)
    try:
        logits = tokens._prime(dec, ids)
    finally:
        dec.clear()
    return np.exp(tokens._log_softmax(logits))


def test_samples_come_from_the_full_softmax(llama):
    prompt = DEMOS_A + "country: Atlantis\ncapital:"  # no right answer: a spread-out distribution
    probs = first_token_distribution(llama, prompt)
    n = 600
    samples = tokens.sample(llama, prompt, n=n, max_tokens=1, stop=[], rng=np.random.default_rng(0))
    drawn = np.array([s.ids[0] for s in samples])
    for token in np.argsort(probs)[::-1][:3]:
        p = probs[token]
        assert abs((drawn == token).mean() - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3
    order = np.argsort(probs)[::-1]
    rank = {int(t): r for r, t in enumerate(order)}
    outside = probs[order[40:]].sum()
    assert outside * n > 10  # enough mass beyond the top 40 to show up...
    assert max(rank[int(t)] for t in drawn) >= 40  # ...and it does: no top-k truncation
    for s in samples[:20]:
        assert s.logprobs[0] == pytest.approx(float(np.log(probs[s.ids[0]])), abs=1e-6)
        assert s.entropies[0] == pytest.approx(float(-(probs * np.log(np.maximum(probs, 1e-300))).sum()), abs=1e-4)


def test_identical_prompts_give_zero_kl_and_seeds_reproduce(llama):
    prompt = DEMOS_A + "country: Peru\ncapital:"
    a = tokens.sample(llama, prompt, n=4, max_tokens=6, stop=["\n"], rng=np.random.default_rng(7))
    b = tokens.sample(llama, prompt, n=4, max_tokens=6, stop=["\n"], rng=np.random.default_rng(7))
    c = tokens.sample(llama, prompt, n=4, max_tokens=6, stop=["\n"], rng=np.random.default_rng(8))
    assert [s.ids for s in a] == [s.ids for s in b] and [s.ids for s in a] != [s.ids for s in c]
    for sample, ref in zip(a, tokens.score_sampled(llama, prompt, a), strict=True):
        assert sequence_kl(sample.logprobs, ref, "k1") == 0.0


@pytest.mark.parametrize("reference,name", [(DEMOS_B, "another demo set"), ("", "zero-shot")])
def test_mean_k1_is_nonnegative_within_its_standard_error(llama, reference, name):
    rng = np.random.default_rng(0)
    k1 = []
    for q in QUESTIONS:
        policy = f"{DEMOS_A}country: {q}\ncapital:"
        samples = tokens.sample(llama, policy, n=4, max_tokens=8, stop=["\n"], rng=rng)
        refs = tokens.score_sampled(llama, f"{reference}country: {q}\ncapital:", samples)
        k1 += [sequence_kl(s.logprobs, r, "k1") for s, r in zip(samples, refs, strict=True)]
    mean, stderr = np.mean(k1), np.std(k1, ddof=1) / np.sqrt(len(k1))
    assert mean >= -stderr, f"{name}: mean k1 {mean:.3f} < -{stderr:.3f}"


def test_teacher_forced_scoring_of_a_continuation():
    from rewardctl.lm.client import LMClient
    from rewardctl.modelconfig import ModelConfig

    client = LMClient(ModelConfig())
    prompt = DEMOS_A + "country: Germany\ncapital:"
    right = asyncio.run(client.continuation_logprobs(prompt, " Berlin"))
    wrong = asyncio.run(client.continuation_logprobs(prompt, " Lyon"))
    assert "".join(t for t, _ in right) == " Berlin"
    assert all(lp <= 0 for _, lp in right + wrong)
    assert sum(lp for _, lp in right) > sum(lp for _, lp in wrong) + 2
