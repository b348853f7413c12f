"""The LM client: every call goes through litellm, behind the response cache: a chat call to an
OpenAI-compatible server through its request and error layers (rewardctl.lm.served), any other
through ``litellm.acompletion``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from rewardctl.errors import InputError, RunError, one_line
from rewardctl.lm import litellm_setup
from rewardctl.lm.cache import ResponseCache, cache_key
from rewardctl.lm.calllog import CallLog
from rewardctl.lm.litellm_setup import get_litellm
from rewardctl.lm.local import get_engine
from rewardctl.lm.reply import read_reply
from rewardctl.lm.request import Request
from rewardctl.modelconfig import ModelConfig


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    latency_s: float
    cost_usd: float = 0.0  # 0 for a cache hit: nothing was paid
    requests: int | None = None  # requests sent for it, failed attempts included; unset: 0 if cached, else 1

    def __post_init__(self) -> None:
        if self.requests is None:
            self.requests = 0 if self.cached else 1


class ProviderError(Exception):
    """A request failed. ``fatal`` ones (bad key, unknown model) would fail every row alike;
    ``kind`` names a transient fault that outlasted the retries ("connection", "timeout",
    "rate_limit", "http_503"...), None for anything else."""

    def __init__(self, message: str, *, fatal: bool = False, kind: str | None = None, requests: int = 1):
        super().__init__(message)
        self.fatal = fatal
        self.kind = kind
        self.requests = requests  # sent before giving up


_FATAL = ("AuthenticationError", "PermissionDeniedError", "NotFoundError")
# Transient: timeouts, rate limits, server errors, dropped connections and unreadable replies
# (litellm reports the last three as 500s).
_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_RETRYABLE_NAMES = ("Timeout", "APIConnectionError", "RateLimitError", "InternalServerError",
                    "ServiceUnavailableError", "BadGatewayError", "APIError",
                    "RouterRateLimitError")  # every deployment cooling down after failures


GIVE_UP_CONNECTIONS = 10  # requests in a row that could not connect: the server is down
_RETRYABLE_KINDS = {"connection", "timeout", "empty_reply", "bad_reply"}
# Errors raised by the network below litellm (httpx, aiohttp, sockets), found in the cause chain.
_CONNECTION_NAMES = {"APIConnectionError", "ConnectError", "ConnectionRefusedError", "ClientConnectorError",
                     "ClientConnectorDNSError", "gaierror", "ConnectionResetError", "RemoteProtocolError",
                     "ServerDisconnectedError", "ClientOSError", "ReadError", "WriteError",
                     "ClientPayloadError", "ConnectionAbortedError", "BrokenPipeError"}
_CONNECTION_TEXT = ("Connection error", "Cannot connect to host", "Connection refused", "Name or service not known",
                    "Connection reset", "Server disconnected", "nodename nor servname", "Temporary failure in name")
# Unreadable bodies: invalid JSON or bytes that are not UTF-8.
_BAD_REPLY_NAMES = {"JSONDecodeError", "UnicodeDecodeError"}
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 12:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_connection(exc: BaseException) -> bool:
    chain = _chain(exc)
    return any(type(e).__name__ in _CONNECTION_NAMES for e in chain) or \
        any(text in str(e) for e in chain for text in _CONNECTION_TEXT)


def _network_reason(exc: BaseException) -> str:
    """The innermost readable reason ("[Errno 111] Connection refused"); litellm's wrapper
    messages say only "Connection error."."""
    if type(exc).__name__ == "WorkerError" and exc.reason:
        return exc.reason
    for inner in reversed(_chain(exc)):
        text = _OBJECT_REPR.sub("", one_line(str(inner), 200)).strip(" :")
        if text:
            return text
    return "connection failed"


def request_deadline(timeout: float) -> float:
    """Seconds a whole request may take: model.timeout, plus slack for litellm's own work on the
    client side (its first call in a process sets up for a second or more)."""
    return timeout * 1.1 + 1.0


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header (litellm keeps response headers on its exceptions)."""
    if type(exc).__name__ == "WorkerError":
        return exc.retry_after
    for headers in (getattr(exc, "litellm_response_headers", None),
                    getattr(getattr(exc, "response", None), "headers", None)):
        if not headers:
            continue
        value = dict(headers).get("retry-after") or dict(headers).get("Retry-After")
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:  # an HTTP date; anything else ("soon") is ignored
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError, IndexError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return max(0.0, when.timestamp() - time.time())
    return None


