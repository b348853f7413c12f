"""Importing litellm, once, lazily and quietly.

``import litellm`` costs ~3.5 s of CPU, looks up its price map over the network unless told
not to, and prints to stdout unless silenced. rewardctl imports it only at the first request
that misses the response cache, with the offline price map, stdout redirected to stderr, and the
``local`` provider registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import threading

from rewardctl.lm import served
from rewardctl.lm.local import make_provider
from rewardctl.lm.reply import read_reply

_lock = threading.Lock()
_litellm = None
# OpenAI clients for the completions route, per (event loop, server, key): litellm builds a new
# unclosed one per call there, and aiohttp then complains at exit.
_completion_clients: dict[tuple[int, str | None, str | None, float], object] = {}


def is_loaded() -> bool:
    return _litellm is not None


def get_litellm():
    global _litellm
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_TELEMETRY", "False")
            # litellm takes 2-3 s of CPU to import: only model calls need it. Its ~300,000 objects
            # live as long as the process: the collector is kept off while they are made (each
            # collection would walk them all again: a third of the import's time) and then they
            # are frozen out of its way (else a fifth of eval's CPU per row on the served route).
            collecting = gc.isenabled()
            gc.disable()
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    import litellm  # only model calls need it
                gc.freeze()
            finally:
                if collecting:
                    gc.enable()
            litellm.suppress_debug_info = True
            litellm.telemetry = False
            litellm.set_verbose = False
            providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != "local"]
            litellm.custom_provider_map = providers + [
                {"provider": "local", "custom_handler": make_provider()}
            ]
            _litellm = litellm
    return _litellm


def completion_client(api_base: str | None, api_key: str | None, timeout: float):
    """The OpenAI client to pass litellm for a ``text-completion-openai/`` call on this loop."""
    key = (id(asyncio.get_running_loop()), api_base, api_key, timeout)
    client = _completion_clients.get(key)
    if client is None:
        # litellm has imported openai already by the time a call is made.
        import openai

        client = openai.AsyncOpenAI(api_key=api_key or "EMPTY", base_url=api_base, timeout=timeout, max_retries=0)
        _completion_clients[key] = client
    return client


async def close_clients() -> None:
    """Close the HTTP clients litellm cached on this event loop (else aiohttp prints "Unclosed
    client session" at exit), and forget them: they are tied to a loop that is ending."""
    if _litellm is None:
        return
    await served.close()
    loop = id(asyncio.get_running_loop())
    for key in [k for k in _completion_clients if k[0] == loop]:
        with contextlib.suppress(Exception):
            await _completion_clients.pop(key).close()
    # litellm's own cleanup; it lives in a submodule not loaded by `import litellm`.
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    with contextlib.suppress(Exception):  # a client that fails to close is still forgotten
        await close_litellm_async_clients()
    _litellm.in_memory_llm_clients_cache.flush_cache()


def with_client(call: dict) -> dict:
    """``call`` (litellm.acompletion's keyword arguments), given this loop's OpenAI client when it
    goes to the completions route."""
    if not str(call.get("model", "")).startswith("text-completion-openai/") or "client" in call:
        return call
    return {**call, "client": completion_client(call.get("api_base"), call.get("api_key"),
                                                float(call.get("timeout") or 600))}


async def send(call: dict) -> tuple[str, str, int, int]:
    """One call (litellm.acompletion's keyword arguments): (text, finish_reason, prompt tokens,
    completion tokens). A chat call to an OpenAI-compatible server takes rewardctl.lm.served's
    route (litellm's request and error layers, without its per-call pricing and logging);
    anything else, litellm.acompletion."""
    litellm = get_litellm()
    if served.eligible(call, litellm):
        return await served.complete(call, litellm)
    return read_reply(await litellm.acompletion(**with_client(call)))


def missing_keys(litellm, model: str) -> list[str]:
    """The API-key variables a hosted model needs and the environment lacks (alternatives: any one
    will do). Other settings litellm lists (base URLs, cloud credentials that may come from a
    profile) are not checked."""
    try:
        found = litellm.validate_environment(model=model)
    except Exception:  # noqa: BLE001 (litellm raises for providers it cannot check)
        return []
    if found.get("keys_in_environment"):
        return []
    return [key for key in found.get("missing_keys") or [] if key.endswith("_API_KEY")]
