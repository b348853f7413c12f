"""clip: image-text alignment under a CLIP model from a local folder.

For datasets whose rows hold image paths: a captioning program (the image is an input, the
caption an output) or text-to-image prompts (the prompt is an input, the generated image's path an
output). `image_field` and `text_field` name the fields; each is looked up in the prediction
first, then in the inputs. Image paths are relative to `image_root` (relative to the spec;
default: the spec's folder). The reward is the cosine of the image and text embeddings, mapped by
`output`: `cosine01` ((cos + 1) / 2), `cosine`, or `clipscore` (2.5 * max(cos, 0), Hessel et al.).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rewardctl.embeddings import _offline_quiet_env
from rewardctl.errors import InputError, RunError, one_line
from rewardctl.rewards.base import JSON, REWARDS, Reward, RewardConfig
from rewardctl.rm.scorer import pick_device
from rewardctl.rm.text import render


class ClipConfig(RewardConfig):
    type: Literal["clip"] = "clip"
    model: str = Field(description="A local CLIP model folder (model, tokenizer, image processor), relative to the spec.")
    image_field: str = Field(description="The field holding an image path (prediction first, then inputs).")
    text_field: str | None = Field(
        None, description="The field holding the text (prediction first, then inputs). Default: the prediction's text.")
    image_root: str | None = Field(None, description="Folder that image paths are relative to. Default: the spec's folder.")
    output: Literal["cosine01", "cosine", "clipscore"] = "cosine01"
    device: str = Field("auto", description="'cpu', 'cuda', or 'auto'.")
    batch_size: int = Field(16, ge=1)


class _ClipModel:
    def __init__(self, path: Path, device: str):
        self.path = path
        self.device_request = device
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardctl-clip")
        self._lock = threading.Lock()
        self._loaded: tuple | None = None

    def load(self):
        with self._lock:
            if self._loaded is None:
                _offline_quiet_env()
                try:
                    # transformers takes seconds to import: only the runs that load a model need it.
                    import transformers
                    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

                    transformers.logging.set_verbosity_error()
                    device = pick_device(self.device_request)
                    model = CLIPModel.from_pretrained(str(self.path), local_files_only=True).to(device).eval()
                    tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
                    images = AutoImageProcessor.from_pretrained(str(self.path), local_files_only=True)
                except Exception as exc:
                    raise RunError(f"cannot load CLIP model {self.path}: {one_line(exc)}") from exc
                self._loaded = (model, tokenizer, images, device)
        return self._loaded

    def cosines(self, image_paths: list[Path], texts: list[str], batch_size: int) -> list[float]:
        # torch takes seconds to import: only reward models and training need it.
        import torch
        from PIL import Image

        model, tokenizer, processor, device = self.load()
        max_length = getattr(model.config.text_config, "max_position_embeddings", 77)
        out: list[float] = []
        for start in range(0, len(texts), batch_size):
            batch_images = []
            for path in image_paths[start : start + batch_size]:
                try:
                    with Image.open(path) as image:
                        batch_images.append(image.convert("RGB"))
                except OSError as exc:
                    raise InputError(f"cannot read image {path}: {exc}") from None
            pixels = processor(images=batch_images, return_tensors="pt")["pixel_values"].to(device)
            tokens = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                               max_length=max_length, return_tensors="pt")
            tokens = {k: v.to(device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                image_vectors = model.get_image_features(pixel_values=pixels)
                text_vectors = model.get_text_features(**tokens)
                image_vectors = getattr(image_vectors, "pooler_output", image_vectors)
                text_vectors = getattr(text_vectors, "pooler_output", text_vectors)
                image_vectors = torch.nn.functional.normalize(image_vectors.float(), dim=-1)
                text_vectors = torch.nn.functional.normalize(text_vectors.float(), dim=-1)
                out.extend((image_vectors * text_vectors).sum(dim=-1).cpu().tolist())
        return out


_MODELS: dict[tuple[str, str], _ClipModel] = {}


def _field(name: str, pred: JSON, inputs: JSON | None) -> Any:
    if name in pred:
        return pred[name]
    if inputs is not None and name in inputs:
        return inputs[name]
    return None


@REWARDS.register
class Clip(Reward):
    config_model = ClipConfig

    def value_range(self) -> tuple[float, float] | None:
        return {"cosine01": (0.0, 1.0), "cosine": (-1.0, 1.0), "clipscore": (0.0, 2.5)}[self.config.output]

    def needs_reference(self) -> bool:
        return False

    def __init__(self, config=None, context=None, **options):
        super().__init__(config, context, **options)
        path = Path(self.config.model).expanduser()
        path = path if path.is_absolute() else self.context.base_dir / path
        if not path.is_dir():
            raise InputError(f"'{path}' is not a local model folder (rewardctl never downloads models)",
                             field=f"reward '{self.name}'.model")
        key = (str(path.resolve()), self.config.device)
        self.model = _MODELS.setdefault(key, _ClipModel(path, self.config.device))
        root = Path(self.config.image_root or ".")
        self.image_root = root if root.is_absolute() else self.context.base_dir / root

    async def compute_batch(self, y_trues: Sequence[JSON], y_preds: Sequence[JSON],
                            inputs: Sequence[JSON | None]) -> list[float]:
        cfg = self.config
        paths, texts = [], []
        for pred, row_inputs in zip(y_preds, inputs, strict=True):
            image = _field(cfg.image_field, pred, row_inputs)
            if not isinstance(image, str) or not image:
                raise InputError(f"no image path in field '{cfg.image_field}'", field=f"reward '{self.name}'")
            path = Path(image)
            paths.append(path if path.is_absolute() else self.image_root / path)
            if cfg.text_field is not None:
                texts.append(render(_field(cfg.text_field, pred, row_inputs)))
            else:
                texts.append(render({k: v for k, v in pred.items() if k != cfg.image_field}))
        loop = asyncio.get_running_loop()
        cosines = await loop.run_in_executor(self.model._executor, self.model.cosines, paths, texts, cfg.batch_size)
        if cfg.output == "cosine":
            return cosines
        if cfg.output == "clipscore":
            return [2.5 * max(c, 0.0) for c in cosines]
        return [(c + 1.0) / 2.0 for c in cosines]