def _exc_name(exc: BaseException) -> str:
    """The exception's class name; for one raised in an LM worker process, the original's."""
    return getattr(exc, "name", None) if type(exc).__name__ == "WorkerError" else type(exc).__name__


def fault_kind(exc: BaseException) -> str:
    """The kind of a failed request, for usage's fault counts and for retrying."""
    if type(exc).__name__ == "WorkerError" and exc.kind:
        return exc.kind  # classified in the worker, where the cause chain is
    status = _status(exc)
    name = _exc_name(exc)
    chain_names = {type(e).__name__ for e in _chain(exc)}
    if name in ("Timeout", "TimeoutError") or status == 408 or chain_names & {"ReadTimeout", "ConnectTimeout", "TimeoutError"}:
        return "timeout"
    if status == 429:
        return "rate_limit"
    if name == "EmptyReply":
        return "empty_reply"
    if _is_connection(exc):
        return "connection"
    if chain_names & _BAD_REPLY_NAMES:
        return "bad_reply"
    return f"http_{status}" if status else name





def _served_key(call_name: str) -> str | None:
    """The key for a self-hosted server on an OpenAI route when model.api_key_env is unset:
    OPENAI_API_KEY if set, else a placeholder (a server started without --api-key accepts any
    key, but the OpenAI client refuses to send none)."""
    if call_name.split("/", 1)[0] not in ("openai", "text-completion-openai"):
        return None
    return os.environ.get("OPENAI_API_KEY") or "EMPTY"


def _wants_schema(params: dict[str, Any]) -> bool:
    fmt = params.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") == "json_schema"


class CallPool(Protocol):
    """Processes that make the litellm calls (rewardctl.lm.workers.WorkerPool)."""

    async def request(self, op: str, **fields: Any) -> dict[str, Any]: ...

    async def call(self, kwargs: dict[str, Any], router: list[dict[str, Any]] | None = None) -> dict[str, Any]: ...


