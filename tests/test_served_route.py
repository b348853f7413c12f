"""The served route (rewardctl.lm.served): a chat call to an OpenAI-compatible server goes through
litellm's request and error layers without the pricing and logging litellm.acompletion does on
every call. Checked against litellm.acompletion itself, call for call: the same URL, headers and
body; the same reply (text, finish reason, usage); for each fault the fault server injects, the
same exception class, status, Retry-After and fault kind."""

import asyncio
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from faultserver import FaultServer

from rewardctl.evaluate import lm_workers
from rewardctl.lm import served
from rewardctl.lm.client import _exc_name, _retry_after, _status, fault_kind, request_deadline
from rewardctl.lm.litellm_setup import close_clients, get_litellm, send
from rewardctl.lm.reply import read_reply
from rewardctl.modelconfig import ModelConfig
from rewardctl.options import EvalOptions

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
          "additionalProperties": False}
# What rewardctl's calls carry (LMClient.call_arguments), and what model.extra may add.
VARIANTS = {
    "plain": {},
    "sampling": {"top_p": 0.9, "seed": 3, "stop": ["\n\n", "END"]},
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {
        "name": "out", "strict": True, "schema": SCHEMA}}},
    "json_object": {"response_format": {"type": "json_object", "schema": SCHEMA}},
    "top_k and min_p": {"top_k": 5, "min_p": 0.05, "allowed_openai_params": ["min_p", "top_k"]},
    "extra_body": {"extra_body": {"chat_template_kwargs": {"enable_thinking": False}},
                   "allowed_openai_params": ["extra_body"]},
    "penalties and logprobs": {"presence_penalty": 0.5, "frequency_penalty": 0.2, "logprobs": True, "top_logprobs": 2,
                               "user": "u", "allowed_openai_params": ["frequency_penalty", "logprobs",
                                                                      "presence_penalty", "top_logprobs", "user"]},
    "max_completion_tokens": {"max_completion_tokens": 32, "allowed_openai_params": ["max_completion_tokens"]},
}


class Recorder:
    """A server that records each request's path, headers and JSON body, and answers a chat
    completion with ``finish_reason``."""

    def __init__(self, finish_reason="stop"):
        self.posts = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recorder.posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                reply = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                    "choices": [{"index": 0, "finish_reason": finish_reason,
                                                 "message": {"role": "assistant", "content": "hi"}}],
                                    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def call_for(provider, api_base, key="k", **extra):
    call = {"model": f"{provider}/served", "messages": [{"role": "system", "content": "Answer."},
                                                         {"role": "user", "content": '{"question": "q1 é \\"x\\""}'}],
            "timeout": 1.0, "num_retries": 0, "temperature": 0, "max_tokens": 16, "drop_params": True,
            "api_base": api_base, **extra}
    if key is not None:
        call["api_key"] = key
    return call


async def both(call):
    """(litellm.acompletion's reply, the served route's reply): each a tuple or the exception."""
    litellm = get_litellm()
    assert served.eligible(call, litellm)
    results = []
    for path in ("litellm", "served"):
        try:
            if path == "litellm":
                pending = litellm.acompletion(**call)
                results.append(read_reply(await asyncio.wait_for(pending, request_deadline(call["timeout"]))))
            else:
                results.append(await asyncio.wait_for(served.complete(call, litellm), request_deadline(call["timeout"])))
        except Exception as exc:  # noqa: BLE001 (compared below)
            results.append(exc)
    await close_clients()
    return results


@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_request_is_litellm_s_own(provider, variant):
    """URL, Authorization, Content-Type and body are what litellm.acompletion sends, for every
    shape of api_base; the reply is read the same (text, finish reason, usage)."""
    server = Recorder()
    try:
        for suffix in ("/v1", "/v1/", ""):
            for key in (("k", None) if provider == "hosted_vllm" else ("k",)):
                call = call_for(provider, f"http://127.0.0.1:{server.port}{suffix}", key, **VARIANTS[variant])
                server.posts.clear()
                old, new = asyncio.run(both(call))
                assert old == new == ("hi", "stop", 7, 2)
                (old_path, old_headers, old_body), (new_path, new_headers, new_body) = server.posts
                assert (new_path, new_body) == (old_path, old_body)
                for header in ("authorization", "content-type"):
                    assert new_headers.get(header) == old_headers.get(header), header
    finally:
        server.close()


