"""The reflective optimizer (GEPA-style LM-proposed instructions): the reflection prompt and its
feedback, parsing the reply, the Pareto front, seeding, state round trip, the budget, failures,
and the CLI end to end on a deterministic test model (tests/fakelm.py's instruction-hungry model
gets better with every "!" in its instruction, and its reflection adds one)."""

import asyncio
import json
import random
from collections import Counter
from types import SimpleNamespace

import fakelm
import pytest
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.datamodel import FieldSpec
from rewardctl.errors import RunError
from rewardctl.lm.cache import ResponseCache
from rewardctl.lm.client import Completion, LMClient, ProviderError
from rewardctl.modelconfig import ModelConfig
from rewardctl.optimizers import OPTIMIZERS, Observation
from rewardctl.optimizers.reflective import (
    Reflective,
    ReflectiveConfig,
    field_feedback,
    pareto_front,
    parse_instruction,
    pick_from_front,
    reflection_request,
    row_key,
)
from rewardctl.state import Example, ProgramState

from conftest import write, write_quiz

cli = CliRunner()

OUTPUTS = {"answer": FieldSpec(description="The answer, a number.")}
SPEC = SimpleNamespace(description="Add two numbers.", inputs={"q": FieldSpec(description="Two numbers.")},
                       outputs=OUTPUTS, model=ModelConfig(name="fakelm/x", prompt_format="fields"))
PARENT = ProgramState("Add them.", [Example(input={"q": "1 2"}, output={"answer": "3"})])


def obs(q, answer, pred, reward, **extra):
    return Observation({"q": q}, {"answer": answer}, pred, reward, scores={"em": reward}, **extra)


BATCH = [obs("3 4", "7", {"answer": "9"}, 0.0), obs("1 1", "2", {}, 0.0),
         obs("2 2", "4", None, None, error="unparseable reply: no 'answer:' line", raw="four, I think"),
         obs("5 5", "10", {"answer": "10"}, 1.0)]


class FakeClient:
    """Records each reflection request; answers with ``text`` (or raises ``error``)."""

    def __init__(self, text="```\nAdd the two numbers; answer with digits only.\n```", error=None):
        self.text, self.error = text, error
        self.requests, self.cache, self.connection_failures = [], None, 0

    async def complete(self, request, **kwargs):
        self.requests.append((request, kwargs))
        if self.error is not None:
            raise self.error
        return Completion(self.text, "stop", 10, 5, cached=False, latency_s=0.0)


class FakeRunner:
    """The loop's runner as an optimizer sees it; a row's reward is ``score(state, row)``."""

    def __init__(self, client=None, score=None, spec=SPEC):
        self.spec, self.client, self.calls, self.score = spec, client or FakeClient(), 0, score
        self.ran = []

    async def run(self, state, rows):
        self.ran.append((state.instructions, len(rows)))
        self.calls += len(rows)
        return [(None, SimpleNamespace(reward=self.score(state, row))) for row in rows]


def rows(n):
    return [SimpleNamespace(inputs={"q": f"q{i}"}, y_true={"answer": f"a{i}"}) for i in range(n)]


def propose(opt, runner, seed=0, parent=PARENT):
    return asyncio.run(opt.propose_with_model(runner, parent, random.Random(seed)))


# --- the prompt ---

def test_the_reflection_prompt_holds_the_task_the_instruction_and_per_field_feedback():
    chat = reflection_request(SPEC, "Add them.", BATCH, completion=False)
    assert [m["role"] for m in chat.messages] == ["system", "user"] and not chat.completion
    text = chat.messages[1]["content"]
    for part in ("Task: Add two numbers.", "- `q` (string): Two numbers.", "- `answer` (string): The answer, a number.",
                 "Current instruction: Add them.", 'Inputs: q: "3 4"', 'Output: answer: "9"', 'Expected: answer: "7"',
                 "Reward: 0.00 (em=0.00)", 'field `answer`: expected "7", got "9"',
                 'field `answer`: missing (expected "2")', 'unparseable reply: "four, I think"',
                 "Reward: not scored", "field `answer`: correct", "between ``` fences"):
        assert part in text, part
    completion = reflection_request(SPEC, None, BATCH[:1], completion=True)
    assert completion.completion and completion.stop == ["\n\n"] and len(completion.messages) == 1
    prompt = completion.messages[0]["content"]
    assert "Current instruction: (none)" in prompt and prompt.endswith("New instruction:")
    assert 'field `answer`: expected "7", got "9"' in prompt


