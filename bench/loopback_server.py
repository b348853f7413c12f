"""A loopback OpenAI-compatible server that answers every request after a fixed latency.

    python bench/loopback_server.py [--latency 0.2] [--port 0]

It prints ``PORT <n>`` once listening, then serves until killed. Each chat completion is answered
after ``--latency`` seconds with the JSON object ``{"answer": "a<N>"}``, where N is the last
number in the last user message, so that clients that send ``question: q17`` are graded right
(and a benchmark can check that every client did the same work). The server is aiohttp on one
event loop (~0.4 ms of CPU per request): in its own process it is never the bottleneck, which the
raw-aiohttp floor in eval_throughput.py shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

from aiohttp import web

NUMBER = re.compile(r"(\d+)(?!.*\d)", re.S)


def answer_for(body: dict) -> str:
    messages = body.get("messages") or [{"content": body.get("prompt") or ""}]
    text = ""
    for message in reversed(messages):
        if message.get("role", "user") == "user":
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
            break
    match = NUMBER.search(text)
    return f"a{match.group(1) if match else 0}"


def make_app(latency: float) -> web.Application:
    served = {"count": 0}

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency)
        served["count"] += 1
        content = json.dumps({"answer": answer_for(body)})
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        return web.json_response({
            "id": f"chatcmpl-{served['count']}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "bench"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 6,
                      "total_tokens": prompt_tokens + 6},
        })

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(served)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/chat/completions", chat)
    app.router.add_get("/stats", stats)
    return app


async def serve(latency: float, port: int) -> None:
    runner = web.AppRunner(make_app(latency), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.latency, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
