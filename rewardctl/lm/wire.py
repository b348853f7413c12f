"""What goes over the wire, shown without calling the model: keys redacted from a call's
arguments, the prompt and grammar the embedded model runs, and the HTTP body litellm POSTs to an
OpenAI-compatible server (`rewardctl render`, `eval --log-requests`).

The body is the one eval sends: the call runs the path eval's call takes (rewardctl.lm.served's
route for a chat call to an OpenAI-compatible server, else ``litellm.acompletion``) unchanged
but for its api_base, which points at a server on 127.0.0.1 that records the request and answers
an empty reply. Nothing leaves the machine and no key is sent (a placeholder stands in).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any
from urllib.parse import urlsplit

from rewardctl.lm.litellm_setup import send
from rewardctl.lm.local import engine_prompt, grammar_source, sampling_kwargs
from rewardctl.records.request import REDACTED

# Argument and header names that hold credentials (not max_tokens or prompt_tokens).
SECRET_NAME = re.compile(r"(api[_-]?key|secret|password|passwd|authorization|credential|cookie|"
                         r"(^|[_-])(access[_-]?)?token$|(^|[_-])key$|bearer)", re.IGNORECASE)
_HEADER_ARGS = ("extra_headers", "headers", "default_headers")
_LITELLM_ONLY = ("model", "messages", "timeout", "num_retries", "drop_params", "allowed_openai_params")
OPENAI_ROUTES = ("openai/", "text-completion-openai/")  # sent through the OpenAI SDK: a JSON body
_DEFAULT_BASE = "https://api.openai.com/v1"


def env_secrets() -> set[str]:
    """Values of environment variables named like credentials (OPENAI_API_KEY, HF_TOKEN...): a
    provider that echoes a key back cannot get it written either."""
    return {value for name, value in os.environ.items()
            if len(value) >= 8 and SECRET_NAME.search(name)}


def scrub(value: Any, secrets: set[str] | frozenset[str]) -> Any:
    """``value`` with every known secret replaced inside its strings, at any depth."""
    if isinstance(value, str):
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return value


def redact(call: dict[str, Any], secrets: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """A call's (or a deployment's) arguments fit to show: arguments and headers named like
    credentials read "<redacted>", known secrets are scrubbed from every string, and values JSON
    cannot hold are shown as text."""
    out: dict[str, Any] = {}
    for name, value in call.items():
        if value is not None and SECRET_NAME.search(name):
            value = REDACTED
        elif name in _HEADER_ARGS and isinstance(value, dict):
            value = {k: REDACTED if SECRET_NAME.search(str(k)) else v for k, v in value.items()}
        out[name] = value
    return json.loads(json.dumps(scrub(out, secrets), default=str))


def engine_request(call: dict[str, Any]) -> dict[str, Any]:
    """What the embedded model runs for a ``local/`` call: the provider's completion prompt, the
    GBNF grammar (from ``grammar``, or converted from the response_format's JSON Schema), and
    llama.cpp's sampling arguments (the same functions the engine uses)."""
    params = {k: v for k, v in call.items() if k not in _LITELLM_ONLY}
    return {"prompt": engine_prompt(call["messages"]), "grammar": grammar_source(params),
            **sampling_kwargs(params)}


def _reply(path: str, model: str) -> bytes:
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    if path.endswith("/chat/completions"):
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}
        kind = "text_completion"
    return json.dumps({"id": "rewardctl-render", "object": kind, "created": 0, "model": model,
                       "choices": [choice], "usage": usage}).encode()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16):
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
        return body
    return await reader.readexactly(int(headers.get("content-length") or 0))


class BodyCapture:
    """A server on 127.0.0.1 that records each request's path and body and answers an empty
    completion. ``async with BodyCapture() as capture: url, body = await capture.http(call)``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> BodyCapture:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, path, _ = (await reader.readline()).decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").strip()):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await _read_body(reader, headers)
            self.requests.append((path, body))
            try:
                model = str(json.loads(body).get("model", ""))
            except (ValueError, AttributeError):
                model = ""
            reply = _reply(path, model)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(reply)).encode() + b"\r\n\r\n" + reply)
            await writer.drain()
        except (ValueError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def http(self, call: dict[str, Any]) -> tuple[str, dict[str, Any]] | str:
        """(url, JSON body) that eval's call sends for ``call`` (an OpenAI-compatible route), or
        why none was captured."""
        base = urlsplit(str(call.get("api_base") or _DEFAULT_BASE))
        probe = {**call, "api_base": f"http://127.0.0.1:{self.port}{base.path}", "api_key": "rewardctl-render",
                 "num_retries": 0}
        before = len(self.requests)
        try:
            await asyncio.wait_for(send(probe), 60)  # the path eval's call takes
        except Exception as exc:  # noqa: BLE001 (litellm raises many classes; the body may still be in)
            failure = f"{type(exc).__name__}: {exc}"
        else:
            failure = "litellm sent no request"
        if len(self.requests) == before:
            return f"no body captured ({' '.join(failure.split())[:300]})"
        path, body = self.requests[before]
        try:
            parsed = json.loads(body)
        except ValueError:
            return f"the body is not JSON ({len(body)} bytes)"
        return f"{base.scheme}://{base.netloc}{path}", parsed