def test_feedback_says_when_only_case_or_spacing_differ():
    note = field_feedback(obs("Fe", "Iron", {"answer": " iron"}, 0.0), {"answer": FieldSpec()})
    assert note == ['field `answer`: expected "Iron", got " iron" (differs in case or spacing only)']


def test_the_rows_shown_are_the_lowest_rewards_first_and_a_perfect_batch_costs_no_call():
    client = FakeClient()
    opt = Reflective(ReflectiveConfig(reflection_rows=2), OUTPUTS)
    opt.observe(BATCH)
    runner = FakeRunner(client)
    propose(opt, runner)
    shown = client.requests[0][0].messages[-1]["content"].split("\n---\n")[1]  # after the prompt's demo
    assert shown.count("\nExample ") == 2 and '"5 5"' not in shown  # the one right row is left out
    opt.observe([BATCH[3]])
    assert propose(opt, runner) is None and len(client.requests) == 1 and runner.calls == 1
    assert opt.proposals[-1]["status"].startswith("skipped")


# --- parsing ---

@pytest.mark.parametrize(("reply", "expected"), [
    ("```\nAdd the numbers.\n```", "Add the numbers."),
    ("Sure! Here it is:\n```text\nAdd the numbers.\nUse digits.\n```\nGood luck.", "Add the numbers.\nUse digits."),
    ("New instruction: \"Add the numbers.\"", "Add the numbers."),
    ("Here is the improved instruction:\n\nAdd the numbers.\n\nThis fixes it.", "Add the numbers."),
    (" Add the numbers and answer in digits.", "Add the numbers and answer in digits."),
    ("```\nAdd the numbers, then", "Add the numbers, then"),  # an unclosed fence (max_tokens)
    ("“Add the numbers.”", "Add the numbers."),
])
def test_parse_instruction_finds_the_instruction(reply, expected):
    assert parse_instruction(reply, "Add them.", 200) == (expected, "proposed")


@pytest.mark.parametrize(("reply", "why"), [
    ("", "empty"), ("```\n```", "empty"), ('""', "empty"),
    ("x" * 201, "too long (201 characters)"),
    ("Here is a better one:\n```python\ndef name(symbol):\n    return symbol", "code (python), not an instruction"),
    ("```\n  add THEM. \n```", "unchanged"),
])
def test_parse_instruction_refuses_empty_long_and_unchanged(reply, why):
    assert parse_instruction(reply, "Add them.", 200) == (None, why)


def test_a_completion_reply_is_its_first_line_and_a_copy_of_the_prompts_demo_is_refused():
    assert parse_instruction("\nAdd the numbers.\nMore text", "Add them.", 200, one_line=True) == \
        ("Add the numbers.", "proposed")
    assert parse_instruction(" Translate the English word into French.", "Add them.", 200, one_line=True) == \
        (None, "copied the prompt's example")


# --- the Pareto front ---

def test_a_candidate_best_on_some_row_stays_and_dominated_ones_leave():
    scores = {"A": {"r1": 1.0, "r2": 0.0, "r3": 0.0},  # low mean, but the only one right on r1
              "B": {"r1": 0.0, "r2": 1.0, "r3": 1.0},
              "C": {"r1": 0.0, "r2": 1.0, "r3": 0.0},  # dominated by B
              "D": {"r1": 0.5, "r2": 0.5, "r3": 0.5}}  # best on no row
    assert pareto_front(scores) == {"A": 1, "B": 2}
    # Equal candidates: one stays (the lowest mean, then key, leaves first).
    assert pareto_front({"x": {"r": 1.0}, "y": {"r": 1.0}}) == {"y": 1}
    # A candidate scored on a minibatch only competes on the rows it ran on.
    assert pareto_front({"full": {"r1": 1.0, "r2": 0.0}, "mini": {"r2": 1.0}}) == {"full": 1, "mini": 1}
    assert pareto_front({}) == {}


