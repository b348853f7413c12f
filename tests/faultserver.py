"""An OpenAI-compatible chat-completions server on 127.0.0.1 that injects faults at chosen rates.

Faults (per request, drawn from a seeded generator): "timeout" (answers after `slow_s`), "429"
(with Retry-After), "500", "503", "reset" (the connection is dropped without a reply), "malformed"
(a 200 whose body is not JSON), "truncated" (a 200 whose JSON body is cut short). Only when
scripted: "400" (the provider refuses this request), "429_odd" (a Retry-After that is neither seconds nor a date), "empty_choices" (a 200
with no choices), "null_content" (a 200 whose message content is null), "trickle" (a 200 whose
body arrives a few bytes at a time over `slow_s`), "huge" (a 200 reply far over max_tokens),
"bad_utf8" (a 200 whose body is not UTF-8). Other requests get a normal reply from
`answer(messages)`; /v1/completions requests (a `prompt`) get `answer([{"content": prompt}])` as
a text completion. It is a real HTTP server: litellm talks to it over
sockets exactly as it talks to vLLM or any OpenAI-compatible endpoint.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("timeout", "429", "500", "503", "reset", "malformed", "truncated")


class FaultServer:
    def __init__(self, answer: Callable[[list[dict[str, Any]]], str], rates: dict[str, float] | None = None,
                 seed: int = 0, slow_s: float = 3.0, retry_after: float = 0.2,
                 require_key: str | None = None, script: list[str | None] | None = None,
                 delay_s: float = 0.0, echo_auth: bool = False):
        self.answer = answer
        self.rates = dict(rates or {})
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.require_key = require_key
        self.script = list(script or [])  # faults for the first requests, in order (None: answer)
        self.delay_s = delay_s  # every answer takes this long (for interruption tests)
        self.echo_auth = echo_auth  # 5xx errors quote the Authorization header, as some proxies do
        self.injected: Counter[str] = Counter()
        self.served = 0
        self.log: list[tuple[float, str | None, str]] = []  # (time, fault, last message) per request
        self.seen_auth: list[str] = []
        self.prompts: list[str] = []  # every request's whole message list, as JSON
        self.bodies: list[dict[str, Any]] = []  # every request's JSON body
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                      length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _trickle(self, payload: bytes) -> None:
                """A 200 whose body arrives a few bytes at a time, over slow_s in all."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                pieces = [payload[i:i + 8] for i in range(0, len(payload), 8)]
                for piece in pieces:
                    self.wfile.write(piece)
                    self.wfile.flush()
                    time.sleep(server.slow_s / len(pieces))

            def do_POST(self) -> None:
                # The client may give up first (a timeout fault): then there is nothing to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._post()

            def _post(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if "prompt" in body and "messages" not in body:
                    prompt = body["prompt"][0] if isinstance(body["prompt"], list) else body["prompt"]
                    body["messages"] = [{"role": "user", "content": prompt}]
                auth = self.headers.get("Authorization", "")
                with server.lock:
                    server.seen_auth.append(auth)
                    fault = server.draw()
                    messages = body.get("messages") or [{}]
                    server.log.append((time.monotonic(), fault, str(messages[-1].get("content", ""))))
                    server.prompts.append(json.dumps(messages, sort_keys=True))
                    server.bodies.append(body)
                if server.delay_s:
                    time.sleep(server.delay_s)
                if server.require_key is not None and auth != f"Bearer {server.require_key}":
                    self._send(401, json.dumps({"error": {"message": f"bad key {auth}", "type": "auth"}}).encode())
                    return
                if fault == "timeout":
                    time.sleep(server.slow_s)
                elif fault == "429":
                    self._send(429, json.dumps({"error": {"message": "slow down", "type": "rate_limit"}}).encode(),
                               {"Retry-After": f"{server.retry_after:g}"})
                    return
                elif fault in ("500", "503"):
                    said = f"server trouble (request had {auth})" if server.echo_auth else "server trouble"
                    self._send(int(fault), json.dumps({"error": {"message": said}}).encode())
                    return
                elif fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                elif fault == "malformed":
                    self._send(200, b"{this is not json")
                    return
                elif fault == "400":
                    self._send(400, json.dumps({"error": {"message": "prompt too long", "type": "invalid_request_error"}}).encode())
                    return
                elif fault == "429_odd":
                    self._send(429, json.dumps({"error": {"message": "slow down"}}).encode(), {"Retry-After": "soon"})
                    return
                elif fault == "bad_utf8":
                    self._send(200, b'{"id": "x", "choices": [{"message": {"content": "\xff\xfe\xfa"}}]}')
                    return
                content = server.answer(body.get("messages", []))
                if fault == "huge":
                    content = "x" * 2_000_000
                if "prompt" in body:
                    choice = {"index": 0, "finish_reason": "stop", "text": content}
                    kind = "text_completion"
                else:
                    choice = {"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": None if fault == "null_content" else content}}
                    kind = "chat.completion"
                reply = {"id": "cmpl-1", "object": kind, "created": 0, "model": body.get("model", "x"),
                         "choices": [] if fault == "empty_choices" else [choice],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
                payload = json.dumps(reply).encode()
                if fault == "truncated":
                    self._send(200, payload[: len(payload) // 2])
                    return
                if fault == "trickle":
                    self._trickle(payload)
                    return
                with server.lock:
                    server.served += 1
                self._send(200, payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def draw(self) -> str | None:
        if self.script:
            fault = self.script.pop(0)
            if fault is not None:
                self.injected[fault] += 1
            return fault
        u = self.rng.random()
        for fault in FAULTS:
            rate = self.rates.get(fault, 0.0)
            if u < rate:
                self.injected[fault] += 1
                return fault
            u -= rate
        return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
