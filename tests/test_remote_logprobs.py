"""Scoring a continuation through an OpenAI-compatible completions server (echo + logprobs),
served for real on 127.0.0.1, and the error when a server returns no prompt log-probabilities."""

import asyncio
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rewardctl.lm.client import LMClient, ProviderError
from rewardctl.modelconfig import ModelConfig


def serve(with_logprobs: bool):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
            pieces = re.findall(r"\s*\S+", prompt)
            offsets, at = [], 0
            for piece in pieces:
                offsets.append(at)
                at += len(piece)
            choice = {"text": prompt + " x", "index": 0, "finish_reason": "length", "logprobs": None}
            if with_logprobs and body.get("echo"):
                # token i has log-probability -(i + 1) / 10; the first token has none, as servers do
                choice["logprobs"] = {"tokens": pieces, "text_offset": offsets,
                                      "token_logprobs": [None] + [-(i + 1) / 10 for i in range(1, len(pieces))],
                                      "top_logprobs": None}
            payload = json.dumps({"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body["model"],
                                  "choices": [choice],
                                  "usage": {"prompt_tokens": len(pieces), "completion_tokens": 1,
                                            "total_tokens": len(pieces) + 1}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server(request):
    srv = serve(request.param)
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


@pytest.mark.parametrize("server", [True], indirect=True)
def test_echo_logprobs_of_the_continuation(server, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    client = LMClient(ModelConfig(name="openai/served-model", api_base=server, api_key_env="FAKE_KEY"))
    out = asyncio.run(client.continuation_logprobs("country: France capital:", " Paris indeed"))
    # pieces: "country:", " France", " capital:", " Paris", " indeed" -> the last two
    assert out == [(" Paris", pytest.approx(-0.4)), (" indeed", pytest.approx(-0.5))]


@pytest.mark.parametrize("server", [False], indirect=True)
def test_a_server_without_prompt_logprobs_gets_a_clear_error(server):
    client = LMClient(ModelConfig(name="openai/served-model", api_base=server))
    with pytest.raises(ProviderError, match=r"returned no prompt log-probabilities.*echo and logprobs"):
        asyncio.run(client.continuation_logprobs("country: France capital:", " Paris"))


def test_sampling_for_kl_needs_a_local_model():
    client = LMClient(ModelConfig(name="openai/gpt-4o-mini"))
    with pytest.raises(ProviderError, match="only local/ models give"):
        asyncio.run(client.sample_tokens("x", n=1, max_tokens=1, stop=[], seed=0))