@pytest.mark.parametrize("finish_reason", ["length", "stop", "eos", None])
def test_the_finish_reason_is_mapped_as_litellm_maps_it(finish_reason):
    server = Recorder(finish_reason)
    try:
        old, new = asyncio.run(both(call_for("openai", f"http://127.0.0.1:{server.port}/v1")))
    finally:
        server.close()
    assert old == new


FAULTS = ["429", "429_odd", "500", "503", "400", "malformed", "truncated", "bad_utf8", "empty_choices",
          "null_content", "timeout", "auth"]


def described(result):
    if not isinstance(result, Exception):
        return result
    return _exc_name(result), _status(result), _retry_after(result), fault_kind(result)


@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_raises_what_litellm_raises(provider, fault):
    """The same exception class, status, Retry-After (429) and fault kind, so that rewardctl
    retries, backs off and gives up (a 401 is fatal) exactly as before; HTTP errors carry the
    same message."""
    key = {"require_key": "right"} if fault == "auth" else {}
    script = [] if fault == "auth" else [fault, fault]
    with FaultServer(lambda messages: '{"answer": "1"}', script=script, slow_s=2.0, retry_after=0.7, **key) as server:
        old, new = asyncio.run(both(call_for(provider, server.url, key="wrong" if fault == "auth" else "k")))
    assert isinstance(new, Exception)
    assert described(new) == described(old)
    if _status(old) not in (None, 408, 500, 200):  # an HTTP error: the server's message, as litellm gives it
        assert str(new) == str(old)
    if fault == "429":
        assert _retry_after(new) == 0.7


@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
def test_a_server_that_is_not_there_is_a_connection_fault(provider):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    old, new = asyncio.run(both(call_for(provider, f"http://127.0.0.1:{port}/v1")))
    assert described(new) == described(old) and fault_kind(new) == "connection"
    assert str(new) == str(old) if provider == "openai" else "Cannot connect to host" in str(new)


def test_a_dropped_connection_is_a_connection_fault():
    with FaultServer(lambda messages: '{"answer": "1"}', script=["reset", "reset"]) as server:
        old, new = asyncio.run(both(call_for("openai", server.url)))
    assert described(new) == described(old) and fault_kind(new) == "connection"


@pytest.mark.parametrize("call,takes", [
    ({}, True),
    ({"model": "hosted_vllm/served"}, True),
    ({"api_base": None}, False),  # a hosted API: litellm.acompletion
    ({"model": "text-completion-openai/served"}, False),  # the completions route
    ({"model": "rewardctl"}, False),  # model.deployments: litellm's Router
    ({"model": "ollama_chat/served"}, False),
    ({"stream": True}, False),
    ({"mock_response": "hi"}, False),  # litellm-only arguments
    ({"extra_headers": {"X-Team": "a"}}, False),
    ({"tools": []}, False),
])
def test_what_takes_the_route(call, takes):
    assert served.eligible({**call_for("openai", "http://127.0.0.1:9/v1"), **call}, get_litellm()) is takes


@pytest.mark.parametrize("model,takes", [
    ({"name": "openai/served", "api_base": "http://h/v1"}, True),
    ({"name": "hosted_vllm/served", "api_base": "http://h/v1"}, True),
    ({"name": "openai/served", "api_base": "http://h/v1", "prompt_format": "fields"}, False),
    ({"name": "openai/served", "deployments": [{"api_base": "http://a/v1"}, {"api_base": "http://b/v1"}]}, False),
    ({"name": "openai/gpt-4o-mini"}, False),
])
def test_auto_starts_no_worker_for_the_route(model, takes, monkeypatch):
    """A call on the route costs about what passing it to a worker process costs: auto starts
    none; a hosted API (litellm.acompletion, 2.5-4.5 ms a call) still gets one per core."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    config = ModelConfig(**model)
    assert served.takes(config) is takes

    class Spec:
        pass

    spec = Spec()
    spec.model = config
    options = EvalOptions(data="d.jsonl", concurrency=64)
    assert lm_workers(spec, options, 5000) == (0 if takes else 2)
    assert lm_workers(spec, EvalOptions(data="d.jsonl", concurrency=64, workers=1), 5000) == 1


def test_each_event_loop_gets_its_session_and_none_is_left_open(capfd):
    """asyncio.run after asyncio.run, without close_clients: each loop has its own session, closed
    when the loop shuts down (no "Unclosed client session" at exit)."""
    with FaultServer(lambda messages: '{"answer": "1"}') as server:
        call = call_for("openai", server.url)
        for _ in range(3):
            assert asyncio.run(send(call))[0] == '{"answer": "1"}'
    assert not served._sessions
    assert "Unclosed" not in capfd.readouterr().err
