"""The served chat route: a chat call to an OpenAI-compatible server (``openai/`` or
``hosted_vllm/`` with an api_base) through litellm's request and error layers, without the
bookkeeping ``litellm.acompletion`` wraps around every call.

Why: litellm.acompletion spends 2.5-4.5 ms of CPU per call on such a server, about half of it
pricing the reply (ten model-info lookups per call for a model its map does not know) and
building its standard logging payload; rewardctl prices calls itself and keeps its own log, so
both are thrown away. On two cores that was the limit of a large eval (issue 17). Measured side
by side (bench/eval_throughput.py): this route costs about a tenth of it.

What stays litellm's, done as its own HTTP handler does it for these providers:
  - the body: ``get_llm_provider`` (the route's key and base), ``get_optional_params`` (drop_params,
    allowed_openai_params, provider-specific parameters such as top_k), the route's provider
    config (``transform_request``, ``transform_extra_body``, ``validate_environment`` for the
    headers, ``get_complete_url``). tests/test_served_route.py checks the body equals what
    ``litellm.acompletion`` sends, parameter for parameter;
  - the errors: a reply that is not 2xx becomes the provider config's error class, with the
    server's message and headers (Retry-After), then ``litellm.exception_type``'s exception
    (RateLimitError, AuthenticationError, InternalServerError...), as from litellm.acompletion; a
    network failure or an unreadable reply goes through ``exception_type`` too;
  - the finish reason: ``map_finish_reason``.
The body goes out on an aiohttp session per event loop (aiohttp is litellm's own transport).
litellm's ``aiohttp_openai/`` route, the cheap one it offers, does not keep what rewardctl needs:
its replies lose usage, it sends extra_body unmerged, and it reports every HTTP error as a 500
(a 429 is not a rate limit, a 401 is not fatal).

A call outside this shape (model.deployments, the completions route, streaming, tools, extra
headers, any litellm-only argument) goes through litellm.acompletion as before.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson

from rewardctl.lm.reply import read_json
from rewardctl.modelconfig import ModelConfig

ROUTES = ("openai", "hosted_vllm")
# Arguments rewardctl gives every call (LMClient._build_call); litellm.acompletion handles them
# itself, so they are not sampling parameters.
_CALL_ARGS = frozenset({"model", "messages", "timeout", "num_retries", "api_base", "api_key", "drop_params",
                        "allowed_openai_params"})
# OpenAI arguments that change the transport or the reply's shape: those calls keep litellm.acompletion.
_OTHER_SHAPES = frozenset({"stream", "stream_options", "n", "extra_headers", "extra_query", "default_headers",
                           "base_url", "organization", "api_version", "deployment_id", "max_retries",
                           "request_timeout", "tools", "tool_choice", "functions", "function_call",
                           "parallel_tool_calls", "grammar", "web_search_options", "audio", "modalities"})


@dataclass(frozen=True)
class Plan:
    """What litellm makes of a call's arguments, but for its messages: the same for every row."""

    provider: str
    model: str
    url: str
    headers: dict[str, str]
    optional_params: dict[str, Any]
    extra_body: dict[str, Any] | None
    config: Any  # the route's litellm provider config
    proxy: Any  # from HTTP(S)_PROXY / NO_PROXY, as litellm's aiohttp transport finds it


_plans: dict[bytes, Plan] = {}
_LITELLM_ONLY: frozenset[str] | None = None
_timeouts: dict[float, Any] = {}
# id(loop) -> (the loop, its aiohttp session, the async generator that closes it)
_sessions: dict[int, tuple[asyncio.AbstractEventLoop, Any, AsyncGenerator[None, None]]] = {}


def takes(config: ModelConfig) -> bool:
    """Whether a model's calls take this route (bar a litellm-only argument in model.extra):
    chat calls to one OpenAI-compatible server."""
    provider = config.name.partition("/")[0]
    return provider in ROUTES and bool(config.api_base) and not config.deployments and \
        config.call_name().partition("/")[0] == provider


def eligible(call: dict[str, Any], litellm: Any) -> bool:
    """Whether ``call`` (litellm.acompletion's keyword arguments) takes this route."""
    provider, _, model = str(call.get("model", "")).partition("/")
    if provider not in ROUTES or not model or not call.get("api_base") or "client" in call:
        return False
    others = call.keys() - _CALL_ARGS
    return not (others & _OTHER_SHAPES or others & _litellm_only())


