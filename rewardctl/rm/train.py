"""`rewardctl train-reward`: train a small reward model from preference pairs.

Pairs: JSONL with `prompt`, `chosen`, `rejected` (strings, or objects rendered as the reward_model
reward renders fields) and an optional per-pair `margin`. Loss (Bradley-Terry, as TRL's
RewardTrainer, with its optional centering term):

    loss = -log sigmoid(r_chosen - r_rejected - margin) + centering * (r_chosen + r_rejected)^2

By default a small head is trained on frozen embeddings of the embedded sentence model (fast on a
CPU: the texts are embedded once); with `base_model`, a local Hugging Face model is fine-tuned with
one output. Pairs are split into training and held-out sets by prompt (no held-out prompt is seen
in training), seeded. The output folder is what the `reward_model` reward loads.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardctl.dataset import iter_json_objects
from rewardctl.embeddings import _offline_quiet_env, get_embedder
from rewardctl.errors import InputError, RunError
from rewardctl.options import TrainOptions
from rewardctl.progress import Progress, ProgressCallback
from rewardctl.rm.head import build_head, features, save_head
from rewardctl.rm.scorer import pick_device
from rewardctl.rm.text import render


@dataclass
class Pair:
    prompt: str
    chosen: str
    rejected: str
    margin: float
    line: int



def epoch_progress(epoch: int, epochs: int, row: dict[str, float]) -> Progress:
    acc = row.get("val_accuracy")
    return Progress("train-reward", epoch, epochs, acc, label="held-out acc", detail=f"loss {row['loss']:.4f}")

@dataclass
class TrainResult:
    kind: str
    pairs: int
    train_pairs: int
    val_pairs: int
    epochs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    val_accuracy: float | None = None
    val_margin: float | None = None
    train_accuracy: float | None = None
    reward_mean: float | None = None
    reward_std: float | None = None
    accuracy_by_length: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_pairs(path: str) -> list[Pair]:
    label = "<stdin>" if path == "-" else path
    pairs = []
    for line_no, obj in iter_json_objects(path):
        for key in ("prompt", "chosen", "rejected"):
            if key not in obj:
                raise InputError("required but missing", path=label, line=line_no, field=key)
        chosen, rejected = render(obj["chosen"]), render(obj["rejected"])
        if not chosen or not rejected:
            raise InputError("chosen and rejected must not be empty", path=label, line=line_no)
        margin = obj.get("margin", 0.0)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin):
            raise InputError("expected a finite number", path=label, line=line_no, field="margin")
        pairs.append(Pair(render(obj["prompt"]), chosen, rejected, float(margin), line_no))
    if len(pairs) < 2:
        raise InputError(f"needs at least 2 pairs, found {len(pairs)}", path=label)
    return pairs


def split_pairs(pairs: list[Pair], val_split: float, seed: int, by: str) -> tuple[list[Pair], list[Pair]]:
    """Seeded split; by prompt, every pair of a prompt lands on the same side."""
    rng = random.Random(seed)
    if not 0 <= val_split < 1:
        raise InputError("--val-split must be in [0, 1)")
    if val_split == 0:
        return list(pairs), []
    if by == "prompt":
        prompts = sorted({p.prompt for p in pairs})
        rng.shuffle(prompts)
        n_val = max(1, round(len(prompts) * val_split)) if len(prompts) > 1 else 0
        held = set(prompts[:n_val])
        train = [p for p in pairs if p.prompt not in held]
        val = [p for p in pairs if p.prompt in held]
    else:
        order = list(range(len(pairs)))
        rng.shuffle(order)
        n_val = max(1, round(len(pairs) * val_split))
        val = [pairs[i] for i in sorted(order[:n_val])]
        train = [pairs[i] for i in sorted(order[n_val:])]
    if not train:
        raise InputError("the split leaves no training pairs; lower --val-split")
    return train, val


def _seed_everything(seed: int) -> None:
    # torch takes seconds to import: only reward models and training need it.
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _evaluate(chosen, rejected, pairs: list[Pair]) -> dict[str, Any]:
    """Accuracy, mean margin, reward mean/std, and accuracy split by which answer is longer."""
    # numpy costs start-up time that only this computation needs.
    import numpy as np

    c, r = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    if len(c) == 0:
        return {}
    correct = c > r
    both = np.concatenate([c, r])
    longer = np.array([len(p.chosen) > len(p.rejected) for p in pairs])
    by_length = {}
    for name, mask in (("chosen_longer", longer), ("chosen_not_longer", ~longer)):
        if mask.any():
            by_length[name] = {"pairs": int(mask.sum()), "accuracy": float(correct[mask].mean())}
    return {"accuracy": float(correct.mean()), "margin": float((c - r).mean()),
            "mean": float(both.mean()), "std": float(both.std()), "by_length": by_length}


def _bt_loss(r_chosen, r_rejected, margins, centering: float):
    # torch takes seconds to import: only reward models and training need it.
    import torch

    loss = -torch.nn.functional.logsigmoid(r_chosen - r_rejected - margins).mean()
    if centering:
        loss = loss + centering * ((r_chosen + r_rejected) ** 2).mean()
    return loss


def _train_head(options: TrainOptions, train: list[Pair], val: list[Pair], folder: Path,
                progress: ProgressCallback | None) -> tuple[TrainResult, dict]:
    # torch takes seconds to import: only reward models and training need it.
    import torch

    embedder = get_embedder("sentence-transformers", options.embedding_model, base_dir=Path.cwd())
    texts = list(dict.fromkeys(t for p in [*train, *val] for t in (p.prompt, p.chosen, p.rejected)))
    vectors = asyncio.run(embedder.embed(texts))
    index = {t: i for i, t in enumerate(texts)}
    matrix = torch.as_tensor(vectors, dtype=torch.float32)

    def feats(pairs: list[Pair]):
        p = matrix[[index[x.prompt] for x in pairs]]
        c = matrix[[index[x.chosen] for x in pairs]]
        r = matrix[[index[x.rejected] for x in pairs]]
        return features(p, c), features(p, r), torch.tensor([x.margin for x in pairs])

    train_c, train_r, train_m = feats(train)
    dim = matrix.shape[1]
    head = build_head(dim, options.hidden)
    optimizer = torch.optim.AdamW(head.parameters(), lr=options.learning_rate or 1e-3, weight_decay=0.01)
    epochs = options.epochs or 40
    batch = options.batch_size or 32
    generator = torch.Generator().manual_seed(options.seed)
    history = []
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for start in range(0, len(train), batch):
            idx = order[start : start + batch]
            loss = _bt_loss(head(train_c[idx]).squeeze(-1), head(train_r[idx]).squeeze(-1), train_m[idx],
                            options.centering)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch + 1, "loss": total / len(train)}
        if val:
            head.eval()
            with torch.no_grad():
                vc, vr, _ = feats(val)
                row["val_accuracy"] = float((head(vc) > head(vr)).float().mean())
        history.append(row)
        if progress is not None:
            progress(epoch_progress(epoch + 1, epochs, row))
    head.eval()
    with torch.no_grad():
        scores = {name: (head(c).squeeze(-1).tolist(), head(r).squeeze(-1).tolist())
                  for name, (c, r, _) in (("train", (train_c, train_r, None)),
                                          ("val", feats(val) if val else (train_c[:0], train_r[:0], None)))}
    config = {"embedding": {"backend": "sentence-transformers", "model": options.embedding_model},
              "dim": dim, "hidden": options.hidden, "dropout": 0.1}
    result = TrainResult(kind="embedding-head", pairs=len(train) + len(val), train_pairs=len(train),
                         val_pairs=len(val), epochs=epochs, seconds=0.0, history=history)
    save_head(folder, head, config)
    return result, scores


def _train_hf(options: TrainOptions, train: list[Pair], val: list[Pair], folder: Path,
              progress: ProgressCallback | None) -> tuple[TrainResult, dict]:
    # torch takes seconds to import: only reward models and training need it.
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _offline_quiet_env()
    transformers.logging.set_verbosity_error()
    base = Path(options.base_model).expanduser()
    if not base.is_dir():
        raise InputError(f"'{base}' is not a local model folder (rewardctl never downloads models)",
                         field="--base-model")
    device = pick_device(options.device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(base), num_labels=1, local_files_only=True, ignore_mismatched_sizes=True)
    except Exception as exc:
        raise RunError(f"cannot load {base}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    model.config.id2label = {0: "reward"}
    model.config.label2id = {"reward": 0}
    model.to(device)

    def forward(prompts: list[str], responses: list[str]):
        pair = any(prompts)
        enc = tokenizer(prompts if pair else responses, responses if pair else None, truncation=True,
                        max_length=options.max_length, padding=True, return_tensors="pt")
        return model(**{k: v.to(device) for k, v in enc.items()}).logits.squeeze(-1)

    def score_all(pairs: list[Pair]) -> tuple[list[float], list[float]]:
        model.eval()
        chosen, rejected = [], []
        with torch.no_grad():
            for start in range(0, len(pairs), 16):
                chunk = pairs[start : start + 16]
                prompts = [p.prompt for p in chunk]
                chosen += forward(prompts, [p.chosen for p in chunk]).float().cpu().tolist()
                rejected += forward(prompts, [p.rejected for p in chunk]).float().cpu().tolist()
        return chosen, rejected

    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate or 2e-5, weight_decay=0.01)
    epochs = options.epochs or 2
    batch = options.batch_size or 8
    rng = random.Random(options.seed)
    history = []
    for epoch in range(epochs):
        model.train()
        order = list(range(len(train)))
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), batch):
            chunk = [train[i] for i in order[start : start + batch]]
            prompts = [p.prompt for p in chunk]
            loss = _bt_loss(forward(prompts, [p.chosen for p in chunk]),
                            forward(prompts, [p.rejected for p in chunk]),
                            torch.tensor([p.margin for p in chunk], device=device), options.centering)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(chunk)
        row = {"epoch": epoch + 1, "loss": total / len(train)}
        if val:
            c, r = score_all(val)
            row["val_accuracy"] = sum(a > b for a, b in zip(c, r, strict=True)) / len(val)
        history.append(row)
        if progress is not None:
            progress(epoch_progress(epoch + 1, epochs, row))
    scores = {"train": score_all(train), "val": score_all(val) if val else ([], [])}
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    result = TrainResult(kind="hf-sequence-classification", pairs=len(train) + len(val),
                         train_pairs=len(train), val_pairs=len(val), epochs=epochs, seconds=0.0, history=history)
    return result, scores


def train_reward_model(options: TrainOptions,
                       progress: ProgressCallback | None = None) -> TrainResult:
    started = time.perf_counter()
    pairs = read_pairs(options.pairs)
    train, val = split_pairs(pairs, options.val_split, options.seed, options.split_by)
    _seed_everything(options.seed)
    out = Path(options.out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        trainer = _train_hf if options.base_model else _train_head
        result, scores = trainer(options, train, val, tmp, progress)
        train_eval = _evaluate(*scores["train"], train)
        val_eval = _evaluate(*scores["val"], val)
        result.train_accuracy = train_eval.get("accuracy")
        result.val_accuracy = val_eval.get("accuracy")
        result.val_margin = val_eval.get("margin")
        reference = val_eval or train_eval
        result.reward_mean, result.reward_std = reference.get("mean"), reference.get("std")
        result.accuracy_by_length = val_eval.get("by_length", {})
        result.seconds = round(time.perf_counter() - started, 2)
        report = {"rewardctl_train_reward": 1, "options": {**options.__dict__}, **result.to_json()}
        (tmp / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
        # Swap the finished folder into place; an interrupted run never leaves a half-written model.
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result
