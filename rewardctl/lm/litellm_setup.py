"""Importing litellm, once, lazily and quietly.

``import litellm`` costs ~3.5 s of CPU, looks up its price map over the network unless told
not to, and prints to stdout unless silenced. rewardctl imports it only at the first request
that misses the response cache, with the offline price map, stdout redirected to stderr, and the
``local`` provider registered.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from rewardctl.lm.local import make_provider

_lock = threading.Lock()
_litellm = None


def is_loaded() -> bool:
    return _litellm is not None


def get_litellm():
    global _litellm
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_TELEMETRY", "False")
            with contextlib.redirect_stdout(sys.stderr):
                # litellm takes about a second to import: only model calls need it.
                import litellm
            litellm.suppress_debug_info = True
            litellm.telemetry = False
            litellm.set_verbose = False
            providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != "local"]
            litellm.custom_provider_map = providers + [
                {"provider": "local", "custom_handler": make_provider()}
            ]
            _litellm = litellm
    return _litellm
