"""A model's reply, read the same way whichever path made the call: (text, finish_reason,
prompt tokens, completion tokens), or EmptyReply."""

from __future__ import annotations

from typing import Any


class EmptyReply(Exception):
    """A 200 with no choices, or a message whose content is null: asked again."""


def read_reply(response: Any) -> tuple[str, str, int, int]:
    """(text, finish_reason, prompt tokens, completion tokens) of a litellm response."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise EmptyReply("the server answered 200 with no choices")
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None) if message is not None else getattr(choice, "text", None)
    if text is None:
        raise EmptyReply("the server answered 200 with content null")
    usage = getattr(response, "usage", None)
    return (text, choice.finish_reason or "stop", int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0))


def read_json(reply: Any, finish_reason: Any) -> tuple[str, str, int, int]:
    """read_reply for a chat completion's JSON (``finish_reason``: litellm's map_finish_reason)."""
    choices = (reply.get("choices") if isinstance(reply, dict) else None) or []
    if not choices:
        raise EmptyReply("the server answered 200 with no choices")
    choice = choices[0]
    text = (choice.get("message") or {}).get("content")
    if text is None:
        raise EmptyReply("the server answered 200 with content null")
    usage = reply.get("usage") or {}
    finish = choice.get("finish_reason")
    return (text, finish_reason(finish) if finish else "stop", int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0))
