"""The default trainable reward model: a small MLP head on frozen sentence embeddings.

Features of a (prompt, response) pair, from unit-length embeddings p and r of the embedded
sentence model: [r, p * r, |p - r|] (the response itself, and how it relates to the prompt). The
head maps them to one scalar reward. Saved as a folder: ``reward_model.json`` (what to embed with
and how) and ``head.safetensors`` (the weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rewardctl.io import atomic_write_bytes

FORMAT = "rewardctl-embedding-head"
CONFIG_FILE = "reward_model.json"
WEIGHTS_FILE = "head.safetensors"


def build_head(dim: int, hidden: int, dropout: float = 0.1):
    # torch takes seconds to import: only reward models and training need it.
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(3 * dim, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, 1),
    )


def features(prompt_vectors, response_vectors):
    # torch takes seconds to import: only reward models and training need it.
    import torch

    p = torch.as_tensor(prompt_vectors, dtype=torch.float32)
    r = torch.as_tensor(response_vectors, dtype=torch.float32)
    return torch.cat([r, p * r, (p - r).abs()], dim=1)


def is_head_folder(path: Path) -> bool:
    config = path / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT
    except ValueError:
        return False


def save_head(folder: Path, head, config: dict[str, Any]) -> None:
    # torch takes seconds to import: only reward models and training need it.
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    # Through the atomic writer: safetensors' own save_file leaves an owner-only (0600) file.
    atomic_write_bytes(folder / WEIGHTS_FILE, save({k: v.detach().contiguous() for k, v in head.state_dict().items()}))
    (folder / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "version": 1, **config}, indent=2) + "\n")


def load_head(folder: Path):
    """(head module in eval mode, config)"""
    # torch takes seconds to import: only reward models and training need it.
    from safetensors.torch import load_file

    config = json.loads((folder / CONFIG_FILE).read_text())
    head = build_head(config["dim"], config["hidden"], config.get("dropout", 0.1))
    head.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    head.eval()
    return head, config
