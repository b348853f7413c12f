"""Load a reward model folder and score (prompt, response) text pairs, in batches.

Two kinds of folder, told apart by their files:
- a Hugging Face sequence-classification model (``config.json`` + weights + tokenizer): the pair
  is tokenized as a text pair, and the model's logits (one per label) come back;
- a rewardctl embedding head (``reward_model.json``, from ``rewardctl train-reward``): the
  pair is embedded by the sentence model it names, and the head's one logit comes back.
Models load from local files only; a hub name is refused. Inference runs on one dedicated thread
(CPU, or CUDA when asked or available), so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rewardctl.embeddings import _offline_quiet_env, get_embedder
from rewardctl.errors import InputError, RunError, one_line
from rewardctl.rm.head import features, is_head_folder, load_head


def pick_device(device: str) -> str:
    # torch takes seconds to import: only reward models and training need it.
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("device 'cuda' was asked for, but torch sees no GPU")
    return device


class RewardModelScorer:
    def __init__(self, path: Path, *, device: str = "auto", batch_size: int = 16, max_length: int = 512):
        if not path.is_dir():
            raise InputError(f"'{path}' is not a local model folder (rewardctl never downloads models)",
                             field="model")
        self.path = path
        self.batch_size = batch_size
        self.max_length = max_length
        self.device_request = device
        self.kind = "head" if is_head_folder(path) else "hf"
        if self.kind == "hf" and not (path / "config.json").is_file():
            raise InputError(f"'{path}' holds neither a Hugging Face model (config.json) nor a "
                             "rewardctl reward model (reward_model.json)", field="model")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardctl-rm")
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] | None = None
        self.labels: list[str] = ["score"]

    def _load(self) -> dict[str, Any]:
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            _offline_quiet_env()
            try:
                if self.kind == "head":
                    self._loaded = self._load_head()
                else:
                    self._loaded = self._load_hf()
            except (InputError, RunError):
                raise
            except Exception as exc:
                raise RunError(f"cannot load reward model {self.path}: {one_line(exc)}") from exc
            return self._loaded

    def _load_head(self) -> dict[str, Any]:
        head, config = load_head(self.path)
        embedding = config["embedding"]
        embedder = get_embedder(embedding["backend"], embedding["model"], base_dir=self.path)
        return {"head": head, "config": config, "embedder": embedder}

    def _load_hf(self) -> dict[str, Any]:
        # transformers takes seconds to import: only the runs that load a model need it.
        import transformers
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        device = pick_device(self.device_request)
        tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(str(self.path), local_files_only=True)
        model.to(device).eval()
        id2label = getattr(model.config, "id2label", None) or {}
        self.labels = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(model.config.num_labels)]
        return {"tokenizer": tokenizer, "model": model, "device": device}

    def _hf_logits(self, prompts: list[str], responses: list[str]):
        # torch takes seconds to import: only reward models and training need it.
        import numpy as np
        import torch

        loaded = self._load()
        tokenizer, model, device = loaded["tokenizer"], loaded["model"], loaded["device"]
        out = []
        for start in range(0, len(responses), self.batch_size):
            p = prompts[start : start + self.batch_size]
            r = responses[start : start + self.batch_size]
            pair = any(p)
            encoded = tokenizer(p if pair else r, r if pair else None, truncation=True,
                                max_length=self.max_length, padding=True, return_tensors="pt")
            encoded = {k: v.to(device) for k, v in encoded.items()}
            with torch.inference_mode():
                out.append(model(**encoded).logits.float().cpu().numpy())
        return np.concatenate(out, axis=0)

    async def logits(self, prompts: list[str], responses: list[str]):
        """Raw logits, shape (rows, labels); a rewardctl head has one label."""
        # torch takes seconds to import: only reward models and training need it.
        import numpy as np
        import torch

        if not responses:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        loop = asyncio.get_running_loop()
        if self.kind == "hf":
            return await loop.run_in_executor(self._executor, self._hf_logits, prompts, responses)
        loaded = await loop.run_in_executor(self._executor, self._load)
        vectors = await loaded["embedder"].embed(list(prompts) + list(responses))
        n = len(responses)

        def run_head():
            with torch.inference_mode():
                return loaded["head"](features(vectors[:n], vectors[n:])).numpy()

        return await loop.run_in_executor(self._executor, run_head)

    async def ensure_loaded(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)


_SCORERS: dict[tuple, RewardModelScorer] = {}
_SCORERS_LOCK = threading.Lock()


def get_scorer(path: Path, **kwargs: Any) -> RewardModelScorer:
    """One loaded model per folder and device per process, shared by every reward using it."""
    key = (str(path.resolve()), kwargs.get("device", "auto"), kwargs.get("max_length", 512))
    with _SCORERS_LOCK:
        if key not in _SCORERS:
            _SCORERS[key] = RewardModelScorer(path, **kwargs)
        return _SCORERS[key]
