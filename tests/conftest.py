import os
import signal
from pathlib import Path

import pytest

# Whatever imports litellm first in this process, it must not look up its price map online.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_response_cache(tmp_path, monkeypatch):
    """Each test gets its own response cache; the assembled model stays shared (read-only)."""
    models = os.environ.get("REWARDCTL_MODELS_DIR") or str(Path.home() / ".cache" / "rewardctl" / "models")
    monkeypatch.setenv("REWARDCTL_MODELS_DIR", models)
    monkeypatch.setenv("REWARDCTL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def root() -> Path:
    return ROOT


# A shell's background job (a CI script run with &) starts with SIGINT ignored, and its children
# inherit that, so the tests that interrupt rewardctl with SIGINT (as Ctrl-C does) would see it
# ignored. A terminal's Ctrl-C does reach rewardctl: the suite restores that for its children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


MINIMAL_SPEC = """\
name: demo
model:
  name: openai/gpt-4o-mini
inputs:
  question: string
outputs:
  answer:
    type: string
    max_length: 40
examples:
  - input: {question: "2+2?"}
    output: {answer: "4"}
rewards:
  - name: em
    type: exact_match
"""


@pytest.fixture(scope="session")
def chat_server():
    """SmolLM2-135M-Instruct behind llama-cpp-python's OpenAI-compatible server (a real chat model)."""
    from llamaserver import LlamaServer, smollm_path

    server = LlamaServer(smollm_path(), "smollm2").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_server():
    """The embedded Gemma 3 270M base model behind the same server (completions endpoint)."""
    from llamaserver import LlamaServer, gemma_path

    server = LlamaServer(gemma_path(), "gemma").start()
    yield server
    server.stop()


def write_quiz(tmp_path: Path, rows: int = 50, train: int = 30) -> None:
    """The fakelm quiz (tests/fakelm.py): question i's answer is "answer i"; the first ``train``
    rows to train.jsonl, the rest to test.jsonl."""
    import json

    import fakelm

    fakelm.register()
    data = []
    for i in range(rows):
        fakelm.ANSWERS[f"question {i}"] = f"answer {i}"
        data.append({"q": f"question {i}", "answer": f"answer {i}"})
    write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in data[:train]))
    write(tmp_path / "test.jsonl", "".join(json.dumps(r) + "\n" for r in data[train:]))