def test_parents_are_drawn_in_proportion_to_the_rows_they_are_best_on():
    a, b = ProgramState("A", []), ProgramState("B", [])
    scores = {a.key(): {"r1": 1.0, "r2": 0.0, "r3": 0.0}, b.key(): {"r1": 0.0, "r2": 1.0, "r3": 1.0}}
    rng = random.Random(0)
    counts = Counter(pick_from_front(scores, rng).instructions for _ in range(3000))
    assert counts["B"] / 3000 == pytest.approx(2 / 3, abs=0.03)
    opt = Reflective(ReflectiveConfig(), OUTPUTS)
    opt.scores = scores
    assert opt.teacher(PARENT, random.Random(1)).instructions in {"A", "B"}
    assert Reflective(ReflectiveConfig(), OUTPUTS).teacher(PARENT, random.Random(1)) is PARENT  # nothing scored yet


def test_evaluate_records_each_row_once_and_the_front_follows():
    def score(state, row):
        return 1.0 if (state.instructions == "B") == (row.inputs["q"] in ("q1", "q2")) else 0.0

    opt = Reflective(ReflectiveConfig(), OUTPUTS)
    runner = FakeRunner(score=score)
    val = rows(4)
    a, b = ProgramState("A", []), ProgramState("B", [])
    assert asyncio.run(opt.evaluate(runner, a, val, 0)).objective == 0.5
    assert asyncio.run(opt.evaluate(runner, b, val[1:3], 0)).objective == 1.0
    assert asyncio.run(opt.evaluate(runner, b, val, 0)).objective == 0.5  # only q0 and q3 run again
    assert runner.ran == [("A", 4), ("B", 2), ("B", 2)]
    assert opt.scores[b.key()] == {row_key(r): score(b, r) for r in val}
    assert pareto_front(opt.scores) == {a.key(): 2, b.key(): 2}


# --- proposals: the child, seeds, the budget, failures ---

def test_a_child_has_the_new_instruction_and_its_parents_demos():
    client = FakeClient()
    opt = Reflective(ReflectiveConfig(), OUTPUTS)
    opt.observe(BATCH)
    runner = FakeRunner(client)
    child = propose(opt, runner)
    assert child == ProgramState("Add the two numbers; answer with digits only.", PARENT.examples)
    assert runner.calls == 1  # the reflection call counts toward max_calls
    overrides = client.requests[0][1]["overrides"]
    assert overrides["max_tokens"] == 256 and overrides["temperature"] == 0.7
    assert opt.proposals == [{"parent": "Add them.", "instruction": child.instructions, "status": "proposed",
                              "rows": 4}]


def test_the_same_seed_gives_the_same_proposals_and_another_seed_other_calls():
    def run(seed):
        client = FakeClient()
        opt = Reflective(ReflectiveConfig(reflection_rows=2), OUTPUTS)
        rng = random.Random(seed)
        for _ in range(3):
            opt.observe(BATCH)
            asyncio.run(opt.propose_with_model(FakeRunner(client), PARENT, rng))
        return [(r.messages[-1]["content"], kw["overrides"]["seed"]) for r, kw in client.requests]

    assert run(0) == run(0)
    assert [seed for _, seed in run(0)] != [seed for _, seed in run(1)]


def test_a_reflection_model_of_its_own_is_called_and_cached_and_every_reply_counts(tmp_path):
    """A chat model (litellm's mock_response) as the reflection model, with the run's cache: the
    second identical call is a cache hit and still counts toward the budget."""
    config = ReflectiveConfig(reflection_model={"name": "openai/gpt-4o-mini",
                                                "extra": {"mock_response": "```\nBe exact.\n```"}})
    cache = ResponseCache(tmp_path / "responses")
    program_client = LMClient(SPEC.model, cache)
    try:
        for expected_requests in (1, 0):  # the second run's reply comes from the cache
            opt = Reflective(config, OUTPUTS)
            opt.observe(BATCH)
            runner = FakeRunner(program_client)
            assert propose(opt, runner, seed=5) == ProgramState("Be exact.", PARENT.examples)
            assert runner.calls == 1
            assert opt._client.requests == expected_requests
        assert cache.hits == 1 and program_client.requests == 0
    finally:
        cache.close()