class LMClient:
    def __init__(self, config: ModelConfig, cache: ResponseCache | None = None, pool: CallPool | None = None):
        self.config = config
        self.cache = cache
        self.pool = pool  # a rewardctl.lm.workers.WorkerPool: litellm runs in worker processes
        self.requests = 0  # every request sent to the provider, failed ones included
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._secrets: set[str] = set()  # every key in use, scrubbed from messages
        self._api_key = self._read_api_key()
        if self._api_key not in (None, "EMPTY"):
            self._secrets.add(self._api_key)
        for deployment in config.deployments or []:
            self._read_deployment_key(deployment)  # a missing variable is a usage error up front
        self._supports_schema: bool | None = None
        self._structured: str | None = None  # the structured-output mode in use (auto: found out)
        self._probing = False  # auto on a self-hosted server: a refusal steps the mode down
        self.retried = 0  # attempts repeated after a transient failure
        self.failed_requests = 0  # requests that failed (counted in requests too)
        self.connection_failures = 0  # requests in a row that could not reach the server
        self._missing_keys: asyncio.Future | None = None  # found out at the first request
        self._jitter = random.Random(0)  # spreads retries; it never changes a result
        self.faults: dict[str, int] = {}  # transient failures seen, by kind
        self.cost_usd = 0.0  # spent on requests this run (cache hits cost nothing)
        self._prices: tuple[float, float] | bool | None = False  # False: not looked up yet
        self._router = None
        self.log: CallLog | None = None  # eval --log-requests: every call and its reply, as it goes

    @property
    def probing(self) -> bool:
        """structured_output auto on a self-hosted server litellm knows nothing of, not yet
        answered: json_schema goes first; a refusal steps down to json_object, then to none."""
        return self._probing

    @property
    def secrets(self) -> frozenset[str]:
        """The keys this client sends: scrubbed from everything written or shown."""
        return frozenset(self._secrets)

    def _read_api_key(self) -> str | None:
        name = self.config.api_key_env
        if not name:
            return _served_key(self.config.call_name()) if self.config.api_base else None
        value = os.environ.get(name)
        if not value:
            raise InputError(f"the environment variable {name} is not set", field="model.api_key_env")
        return value

    def warm_up(self) -> None:
        """Begin loading a local model in the background; errors surface on the first call."""
        if not self.config.is_local:
            return
        with contextlib.suppress(RunError):
            get_engine(self.config.resolved_name.removeprefix("local/")).warm_up()

    def params(self, request: Request, *, grammar: str | None = None,
               response_format: dict[str, Any] | None = None,
               overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The sampling parameters of one call (the cache key is built from these)."""
        cfg = self.config
        params: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        for name in ("top_p", "top_k", "seed"):
            value = getattr(cfg, name)
            if value is not None:  # 0 is a valid seed and a valid top_k
                params[name] = value
        stop = list(request.stop) + [s for s in (cfg.stop or []) if s not in request.stop]
        if stop:
            params["stop"] = stop
        if cfg.api_base:
            params["api_base"] = cfg.api_base
        params.update(cfg.extra)
        if grammar is not None:
            params["grammar"] = grammar
        if response_format is not None:
            params["response_format"] = response_format
        if overrides:
            params.update(overrides)
        return params

    def call_params(self, request: Request, *, grammar: str | None = None,
                    response_format: dict[str, Any] | None = None,
                    overrides: dict[str, Any] | None = None, sample: int = 0) -> dict[str, Any]:
        """params(), with sample ``sample``'s seed (--repeat)."""
        params = self.params(request, grammar=grammar, response_format=response_format,
                             overrides=overrides)
        if sample:  # --repeat: each sample its own seed (a fixed seed would repeat one sample)
            params["seed"] = params.get("seed", 0) + sample
        return params

    async def call_arguments(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        """litellm.acompletion's keyword arguments for one call (API key included: never write
        them out unredacted). Every request is built here, and `rewardctl render` shows these."""
        kwargs = dict(params)
        if not self.config.is_local:
            kwargs["drop_params"] = True  # e.g. top_k or seed where a provider lacks them
            if self.config.extra:  # what the user asked for explicitly is sent, never dropped
                kwargs["allowed_openai_params"] = sorted(self.config.extra)
            if _wants_schema(kwargs):
                self._shape_response_format(kwargs, await self._structured_mode())
        return self._build_call(request, kwargs)

    async def complete(self, request: Request, *, grammar: str | None = None,
                       response_format: dict[str, Any] | None = None,
                       overrides: dict[str, Any] | None = None, use_cache: bool = True,
                       sample: int = 0, attempt: int = 0, refresh: bool = False) -> Completion:
        """One reply. ``attempt`` > 0 (a parse retry) is its own cache entry, so a retry reaches
        the provider instead of replaying the reply that failed, and a rerun replays both."""
        params = self.call_params(request, grammar=grammar, response_format=response_format,
                                  overrides=overrides, sample=sample)
        key = None
        if self.cache is not None and use_cache:
            payload = {"model": self.config.resolved_name, "messages": request.messages,
                       "params": params, "sample": sample}
            if attempt:
                payload["attempt"] = attempt  # first attempts keep the keys they always had
            key = cache_key(payload)
            hit = None if refresh else self.cache.get(key)
            if hit is not None:
                completion = Completion(hit["text"], hit.get("finish_reason", "stop"),
                                        hit.get("prompt_tokens", 0), hit.get("completion_tokens", 0),
                                        cached=True, latency_s=0.0)
                if self.log is not None:
                    self.log.cached(await self.call_arguments(request, params), completion, attempt)
                return completion
        completion = await self._call(request, params, attempt)
        if key is not None:
            self.cache.set(key, {"text": completion.text, "finish_reason": completion.finish_reason,
                                 "prompt_tokens": completion.prompt_tokens,
                                 "completion_tokens": completion.completion_tokens})
        return completion

    def _scrub(self, text: str) -> str:
        """Keys never reach a message (providers sometimes echo the Authorization header)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter (uniform up to base * 2^attempt, capped), or the server's Retry-After."""
        if retry_after is not None:
            return min(retry_after, self.config.backoff_max)
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2**attempt)
        return self._jitter.uniform(0, ceiling)

    def supports_response_schema(self, litellm: Any) -> bool:
        if self._supports_schema is None:
            try:
                self._supports_schema = bool(litellm.supports_response_schema(model=self.config.name))
            except Exception:  # noqa: BLE001 (unknown models raise; treat as unsupported)
                self._supports_schema = False
        return self._supports_schema

    def prices(self, lookup: bool = True) -> tuple[float, float] | None:
        """USD per (prompt, generated) token: the spec's, else litellm's bundled price map (read
        offline), else 0 for local/ models; None when nobody knows the price. ``lookup=False``
        never imports litellm for the map (a run answered from the cache needs no price)."""
        if self._prices is False and not lookup and not self.config.is_local and \
                self.config.input_cost_per_token is None:
            return None
        if self._prices is False:
            cfg = self.config
            if cfg.input_cost_per_token is not None and cfg.output_cost_per_token is not None:
                self._prices = (cfg.input_cost_per_token, cfg.output_cost_per_token)
            elif cfg.is_local:
                self._prices = (0.0, 0.0)
            else:
                try:
                    info = get_litellm().get_model_info(model=cfg.name)
                    prompt, completion = info.get("input_cost_per_token"), info.get("output_cost_per_token")
                    self._prices = (float(prompt), float(completion)) if prompt is not None and completion is not None else None
                except Exception:  # noqa: BLE001 (litellm raises when the map lacks the model)
                    self._prices = None
        return self._prices

    async def resolve_prices(self) -> tuple[float, float] | None:
        """prices(), asking an LM worker for litellm's map when a pool is in use (the main
        process then never imports litellm)."""
        if self._prices is False and self.pool is not None and not self.config.is_local and \
                self.config.input_cost_per_token is None:
            reply = await self.pool.request("prices", model=self.config.name)
            found = reply.get("prices")
            self._prices = (float(found[0]), float(found[1])) if found and None not in found else None
        return self.prices()

    async def _structured_mode(self) -> str:
        """How this client sends the output schema: model.structured_output, or for 'auto' what
        litellm knows of the model, or for a self-hosted server what it has not refused yet."""
        setting = self.config.structured_output
        if setting != "auto":
            return setting
        if self._structured is None:
            if await self._schema_supported():
                self._structured = "json_schema"
            else:
                self._structured = "json_schema" if self.config.api_base else "off"
                self._probing = self.config.api_base is not None
        return self._structured

    @staticmethod
    def _shape_response_format(kwargs: dict[str, Any], mode: str) -> None:
        """Turn the program's json_schema response_format into what ``mode`` sends."""
        if mode == "json_schema":
            return
        fmt = kwargs.pop("response_format")
        if mode == "json_object":
            # llama.cpp's server (and vLLM) constrain decoding to a schema given this way.
            kwargs["response_format"] = {"type": "json_object", "schema": fmt["json_schema"]["schema"]}
        # "off": the JSON Schema stays in the system prompt, and parsing retries cover the rest.

    def _refused_response_format(self, call: dict[str, Any], exc: BaseException) -> bool:
        """A self-hosted server answering 4xx/5xx to its first structured-output requests
        (llama.cpp's answers 500 to json_schema): step down to the next mode and remember it. The
        failed request still counts as a fault and a retry."""
        if not self._probing or _status(exc) not in (400, 404, 415, 422, 500, 501):
            return False
        fmt = call.get("response_format")
        if not isinstance(fmt, dict):
            return False
        if fmt.get("type") == "json_schema":
            self._structured = "json_object"
            call["response_format"] = {"type": "json_object", "schema": fmt["json_schema"]["schema"]}
        else:
            self._structured = "off"
            self._probing = False
            call.pop("response_format")
        return True

    async def _schema_supported(self) -> bool:
        if self._supports_schema is None:
            if self.pool is not None:
                self._supports_schema = bool((await self.pool.request("schema", model=self.config.name))["supported"])
            else:
                self.supports_response_schema(get_litellm())
        return bool(self._supports_schema)

    def run_cost(self) -> float | None:
        """USD spent by this client: 0 when every answer came from the cache; None if unpriced."""
        if self.requests == 0:
            return 0.0
        return None if self.prices() is None else round(self.cost_usd, 12)

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        prices = self.prices()
        return 0.0 if prices is None else prompt_tokens * prices[0] + completion_tokens * prices[1]

    def model_list(self) -> list[dict[str, Any]]:
        cfg = self.config
        model_list = []
        for deployment in cfg.deployments or []:
            params: dict[str, Any] = {"model": cfg.call_name(deployment.model or cfg.name),
                                      "api_base": deployment.api_base}
            key = self._read_deployment_key(deployment)
            if key is not None:
                params["api_key"] = key
            for name in ("weight", "rpm", "tpm"):
                if getattr(deployment, name) is not None:
                    params[name] = getattr(deployment, name)
            model_list.append({"model_name": "rewardctl", "litellm_params": params})
        return model_list

    def _get_router(self, litellm: Any):
        """litellm's Router over model.deployments: simple-shuffle (random by weight), and servers
        that keep failing cool down for a while. Retries stay ours (num_retries=0 there)."""
        if self._router is None:
            self._router = litellm.Router(model_list=self.model_list(), routing_strategy="simple-shuffle",
                                          num_retries=0, allowed_fails=2, cooldown_time=5)
        return self._router

    def _read_deployment_key(self, deployment: Any) -> str | None:
        name = deployment.api_key_env or self.config.api_key_env
        if name:
            value = os.environ.get(name)
            if not value:
                raise InputError(f"the environment variable {name} is not set", field="model.deployments")
            self._secrets.add(value)
            return value
        key = _served_key(self.config.call_name(deployment.model or self.config.name))
        if key not in (None, "EMPTY"):
            self._secrets.add(key)
        return key

    # --- token-level access (teacher forcing, exact sampling) ---------------------------------

    def _engine(self, purpose: str):
        if not self.config.is_local:
            raise ProviderError(f"{purpose} needs token-level sampling from the model's full "
                                f"distribution, which only local/ models give; {self.config.name} "
                                "does not", fatal=True)
        return get_engine(self.config.resolved_name.removeprefix("local/"))

    async def continuation_logprobs(self, prompt: str, continuation: str) -> list[tuple[str, float]]:
        """(token, log-probability) of each token of ``continuation`` after ``prompt``, by teacher
        forcing. Local models evaluate once and read only the continuation's logits; other
        providers need an OpenAI-compatible completions endpoint that echoes the prompt's
        log-probabilities (vLLM, llama.cpp's server) or returns vLLM's prompt_logprobs."""
        if self.config.is_local:
            # tokens imports numpy: only token-level work (KL, log-probabilities) needs it.
            from rewardctl.lm import tokens

            engine = self._engine("scoring a continuation")

            def run(llama):
                ids = tokens.tokenize_continuation(llama, continuation)
                logps = tokens.score_continuation(llama, prompt, ids)
                return [(llama.detokenize([i]).decode("utf-8", "replace"), lp) for i, lp in zip(ids, logps, strict=True)]

            return await engine.run_token_op(run)
        return await self._remote_continuation_logprobs(prompt, continuation)

    async def _remote_continuation_logprobs(self, prompt: str, continuation: str) -> list[tuple[str, float]]:
        litellm = get_litellm()
        model = self.config.name.split("/", 1)[1] if "/" in self.config.name else self.config.name
        kwargs: dict[str, Any] = {"custom_llm_provider": "text-completion-openai", "echo": True, "logprobs": 1,
                                  "max_tokens": 1, "temperature": 0, "timeout": self.config.timeout,
                                  "extra_body": {"prompt_logprobs": 1}}
        if self.config.api_base:
            kwargs["api_base"] = self.config.api_base
        if self._api_key is not None:
            kwargs["api_key"] = self._api_key
        what = (f"{self.config.name} returned no prompt log-probabilities: scoring a continuation needs an "
                "OpenAI-compatible completions endpoint with echo and logprobs (vLLM, llama.cpp's server) "
                "or vLLM's prompt_logprobs")
        try:
            response = await litellm.atext_completion(model=model, prompt=prompt + continuation, **kwargs)
        except Exception as exc:  # noqa: BLE001 (litellm raises provider-specific classes)
            raise ProviderError(f"{what} ({one_line(f'{type(exc).__name__}: {exc}', 200)})", fatal=True) from None
        choice = response.choices[0]
        logprobs = getattr(choice, "logprobs", None)
        if logprobs is not None and getattr(logprobs, "text_offset", None) and getattr(logprobs, "token_logprobs", None):
            start = len(prompt)
            out = [(tok, float(lp)) for tok, lp, off in zip(logprobs.tokens, logprobs.token_logprobs,
                                                             logprobs.text_offset, strict=False)
                   if off >= start and off < start + len(continuation) and lp is not None]
            if out:
                return out
        raise ProviderError(what, fatal=True)

    async def sample_tokens(self, prompt: str, *, n: int, max_tokens: int, stop: list[str], seed: int):
        """``n`` samples drawn from the full softmax at temperature 1 (rewardctl.lm.tokens.sample)."""
        # tokens imports numpy: only token-level work (KL, log-probabilities) needs it.
        import numpy as np

        from rewardctl.lm import tokens

        engine = self._engine("KL estimation")
        rng = np.random.default_rng(seed)
        return await engine.run_token_op(tokens.sample, prompt, n=n, max_tokens=max_tokens, stop=stop, rng=rng)

    async def score_sampled(self, prompt: str, samples: list[Any]) -> list[list[float]]:
        # tokens imports numpy: only token-level work (KL, log-probabilities) needs it.
        from rewardctl.lm import tokens

        engine = self._engine("KL estimation")
        return await engine.run_token_op(tokens.score_sampled, prompt, samples)

    async def _check_credentials(self, litellm: Any) -> None:
        """A hosted API whose key is not set fails at the first request, naming the variable to
        set (litellm would answer every row with a 500 or a long message)."""
        cfg = self.config
        if cfg.is_local or cfg.is_served or cfg.api_key_env or "mock_response" in cfg.extra:
            return
        if self._missing_keys is None:
            if self.pool is not None:
                lookup = self.pool.request("env", model=cfg.name)
            else:
                lookup = asyncio.sleep(0, {"missing": litellm_setup.missing_keys(litellm, cfg.name)})
            self._missing_keys = asyncio.ensure_future(lookup)
        missing = (await asyncio.shield(self._missing_keys))["missing"]
        if missing:
            raise InputError(f"{cfg.name} needs an API key: set {' or '.join(missing)} (or name the variable "
                             "that holds it in model.api_key_env)", field="model.name")

    def _build_call(self, request: Request, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.config.deployments:
            return {"model": "rewardctl", "messages": request.messages, "timeout": self.config.timeout, **kwargs}
        if self._api_key is not None:
            kwargs["api_key"] = self._api_key
        return {"model": self.config.call_name(), "messages": request.messages,
                "timeout": self.config.timeout, "num_retries": 0, **kwargs}

    async def _send(self, call: dict[str, Any], model_list: list[dict[str, Any]] | None,
                    litellm: Any) -> tuple[str, str, int, int]:
        """One request, in a worker or in-process: (text, finish_reason, prompt and completion
        tokens). model.timeout is a deadline for the whole request, a body that trickles in
        included (the HTTP client's timeout only bounds each read)."""
        deadline = request_deadline(self.config.timeout)
        if self.pool is not None:  # the worker keeps the same deadline; this one is its backstop
            reply = await asyncio.wait_for(self.pool.call(call, model_list), deadline + 1)
            return reply["text"], reply["finish_reason"], reply["prompt_tokens"], reply["completion_tokens"]
        if model_list is not None:
            return read_reply(await asyncio.wait_for(self._get_router(litellm).acompletion(**call), deadline))
        return await asyncio.wait_for(litellm_setup.send(call), deadline)

    async def _call(self, request: Request, params: dict[str, Any], parse_attempt: int = 0) -> Completion:
        litellm = None
        if self.pool is None:
            if not litellm_setup.is_loaded():
                self.warm_up()  # the model loads while litellm imports
            litellm = litellm_setup.get_litellm()
        await self._check_credentials(litellm)
        started = time.perf_counter()
        call = await self.call_arguments(request, params)
        model_list = self.model_list() if self.config.deployments else None
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            self.requests += 1
            sending = time.perf_counter()
            try:
                text, finish_reason, prompt_tokens, completion_tokens = await self._send(call, model_list, litellm)
            except RunError:
                raise
            except Exception as exc:  # noqa: BLE001 (litellm raises many provider-specific classes)
                self.failed_requests += 1
                if self.log is not None:  # before a refused response_format is stepped down in call
                    self.log.sent(call, parse_attempt, attempt, time.perf_counter() - sending,
                                  error=self._scrub(one_line(f"{_exc_name(exc)}: {exc}", 400)),
                                  fault=fault_kind(exc))
                wait = self._after_failure(exc, call, attempt + 1 == attempts, attempt)
                self.retried += 1
                if wait:
                    await asyncio.sleep(wait)
            else:
                if self.log is not None:
                    self.log.sent(call, parse_attempt, attempt, time.perf_counter() - sending,
                                  reply=(text, finish_reason, prompt_tokens, completion_tokens))
                break
        latency = time.perf_counter() - started
        self._probing = False  # the server took this mode: later failures are faults, not refusals
        self.connection_failures = 0
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if self._prices is False:
            await self.resolve_prices()
        cost = self._cost(prompt_tokens, completion_tokens)
        self.cost_usd += cost
        return Completion(text, finish_reason, prompt_tokens, completion_tokens,
                          cached=False, latency_s=latency, cost_usd=cost, requests=attempt + 1)

    def _after_failure(self, exc: BaseException, call: dict[str, Any], last: bool, attempt: int) -> float:
        """Classify a failed request: raise ProviderError when it is final, else return the wait
        before the next attempt (0 for a refused response_format, asked again stepped down)."""
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, RunError):
            raise cause from None
        name = _exc_name(exc)
        # litellm reports a missing key as a 500; no retry will supply one.
        fatal = name in _FATAL or "Missing credentials" in str(exc)
        kind = None if fatal else fault_kind(exc)
        retryable = kind is not None and (_status(exc) in _RETRYABLE_STATUS or name in _RETRYABLE_NAMES
                                          or kind in _RETRYABLE_KINDS)
        stepped_down = not fatal and not last and self._refused_response_format(call, exc)
        if retryable or stepped_down:
            self.faults[kind] = self.faults.get(kind, 0) + 1
        if kind == "connection":
            self.connection_failures += 1
            # A server that refused this many requests in a row, across rows, is down: each row
            # then fails at once, and the run stops on the outage instead of backing off row by row.
            last = last or self.connection_failures >= GIVE_UP_CONNECTIONS
        if not (retryable or stepped_down) or last:
            tries = f" (after {attempt + 1} attempts)" if attempt else ""
            raise ProviderError(self._describe_failure(exc, kind, call) + tries, fatal=fatal,
                                kind=kind if retryable else None, requests=attempt + 1) from None
        return 0.0 if stepped_down else self._backoff(attempt, _retry_after(exc))

    def _describe_failure(self, exc: BaseException, kind: str | None, call: dict[str, Any]) -> str:
        """One line: for a connection failure, the server's URL and the network's reason; else the
        provider's message. Never a key, never an object's repr."""
        if kind == "connection":
            where = call.get("api_base") or self.config.api_base or (
                "the model.deployments servers" if self.config.deployments else f"{self.config.name}'s API")
            text = f"cannot connect to {where}: {_network_reason(exc)}"
        elif kind == "timeout" and isinstance(exc, TimeoutError):
            text = f"no complete reply within model.timeout ({self.config.timeout:g} s)"
        else:
            text = f"{_exc_name(exc)}: {exc}"
        return self._scrub(_OBJECT_REPR.sub("", one_line(text, 400)))