def _litellm_only() -> frozenset[str]:
    """litellm.acompletion's own arguments (pricing, callbacks, metadata, mock_response...)."""
    global _LITELLM_ONLY
    if _LITELLM_ONLY is None:
        # litellm: loaded by the time a call is made.
        from litellm.types.utils import all_litellm_params

        _LITELLM_ONLY = frozenset(all_litellm_params)
    return _LITELLM_ONLY


def _plan_key(call: dict[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in call.items() if k != "messages"}, option=orjson.OPT_SORT_KEYS, default=repr)


def plan(call: dict[str, Any], litellm: Any) -> Plan:
    """The call's plan, made once per distinct set of arguments (a run has one or a few)."""
    key = _plan_key(call)
    found = _plans.get(key)
    if found is None:
        if len(_plans) >= 4096:  # --repeat seeds, optimize's candidates: bounded all the same
            _plans.clear()
        found = _plans[key] = _make_plan(call, litellm)
    return found


def _make_plan(call: dict[str, Any], litellm: Any) -> Plan:
    # litellm: loaded by the time a call is made.
    from litellm.utils import ProviderConfigManager, get_optional_params

    model, provider, key, api_base = litellm.get_llm_provider(model=call["model"], api_base=call.get("api_base"),
                                                              api_key=call.get("api_key"))
    key = call.get("api_key") or key
    config = ProviderConfigManager.get_provider_chat_config(model=model, provider=litellm.LlmProviders(provider))
    sampling = {k: v for k, v in call.items() if k not in _CALL_ARGS}
    optional = get_optional_params(model=model, custom_llm_provider=provider, drop_params=call.get("drop_params"),
                                   allowed_openai_params=call.get("allowed_openai_params"),
                                   messages=call["messages"], **sampling)
    optional.pop("json_mode", None)
    extra_body = optional.pop("extra_body", None)
    litellm_params = {"api_base": api_base, "custom_llm_provider": provider}
    headers = config.validate_environment(headers={}, model=model, messages=call["messages"],
                                          optional_params=optional, litellm_params=litellm_params,
                                          api_key=key, api_base=api_base)
    url = config.get_complete_url(api_base=api_base, api_key=key, model=model, optional_params=optional,
                                  litellm_params=litellm_params, stream=False)
    return Plan(provider, model, url, headers, optional, extra_body, config, _proxy(litellm, url))


def _proxy(litellm: Any, url: str) -> Any:
    """The proxy for ``url`` from the environment (HTTP(S)_PROXY, NO_PROXY), unless litellm is told
    not to use one, as litellm's aiohttp transport finds it; looked up once, not per request."""
    if litellm.disable_aiohttp_trust_env or os.getenv("DISABLE_AIOHTTP_TRUST_ENV", "").lower() == "true":
        return None
    # aiohttp and yarl: loaded with litellm, which this route runs after; not at start-up.
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return get_env_proxy_for_url(URL(url))[0]
    except LookupError:  # no proxy, or not for this host
        return None


def body(call: dict[str, Any], litellm: Any) -> tuple[str, dict[str, Any]]:
    """(URL, JSON body) of ``call`` on this route: litellm's provider config builds it."""
    return _body(plan(call, litellm), call)