def test_demo_proposals_keep_the_instruction_and_make_no_call():
    client = FakeClient()
    opt = Reflective(ReflectiveConfig(max_examples=2), OUTPUTS)
    labeled = [Example(input={"q": f"q{i}"}, output={"answer": f"a{i}"}) for i in range(6)]
    opt.set_labeled(labeled)
    rng, runner, children = random.Random(0), FakeRunner(client), []
    for _ in range(20):
        opt.observe(BATCH)
        children.append(asyncio.run(opt.propose_with_model(runner, PARENT, rng)))
    demo_children = [c for c in children if c.instructions == PARENT.instructions]
    assert 4 <= len(demo_children) <= 16 and len(client.requests) == 20 - len(demo_children) == runner.calls
    assert all(1 <= len(c.examples) <= 2 and all(e in labeled for e in c.examples) for c in demo_children)


def test_a_failed_reflection_call_is_counted_and_warned_and_a_fatal_one_stops_the_run():
    opt = Reflective(ReflectiveConfig(), OUTPUTS)
    opt.observe(BATCH)
    runner = FakeRunner(FakeClient(error=ProviderError("Timeout: no reply", kind="timeout")))
    assert propose(opt, runner) is None
    assert opt.failures == 1 and runner.calls == 1
    assert opt.warnings == ["proposal 1: the reflection model failed: Timeout: no reply"]
    assert opt.proposals[-1]["status"] == "failed: Timeout: no reply"
    runner = FakeRunner(FakeClient(error=ProviderError("AuthenticationError: bad key", fatal=True)))
    with pytest.raises(RunError, match="stopped: the reflection model failed: AuthenticationError"):
        propose(opt, runner)
    assert opt.failures == 2
    down = FakeClient(error=ProviderError("cannot connect to http://x", kind="connection"))
    down.connection_failures = 10
    with pytest.raises(RunError, match="could not be reached"):
        propose(opt, FakeRunner(down))


# --- state ---

def test_state_dict_round_trips_through_json():
    def score(state, row):
        return float(len(state.instructions or "") % 2 == int(row.inputs["q"][1:]) % 2)

    opt = Reflective(ReflectiveConfig(), OUTPUTS)
    runner = FakeRunner(score=score)
    for state in (PARENT, ProgramState("Add.", []), ProgramState("Sum them up.", [])):
        asyncio.run(opt.evaluate(runner, state, rows(5), 0))
    opt.observe(BATCH)
    propose(opt, runner)
    opt.failures, opt.warnings = 1, ["w"]
    restored = Reflective(ReflectiveConfig(), OUTPUTS)
    restored.load_state_dict(json.loads(json.dumps(opt.state_dict())))
    assert restored.state_dict() == opt.state_dict()
    assert restored.scores == opt.scores and restored.proposals == opt.proposals
    picks = [opt.teacher(PARENT, random.Random(s)).key() for s in range(10)]
    assert [restored.teacher(PARENT, random.Random(s)).key() for s in range(10)] == picks
    assert OPTIMIZERS.to_config(restored) == {"type": "reflective"}


# --- the command line ---

QUIZ = """\
name: quiz
model: {name: fakelm/instruction-hungry, prompt_format: fields}
inputs: {q: string}
outputs: {answer: string}
instructions: Answer the question.
rewards:
  - {name: em, type: exact_match}
optimizer:
  type: reflective
  epochs: 3
  patience: null
  max_calls: null
"""


@pytest.fixture
def quiz(tmp_path):
    write_quiz(tmp_path)
    return write(tmp_path / "quiz.yaml", QUIZ), tmp_path


