"""`rewardctl render`'s output: each row's request as JSON Lines (--json) or as text to read, the
prompt verbatim."""

from __future__ import annotations

import json
from typing import Any

from rewardctl.records.request import RequestRecord

_SHOWN_APART = ("model", "messages", "response_format", "grammar")


def request_json_line(record: RequestRecord) -> str:
    return record.model_dump_json() + "\n"


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _parameters(args: dict[str, Any], skip: tuple[str, ...]) -> str:
    return " ".join(f"{name}={_value(value)}" for name, value in args.items() if name not in skip)


def _block(title: str, text: str) -> list[str]:
    return [f"[{title}]\n", text if text.endswith("\n") else text + "\n"]


def request_text(record: RequestRecord) -> str:
    """One row's request to read: a header, then each message (or the local model's prompt)
    verbatim, the output constraint, and the other arguments on one line."""
    request = record.request
    route = request.get("model")
    header = f"== row {record.index}" + (f" (line {record.line})" if record.line is not None else "")
    header += f": {record.model}" + (f" as {route}" if route and route != record.model else "")
    parts = [f"{header}, attempt {record.attempt} ({record.decoding}) ==\n"]
    if record.url:
        parts.append(f"POST {record.url}\n")
    if record.engine is not None:
        parts += _block("prompt", record.engine["prompt"])
        if record.engine.get("grammar"):
            parts += _block("grammar", record.engine["grammar"])
        parts.append(f"[sampling] {_parameters(record.engine, ('prompt', 'grammar'))}\n")
    else:
        for message in request.get("messages") or []:
            parts += _block(str(message.get("role", "message")), str(message.get("content") or ""))
        for name in ("response_format", "grammar"):
            if request.get(name) is not None:
                shown = request[name] if isinstance(request[name], str) else json.dumps(request[name], indent=2,
                                                                                         ensure_ascii=False)
                parts += _block(name, shown)
    parts.append(f"[arguments] {_parameters(request, _SHOWN_APART)}\n")
    for deployment in record.deployments or []:
        parts.append(f"[deployment] {_parameters(deployment, ())}\n")
    if record.note:
        parts.append(f"note: {record.note}\n")
    return "".join(parts) + "\n"