def _body(p: Plan, call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    litellm_params = {"api_base": call.get("api_base"), "custom_llm_provider": p.provider}
    data = p.config.transform_request(model=p.model, messages=call["messages"], optional_params=dict(p.optional_params),
                                      litellm_params=litellm_params, headers={})
    data.pop("stream", None)  # False: not streaming, as litellm's chat handlers send it
    if p.extra_body is not None:
        data = {**data, **p.config.transform_extra_body(extra_body=p.extra_body, request=data, model=p.model,
                                                        litellm_params=litellm_params)}
    return p.url, data


async def _session() -> Any:
    """This event loop's aiohttp session, made as litellm makes its own (its TCP connector
    settings, SSL configuration, proxy policy, no cookies). It is closed by close(), or else when
    the loop shuts down (asyncio.run closes its async generators then, and one holds the session):
    a caller who never calls close() gets no "Unclosed client session" at exit."""
    loop = asyncio.get_running_loop()
    found = _sessions.get(id(loop))
    if found is not None and found[0] is loop and not found[1].closed:
        return found[1]
    # litellm: loaded by the time a call is made.
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler, get_ssl_configuration

    ssl_config = get_ssl_configuration()
    transport = AsyncHTTPHandler.create_aiohttp_transport(
        ssl_verify=ssl_config if isinstance(ssl_config, bool) else None,
        ssl_context=None if isinstance(ssl_config, (bool, str)) else ssl_config)
    session = transport.get_valid_client_session()
    closer = _close_at_shutdown(loop, session)
    await closer.__anext__()
    _sessions[id(loop)] = (loop, session, closer)
    return session


async def _close_at_shutdown(loop: asyncio.AbstractEventLoop, session: Any) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        if _sessions.get(id(loop), (None, None))[1] is session:
            del _sessions[id(loop)]
        await session.close()


def _timeout(seconds: float) -> Any:
    """model.timeout bounds connecting and each read, as the HTTP client's timeout does on
    litellm.acompletion (rewardctl's deadline bounds the whole request)."""
    found = _timeouts.get(seconds)
    if found is None:
        # aiohttp: loaded with litellm, which this route runs after; not at start-up.
        import aiohttp

        found = _timeouts[seconds] = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
    return found


async def close() -> None:
    """Close this event loop's session."""
    found = _sessions.get(id(asyncio.get_running_loop()))
    if found is not None:
        await found[2].aclose()


async def complete(call: dict[str, Any], litellm: Any) -> tuple[str, str, int, int]:
    """(text, finish_reason, prompt tokens, completion tokens) of ``call``; raises the exception
    litellm.acompletion raises for the same failure (its class, status, message and headers)."""
    try:
        p = plan(call, litellm)
        url, data = _body(p, call)
    except Exception as exc:  # a parameter litellm refuses, mapped as litellm.acompletion maps it
        raise litellm.exception_type(model=call["model"], custom_llm_provider=call["model"].split("/")[0],
                                     original_exception=exc) from exc
    timeout = float(call.get("timeout") or 600)
    try:
        session = await _session()
        async with session.post(url, data=_dumps(data), headers=p.headers, timeout=_timeout(timeout),
                                proxy=p.proxy, allow_redirects=False) as response:
            raw, status, headers = await response.read(), response.status, response.headers
    except TimeoutError as exc:  # aiohttp's connect and read timeouts: litellm's Timeout, as from httpx's
        raise litellm.Timeout(message=f"Request timed out. - timeout value={timeout:g}", model=p.model,
                              llm_provider=p.provider) from exc
    except Exception as exc:  # the network: a 500, "Connection error." on openai/ (the OpenAI SDK's words)
        message = "Connection error." if p.provider == "openai" else str(exc)
        raise _mapped(litellm, p, p.config.get_error_class(error_message=message, status_code=500,
                                                           headers={})) from exc
    if status >= 300:
        raise _mapped(litellm, p, p.config.get_error_class(error_message=_error_message(p, raw), status_code=status,
                                                           headers=dict(headers)))
    try:
        reply = json.loads(raw)
    except ValueError as exc:  # not JSON, or not UTF-8: a 500 (openai/) or litellm's "Unable to get json response"
        raise _mapped(litellm, p, _unreadable(p, exc, raw)) from exc
    return read_json(reply, _finish_reason)


def _mapped(litellm: Any, p: Plan, exc: Exception) -> Exception:
    return litellm.exception_type(model=p.model, custom_llm_provider=p.provider, original_exception=exc,
                                  completion_kwargs={}, extra_kwargs={})


def _error_message(p: Plan, raw: bytes) -> str:
    """The message of an error reply: on openai/ the OpenAI SDK's (the body's error.message when
    there is one), else the body, as litellm's HTTP handler gives it."""
    text = raw.decode("utf-8", "replace")
    if p.provider == "openai":
        try:
            message = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return text
        if isinstance(message, str):
            return message
    return text


def _unreadable(p: Plan, exc: Exception, raw: bytes) -> Exception:
    if p.provider == "openai":
        return p.config.get_error_class(error_message=str(exc), status_code=500, headers={})
    return p.config.get_error_class(error_message=f"Unable to get json response - {exc}, Original Response: "
                                                  f"{raw.decode('utf-8', 'replace')}", status_code=200, headers={})


def _dumps(data: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:  # an integer past 64 bits, a type orjson does not know
        return json.dumps(data).encode()


def _finish_reason(reason: str) -> str:
    # litellm: loaded by the time a reply is read.
    from litellm.litellm_core_utils.core_helpers import map_finish_reason

    return map_finish_reason(reason)
