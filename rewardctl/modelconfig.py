"""The language model of a program (or of an LM judge): a litellm model string and sampling."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

LOCAL_DEFAULT_MODEL = "local/gemma-3-270m"
COMPLETION_ROUTE = "text-completion-openai"  # litellm's route to an OpenAI-compatible /completions
# Providers whose self-hosted servers also answer /completions (llama.cpp's server, vLLM, TGI).
COMPLETION_CAPABLE = ("openai", "hosted_vllm", COMPLETION_ROUTE)
_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password|authorization)", re.IGNORECASE)


class Deployment(BaseModel):
    """One server of a model listed under ``model.deployments`` (vLLM, TGI, llama.cpp's server...)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    api_base: str = Field(description="Base URL of this server.")
    model: str | None = Field(None, description="The litellm model string here; unset: model.name.")
    api_key_env: str | None = Field(
        None, description="Environment variable with this server's key; unset: model.api_key_env.")
    weight: float | None = Field(None, gt=0, description="Relative share of requests; unset: equal shares.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute this server takes, if limited.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute this server takes, if limited.")


class ModelConfig(BaseModel):
    """The language model: a litellm model string and its sampling parameters."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(
        LOCAL_DEFAULT_MODEL,
        description="A litellm model string, e.g. 'openai/gpt-4o-mini', 'ollama/llama3', or the "
        f"embedded offline model '{LOCAL_DEFAULT_MODEL}'.",
    )
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 is greedy.")
    max_tokens: int = Field(256, ge=1, description="Most tokens generated per reply.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling; unset: the provider's default.")
    top_k: int | None = Field(None, ge=0, description="Top-k sampling (0: off), where the provider supports it.")
    seed: int | None = Field(None, description="Sampling seed, where the provider supports it (0 is a seed).")
    stop: list[str] | None = Field(None, description="Extra stop sequences.")
    timeout: float = Field(120.0, gt=0, description="Seconds before one request is abandoned: a deadline "
                           "for the whole request, a reply that trickles in included (plus 10% and a "
                           "second of slack for the client's own work).")
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible or self-hosted server.")
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable that holds the API key. Keys never go in a "
        "spec; without this, litellm reads its usual variables (OPENAI_API_KEY, ...).",
    )
    prompt_format: Literal["auto", "fields", "json"] = Field(
        "auto",
        description="'fields': plain `field: value` lines (best for base models); 'json': a JSON "
        "object constrained by the output schema (chat models); 'auto': fields for local/ models, "
        "json otherwise.",
    )
    structured_output: Literal["auto", "json_schema", "json_object", "off"] = Field(
        "auto", description="How the output schema reaches a chat model (prompt_format json): "
        "'json_schema' (OpenAI's response_format; vLLM), 'json_object' with the schema (llama.cpp's "
        "server), 'off' (the schema is only in the prompt). 'auto': json_schema where litellm knows "
        "the model supports it; for a self-hosted api_base, json_schema first, then json_object, "
        "then off, remembering what the server refused; off otherwise.")
    retries: int = Field(
        4, ge=0, le=20,
        description="Further attempts after a transient provider failure (timeout, 429, 5xx, dropped "
        "connection, unreadable reply), with exponential backoff and jitter, honoring Retry-After.")
    backoff_base: float = Field(0.5, gt=0, description="Seconds before the first retry (doubled each time, jittered).")
    backoff_max: float = Field(30.0, gt=0, description="Longest wait between attempts, Retry-After included.")
    max_parse_retries: int = Field(
        2, ge=0, le=10,
        description="Further attempts when a reply does not parse into the outputs (the local "
        "model retries with grammar-constrained decoding).",
    )
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Further parameters passed to litellm as they are."
    )
    input_cost_per_token: float | None = Field(
        None, ge=0, description="USD per prompt token, for the report's cost and --max-cost; unset: "
        "litellm's price map (bundled, read offline), or free for local/ models.")
    output_cost_per_token: float | None = Field(
        None, ge=0, description="USD per generated token; unset as for input_cost_per_token.")
    deployments: list[Deployment] | None = Field(
        None, min_length=1,
        description="Several servers of the same model, balanced by litellm's Router (a random "
        "pick per request, by weight, skipping servers that keep failing). Replaces api_base.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("extra")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if _SECRET_KEY.search(key):
                raise ValueError(
                    f"'{key}' looks like a secret: put it in an environment variable and name "
                    "that variable in model.api_key_env"
                )
        return value

    # The folder of the spec this came from: a relative local/<path>.gguf resolves against it.
    _base_dir: Path | None = PrivateAttr(default=None)

    def with_base_dir(self, base_dir: Path | None) -> ModelConfig:
        self._base_dir = base_dir
        return self

    @property
    def resolved_name(self) -> str:
        """The model string to call: a relative ``local/<path>.gguf`` made absolute against the
        spec's folder (so a spec runs the same from any working directory)."""
        target = self.name.removeprefix("local/")
        if self.is_local and target.endswith(".gguf") and self._base_dir is not None:
            path = Path(target).expanduser()
            if not path.is_absolute():
                return "local/" + str(self._base_dir / path)
        return self.name

    @model_validator(mode="after")
    def _deployments_or_api_base(self) -> ModelConfig:
        if self.deployments and self.api_base:
            raise ValueError("give api_base or deployments, not both (each deployment has its api_base)")
        if self.deployments and self.is_local:
            raise ValueError("local/ models run in-process; deployments are for servers")
        if (self.input_cost_per_token is None) != (self.output_cost_per_token is None):
            raise ValueError("give both input_cost_per_token and output_cost_per_token, or neither")
        return self

    @property
    def is_local(self) -> bool:
        return self.name.startswith("local/")

    @property
    def is_served(self) -> bool:
        """A self-hosted server (vLLM, TGI, llama.cpp's server...): an api_base or deployments."""
        return bool(self.api_base or self.deployments)

    def call_name(self, name: str | None = None) -> str:
        """The litellm model string to call for ``name`` (default: this model). The `fields`
        format is a completion prompt: on a served OpenAI-compatible model (``openai/``,
        ``hosted_vllm/``) it goes to the completions endpoint, as ``text-completion-openai/``;
        through the chat endpoint a chat template would wrap it."""
        name = name or self.resolved_name
        if self.resolved_format == "fields" and self.is_served:
            provider, _, model = name.partition("/")
            if provider in COMPLETION_CAPABLE and model:
                return f"{COMPLETION_ROUTE}/{model}"
        return name

    def route_warning(self) -> str | None:
        """Why this model will likely answer nothing usable, with the fix; None when it is fine."""
        if self.is_local or self.resolved_format != "fields":
            return None
        if self.call_name().startswith(COMPLETION_ROUTE + "/"):
            return None
        return (f"prompt_format fields sends {self.name} a completion prompt through a chat endpoint, "
                "where a chat template wraps it and replies rarely parse: use prompt_format json for a "
                "chat model, or serve a base model and name it openai/<model> with api_base (its "
                "completions endpoint is then used)")

    @property
    def resolved_format(self) -> Literal["fields", "json"]:
        if self.prompt_format != "auto":
            return self.prompt_format
        return "fields" if self.is_local else "json"
