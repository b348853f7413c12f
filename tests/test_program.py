"""Program logic with a scripted client: what it sends on each attempt and how replies parse."""

import asyncio

from rewardctl.lm.client import Completion, ProviderError
from rewardctl.program import Program
from rewardctl.spec import ProgramSpec

SPEC = {
    "name": "t", "model": {"name": "local/gemma-3-270m", "max_parse_retries": 2},
    "inputs": {"q": "string"}, "outputs": {"n": "integer"},
    "examples": [{"input": {"q": "one"}, "output": {"n": 1}}],
}


class ScriptedClient:
    """Replies from a script and records the constraints of each call."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []
        self.requests = []

    async def complete(self, request, **kwargs):
        self.calls.append(kwargs)
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return Completion(reply, "stop", 10, 2, cached=False, latency_s=0.01)


def predict(spec, replies):
    program = Program(ProgramSpec.model_validate(spec).signature())
    client = ScriptedClient(replies)
    return asyncio.run(program.predict({"q": "two"}, client)), client


def test_plain_first_then_grammar_after_a_bad_reply():
    pred, client = predict(SPEC, [" two", " 2"])
    assert pred.ok and pred.y_pred == {"n": 2} and pred.calls == 2
    assert "grammar" not in client.calls[0]
    assert client.calls[1]["grammar"].startswith("root ::= ")


def test_retries_are_bounded_and_the_error_is_kept():
    pred, client = predict(SPEC, [" two", " deux", " zwei"])
    assert not pred.ok and pred.calls == 3 and len(client.calls) == 3
    assert "unparseable reply" in pred.error and pred.raw == " zwei"


def test_enum_outputs_use_the_grammar_from_the_start():
    spec = dict(SPEC, outputs={"label": {"type": "enum", "values": ["a", "b"]}}, examples=[])
    pred, client = predict(spec, [" a"])
    assert pred.y_pred == {"label": "a"} and "grammar" in client.calls[0]


def test_provider_errors_are_recorded_and_fatal_ones_flagged():
    pred, _ = predict(SPEC, [ProviderError("AuthenticationError: bad key", fatal=True)])
    assert not pred.ok and pred.fatal and "bad key" in pred.error


def test_chat_models_get_the_json_schema_and_feedback_on_retry():
    spec = dict(SPEC, model={"name": "openai/gpt-4o-mini"})
    program = Program(ProgramSpec.model_validate(spec).signature())
    client = ScriptedClient(["not json", '{"n": 2}'])
    pred = asyncio.run(program.predict({"q": "two"}, client))
    assert pred.y_pred == {"n": 2}
    fmt = client.calls[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == ["n"]
    retry = client.requests[1].messages
    assert retry[-2] == {"role": "assistant", "content": "not json"}
    assert "could not be used" in retry[-1]["content"]


def test_field_by_field_after_a_reply_without_all_fields():
    spec = dict(SPEC, outputs={"thinking": "string", "answer": "integer"},
                examples=[{"input": {"q": "one"}, "output": {"thinking": "it is one", "answer": 1}}])
    program = Program(ProgramSpec.model_validate(spec).signature())
    client = ScriptedClient([" it is two", " it is two", " 2"])
    pred = asyncio.run(program.predict({"q": "two"}, client))
    assert pred.ok and pred.y_pred == {"thinking": "it is two", "answer": 2} and pred.calls == 3
    first, thinking, answer = (r.messages[0]["content"] for r in client.requests)
    assert first.endswith("q: two\nthinking:") and thinking == first
    assert answer == first + " it is two\nanswer:"
    assert client.calls[1]["grammar"] is None and client.calls[2]["grammar"].startswith('root ::= " " int')
    assert client.requests[2].stop == ["\n"]


def test_attempt_plans():
    def plan(**model):
        return Program(ProgramSpec.model_validate(dict(SPEC, model=model)).signature()).attempt_plan()

    assert plan(name="local/gemma-3-270m") == ["plain", "stepwise", "grammar"]
    assert plan(name="local/gemma-3-270m", max_parse_retries=0) == ["plain"]
    assert plan(name="local/gemma-3-270m", max_parse_retries=4) == ["plain", "stepwise", "grammar", "grammar", "grammar"]
    assert plan(name="local/gemma-3-270m", prompt_format="json") == ["plain", "schema", "schema"]
    assert plan(name="openai/gpt-4o-mini") == ["chat", "chat", "chat"]


def test_the_description_is_the_task_line_when_there_are_no_instructions():
    spec = dict(SPEC, description="Count the letters.")
    _, client = predict(spec, [" 3"])
    assert client.requests[0].messages[0]["content"].startswith("Count the letters.")
    _, client = predict(dict(spec, instructions="Answer with a number."), [" 3"])
    prompt = client.requests[0].messages[0]["content"]
    assert prompt.startswith("Answer with a number.") and "Count the letters." not in prompt
    chat = dict(spec, model={"name": "openai/x", "api_base": "http://h/v1"})
    _, client = predict(chat, ['{"n": 3}'])
    assert client.requests[0].messages[0]["role"] == "system"
    assert client.requests[0].messages[0]["content"].startswith("Count the letters.")