def optimize(spec, tmp_path, out, *extra):
    result = cli.invoke(app, ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"), "--test",
                              str(tmp_path / "test.jsonl"), "--out", str(out), "--json", "-q", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_optimize_reflective_proposes_an_instruction_that_reaches_the_report(quiz):
    spec, tmp_path = quiz
    report = optimize(spec, tmp_path, tmp_path / "run", "--optimizer", "reflective")
    assert report["optimizer"]["type"] == "reflective"
    assert report["best"]["instructions"].startswith("Answer the question.!")
    test = report["test"]
    assert test["optimized"] > test["baseline"] + 0.3 and test["ci95"][0] > 0
    state = json.loads((tmp_path / "run" / "best.json").read_text())["optimizer_state"]
    assert any(p["status"] == "proposed" for p in state["proposals"])
    assert state["failures"] == 0 and state["candidates"]


def test_resume_ends_where_an_uninterrupted_run_ends(quiz):
    spec, tmp_path = quiz
    whole = optimize(spec, tmp_path, tmp_path / "whole")
    optimize(spec, tmp_path, tmp_path / "parts", "--epochs", "1")
    resumed = optimize(spec, tmp_path, tmp_path / "parts", "--resume")
    assert resumed["resumed_from_epoch"] == 1

    def comparable(report):
        history = [{k: v for k, v in row.items() if k != "seconds"} for row in report["history"]]
        return report["best"], history, report["validation"], report["test"], report["calls"]

    assert comparable(resumed) == comparable(whole)
    states = [json.loads((tmp_path / d / "best.json").read_text())["optimizer_state"] for d in ("whole", "parts")]
    assert states[0] == states[1]


def test_the_budget_in_calls_stops_the_search(quiz):
    _spec, tmp_path = quiz
    budget = write(tmp_path / "budget.yaml", QUIZ.replace("max_calls: null", "max_calls: 40"))
    report = optimize(budget, tmp_path, tmp_path / "b")
    assert report["budget_exhausted"] and report["calls"] >= 40


def test_kl_beta_refuses_a_model_it_cannot_sample_before_any_call(quiz):
    _spec, tmp_path = quiz
    kl = write(tmp_path / "kl.yaml", QUIZ.replace("max_calls: null", "kl_beta: 0.1"))
    fakelm.CALLS["count"] = 0
    result = cli.invoke(app, ["optimize", str(kl), "--train", str(tmp_path / "train.jsonl"),
                              "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "optimizer.kl_beta: kl_beta > 0 needs token-by-token sampling" in lines[0]
    assert fakelm.CALLS["count"] == 0


def test_kl_beta_scores_by_the_kl_penalized_objective_row_by_row():
    """kl_beta > 0: KLPenalized's objective (reward - beta * KL of each sampled output), and each
    row's mean objective on the front."""
    class Sampler(FakeRunner):
        async def sample(self, state, reference, rows, *, n, max_tokens, seed):
            assert reference == PARENT and n == 2
            return [SimpleNamespace(logprobs=[-1.0, -1.0], ref_logprobs=[-1.5, -1.0 - i], reward=float(i % 2),
                                    entropies=[0.5]) for i, _ in enumerate(rows) for _ in range(n)]

    local = SimpleNamespace(**{**vars(SPEC), "model": ModelConfig(name="local/gemma-3-270m")})
    opt = Reflective(ReflectiveConfig(kl_beta=0.5), OUTPUTS)
    opt.set_reference(PARENT)
    stats = asyncio.run(opt.evaluate(Sampler(spec=local), PARENT, rows(2), 7))
    # KL per sample: 0.5 (row 0), 0.5 + 1 (row 1); objective: mean(0 - 0.25, 1 - 0.75) = 0
    assert stats.kl == pytest.approx(1.0) and stats.beta == 0.5 and stats.objective == pytest.approx(0.0)
    assert sorted(opt.scores[PARENT.key()].values()) == pytest.approx([-0.25, 0.25])
    assert opt.state_dict()["beta"] == 0.5


def test_a_separate_reflection_models_requests_are_in_the_reports_usage(quiz):
    spec, tmp_path = quiz
    spec.write_text(QUIZ.replace("  max_calls: null\n", "  max_calls: null\n  reflection_model:\n"
                                 "    name: openai/gpt-4o-mini\n    extra: {mock_response: \"```\\nBe exact!\\n```\"}\n"))
    before = fakelm.CALLS["count"]
    report = optimize(spec, tmp_path, tmp_path / "run", "--epochs", "1")
    program_requests = fakelm.CALLS["count"] - before
    state = json.loads((tmp_path / "run" / "best.json").read_text())["optimizer_state"]
    assert any(p["instruction"] == "Be exact!" for p in state["proposals"])
    assert report["usage"]["requests"] > program_requests  # the reflection model's are added
