"""What a model call sends: a line of `rewardctl render --json` (:class:`RequestRecord`) and a line
of `eval --log-requests` (:class:`CallRecord`). Both show the request in one shape: litellm's
keyword arguments, keys redacted."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

JSON = dict[str, Any]
REDACTED = "<redacted>"  # what stands where a key or token was


class RequestRecord(BaseModel):
    """The request eval sends for one row, built without calling the model."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="The row's position among the dataset's valid rows (0-based).")
    line: int | None = Field(None, description="The row's line in the dataset file.")
    model: str = Field(description="model.name of the spec.")
    attempt: int = Field(1, description="Which attempt at a parseable reply (1: the first request; later "
                         "ones, for local models, decode under a grammar).")
    decoding: str = Field(description="How that attempt decodes: 'chat' (a chat model), 'plain' (a completion "
                          "without grammar), 'stepwise' (field by field: the first field's request), 'grammar' "
                          "(the whole reply under a GBNF grammar), 'schema' (under the output JSON Schema).")
    request: JSON = Field(description="litellm.acompletion's keyword arguments, as the call passes them: model, "
                          "messages, sampling parameters, stop, api_base, response_format or grammar, extra "
                          "parameters; keys redacted.")
    url: str | None = Field(None, description="OpenAI-compatible routes (openai/, text-completion-openai/): "
                            "where litellm POSTs the body.")
    body: JSON | None = Field(None, description="OpenAI-compatible routes: the JSON body litellm POSTs, "
                              "byte for byte what the server receives (parsed).")
    engine: JSON | None = Field(None, description="local/ models: what llama.cpp runs: the completion prompt, "
                                "the GBNF grammar (null: none) and create_completion's sampling arguments.")
    deployments: list[JSON] | None = Field(None, description="model.deployments: each server's litellm "
                                           "parameters (the Router picks one per request); keys redacted.")
    note: str | None = Field(None, description="What the request does not show (a stepwise decoding's later "
                             "fields; a body that could not be captured, and why).")


class CallReply(BaseModel):
    text: str
    finish_reason: str


class CallUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class CallRecord(BaseModel):
    """One model call of a run: a request sent to the provider (a failed one included) or a reply
    replayed from the response cache."""

    model_config = ConfigDict(extra="forbid")

    index: int | None = Field(None, description="The row (0-based); null for a call outside a row.")
    line: int | None = Field(None, description="The row's line in the dataset file.")
    sample: int | None = Field(None, description="With eval --repeat: which sample of the row (0-based).")
    call: int = Field(0, description="The row's n-th logged call (0-based), in the order they were made.")
    attempt: int = Field(1, description="Which attempt at a parseable reply (1: the first).")
    retry: int = Field(0, description="0: the attempt's first request; n: its n-th resend after a "
                       "transient failure (timeout, 429, 5xx, dropped connection).")
    cached: bool = Field(False, description="The reply came from the response cache: nothing was sent.")
    request: JSON = Field(description="The request, in the shape of `rewardctl render`'s (keys redacted).")
    reply: CallReply | None = Field(None, description="The reply's text, as the model wrote it; null on error.")
    usage: CallUsage | None = None
    latency_s: float = 0.0
    error: str | None = Field(None, description="Why the request failed (one line, keys scrubbed).")
    fault: str | None = Field(None, description="The failure's kind: 'connection', 'timeout', 'rate_limit', "
                              "'http_503', ...")

    def to_line(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self) + b"\n"
