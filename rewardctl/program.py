"""A program: the spec's data models and model, plus its trainable state (instructions and demos).

``Program.predict(inputs, client)`` renders the request, calls the model, and parses the reply
into the outputs data model. A reply that does not parse is retried, at most
``model.max_parse_retries`` times: the local model then decodes under a grammar; a chat model is
shown the problem and asked again. A prediction that still fails carries its error; it never
raises for one row (except a fatal provider error, which would fail every row).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rewardctl.datamodel import DataModel, json_schema, needs_structure
from rewardctl.lm.client import Completion, LMClient, ProviderError
from rewardctl.lm.grammar import field_grammar, fields_grammar
from rewardctl.lm.request import Request
from rewardctl.modelconfig import ModelConfig
from rewardctl.prompting import Demo, FieldsFormat, JsonFormat, ParseError
from rewardctl.state import Example, ProgramState


@dataclass(frozen=True)
class Signature:
    """What a program is, apart from how it is scored: its name, data models, model, and the
    initial trainable state. A spec gives one (``ProgramSpec.signature()``); an LM judge builds
    its own."""

    name: str
    inputs: DataModel
    outputs: DataModel
    model: ModelConfig
    instructions: str | None = None
    examples: tuple[Example, ...] = ()
    description: str | None = None  # the task in a sentence: the prompt's task line when there are no instructions

    def initial_state(self) -> ProgramState:
        return ProgramState(self.instructions, list(self.examples))


@dataclass
class Prediction:
    y_pred: dict[str, Any] | None
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0  # requests that reached the provider (cache hits are not calls)
    cached: bool = False  # every reply came from the response cache
    raw: str | None = None  # the last reply, kept when it could not be parsed
    fatal: bool = False
    cost_usd: float = 0.0
    error_kind: str | None = None  # why it failed: a fault kind ("connection"...), "unparseable", "fatal"

    @property
    def ok(self) -> bool:
        return self.error is None

    replies: int = 0  # replies received, from the cache or the provider

    def add(self, completion: Completion) -> None:
        self.replies += 1
        self.calls += completion.requests
        self.latency_s += completion.latency_s
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.cost_usd += completion.cost_usd
        self.cached = completion.cached if self.replies == 1 else (self.cached and completion.cached)


@dataclass
class Program:
    signature: Signature
    state: ProgramState = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = self.signature.initial_state()
        model = self.signature.model
        self.format_name = model.resolved_format
        if self.format_name == "fields":
            self.format: FieldsFormat | JsonFormat = FieldsFormat(self.signature.inputs, self.signature.outputs)
        else:
            self.format = JsonFormat(self.signature.inputs, self.signature.outputs, self.signature.name)
        # What each reply line holds: the fields format writes an output object's properties
        # on lines of their own.
        self.lines = self.format.lines if isinstance(self.format, FieldsFormat) else self.signature.outputs
        self._structured = needs_structure(self.lines)
        self._grammar: str | None = None

    @property
    def demos(self) -> list[Demo]:
        return [Demo(e.input, e.output) for e in self.state.examples]

    @property
    def task(self) -> str | None:
        """What the prompt opens with: the state's instructions, else the spec's description."""
        return self.state.instructions or self.signature.description

    def request(self, inputs: dict[str, Any]) -> Request:
        if isinstance(self.format, JsonFormat) and self.signature.model.is_local:
            return self.format.completion_request(self.task, self.demos, inputs)
        return self.format.request(self.task, self.demos, inputs)

    def fields_grammar(self) -> str:
        if self._grammar is None:
            self._grammar = fields_grammar(self.lines)
        return self._grammar

    def attempt_plan(self) -> list[str]:
        """How each attempt decodes, first to last (1 + model.max_parse_retries attempts).

        Local model, `fields` format: "plain" (one completion, no grammar: fastest), then
        "stepwise" (the runtime writes each `name:` itself and the model fills one line at a time,
        typed values under a one-field grammar), then "grammar" (the whole reply under a grammar).
        Outputs that need structure (enums, lists, objects) start stepwise. Local model, `json`
        format: plain, then the JSON Schema as a grammar. Chat models: the JSON Schema as
        response_format every time, with the problem pointed out on a retry.
        """
        model = self.signature.model
        if model.is_local and self.format_name == "fields":
            plan = ["stepwise", "grammar"] if self._structured else ["plain", "stepwise", "grammar"]
        elif model.is_local:
            plan = ["plain", "schema"]
        else:
            plan = ["chat"]
        total = model.max_parse_retries + 1
        return (plan + [plan[-1]] * total)[:total]

    def _constraints(self, mode: str) -> dict[str, Any]:
        model = self.signature.model
        if mode == "grammar":
            return {"grammar": self.fields_grammar()}
        if mode == "schema":
            schema = json_schema(self.signature.outputs, title=self.signature.name)
            return {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": self.signature.name, "schema": schema}}}
        if mode == "chat" and self.format_name == "json" and model.extra.get("response_format") is None:
            schema = json_schema(self.signature.outputs)
            return {"response_format": {"type": "json_schema", "json_schema": {
                "name": _schema_name(self.signature.name), "schema": schema, "strict": True}}}
        return {}

    def first_call(self, inputs: dict[str, Any], attempt: int = 0) -> tuple[str, Request, dict[str, Any]]:
        """How attempt ``attempt`` (0-based) decodes, and the request and constraints (grammar,
        response_format) of its first call: what ``predict`` sends first (`rewardctl render`).
        Stepwise decoding's first call is the first line's; a later attempt of a chat model
        quotes the reply that failed, so only its first attempt is known before calling."""
        mode = self.attempt_plan()[attempt]
        request = self.request(inputs)
        if mode == "stepwise":
            _, step, grammar = self._step(request, "", 0)
            return mode, step, {} if grammar is None else {"grammar": grammar}
        return mode, request, self._constraints(mode)

    def _step(self, request: Request, text: str, i: int) -> tuple[str, Request, str | None]:
        """Stepwise decoding's request for reply line ``i`` after the reply so far (``text``):
        the line head the runtime writes, the request, and the line's grammar (None: a string)."""
        name, spec = list(self.lines.items())[i]
        head = "" if i == 0 else f"\n{name}:"
        step = Request([{"role": "user", "content": request.messages[0]["content"] + text + head}],
                       stop=["\n"], completion=True)
        return head, step, None if spec.type == "string" else field_grammar(spec)

    async def _stepwise(self, request: Request, client: LMClient, prediction: Prediction,
                        **call: Any) -> str:
        """Field-by-field decoding for the `fields` format: returns the reply text as one
        completion would (everything after the prompt's `first_output:`)."""
        text = ""
        for i in range(len(self.lines)):
            head, step, grammar = self._step(request, text, i)
            completion = await client.complete(step, grammar=grammar, **call)
            prediction.add(completion)
            text += head + completion.text.split("\n", 1)[0]
        return text

    async def predict(self, inputs: dict[str, Any], client: LMClient, *, use_cache: bool = True,
                      overrides: dict[str, Any] | None = None, sample: int = 0,
                      refresh: bool = False) -> Prediction:
        """``refresh``: ask the provider again rather than replay cached replies (a row redone
        after a failure); the new replies replace the cached ones."""
        request = self.request(inputs)
        prediction = Prediction(None)
        started = time.perf_counter()
        call: dict[str, Any] = {"use_cache": use_cache, "overrides": overrides, "sample": sample,
                                "refresh": refresh}
        for attempt, mode in enumerate(self.attempt_plan()):
            # A retry is a new request: never the cached reply that just failed to parse.
            call["attempt"] = attempt
            finish_reason = "stop"
            try:
                if mode == "stepwise":
                    text = await self._stepwise(request, client, prediction, **call)
                else:
                    completion = await client.complete(request, **call, **self._constraints(mode))
                    prediction.add(completion)
                    text, finish_reason = completion.text, completion.finish_reason
            except ProviderError as exc:
                prediction.calls += exc.requests
                prediction.error = str(exc)
                prediction.fatal = exc.fatal
                prediction.error_kind = "fatal" if exc.fatal else (exc.kind or "provider")
                break
            try:
                prediction.y_pred = self.format.parse(text)
                prediction.error = prediction.error_kind = prediction.raw = None
                break
            except ParseError as exc:
                prediction.error = f"unparseable reply: {exc}"
                prediction.error_kind = "unparseable"
                if finish_reason == "length":
                    prediction.error += " (the reply hit max_tokens)"
                prediction.raw = clip(text, RAW_KEPT)
                if not request.completion:
                    request = Request(request.messages + [
                        {"role": "assistant", "content": clip(text, RAW_SHOWN)},
                        {"role": "user", "content": f"That reply could not be used ({exc}). Reply "
                                                    "again with only the JSON object."},
                    ])
        if not prediction.cached:
            prediction.latency_s = time.perf_counter() - started
        return prediction


RAW_KEPT = 4000  # characters of an unparseable reply kept in its prediction line
RAW_SHOWN = 2000  # ...and shown back to a chat model when asking again


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut (a server that ignores
    max_tokens can send megabytes)."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


def _schema_name(name: str) -> str:
    # OpenAI requires ^[a-zA-Z0-9_-]{1,64}$ for json_schema names.
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)
    return cleaned[:64] or "output"
