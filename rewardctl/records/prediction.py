"""One line of predictions.jsonl: what eval writes, resume reads back, score re-scores and merge
joins. Every reader and writer goes through :class:`PredictionRecord`; the line format follows
the ``schema_version`` of the report.json beside it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

JSON = dict[str, Any]


class TokenCounts(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: int = 0
    completion: int = 0


class PredictionRecord(BaseModel):
    """One prediction with its scores. Keys a user's own predictions file adds (``rewardctl
    score`` input) are kept as they are."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    index: int | None = Field(None, description="The row's position among the dataset's valid rows (0-based).")
    line: int | None = Field(None, description="The row's line (or record) in the dataset file.")
    file: str | None = Field(None, description="A folder dataset's row (shards, a save_to_disk folder): "
                             "the file it was read from, whose row `line` is.")
    sample: int | None = Field(None, description="With eval --repeat: which sample of the row (0-based).")
    inputs: JSON | None = None
    y_true: JSON | None = Field(None, description="The reference outputs.")
    y_pred: JSON | None = Field(None, description="The program's outputs; null when the prediction failed.")
    rewards: dict[str, float | None] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict, description="Per-example metrics.")
    reward: float | None = Field(None, description="The total reward: the weighted mean of the rewards.")
    components: dict[str, float | None] = Field(
        default_factory=dict, description="Each part of a composite or ensemble reward: 'reward.part'.")
    ungraded: dict[str, str] = Field(
        default_factory=dict, description="The scores (or 'reward.part' components) that could not grade "
        "this row, each with why (an LM judge's reply did not parse, its provider failed): their value "
        "is null and they are left out of the means.")
    status: str = Field("ok", description="'ok', or 'error' for a failed prediction.")
    error: str | None = None
    error_kind: str | None = Field(
        None, description="Why the prediction failed: a provider fault ('connection', 'timeout', "
        "'rate_limit', 'http_503', 'empty_reply', 'bad_reply'), 'unparseable', 'not_run', 'fatal' "
        "(a setup problem such as a bad key), or 'provider' (a request the provider refused).")
    latency_s: float | None = None
    tokens: TokenCounts | None = None
    cost_usd: float | None = Field(None, description="USD paid for the row's requests; null: price unknown.")
    cached: bool = False
    calls: int = Field(0, description="Requests the prediction sent to the provider (cache hits are not counted).")
    raw: str | None = Field(None, description="The last reply, kept when it could not be parsed.")
    meta: JSON | None = Field(None, description="Dataset keys that are neither inputs nor outputs.")

    @property
    def ok(self) -> bool:
        return self.status != "error" and self.y_pred is not None

    @property
    def provider_failed(self) -> bool:
        """The provider failed it (a fault that outlasted the retries, a refusal, a row not run):
        not the program's quality, so it is left out of every score."""
        return not self.ok and self.error_kind not in (None, "unparseable")

    @property
    def redo_on_resume(self) -> bool:
        """A failure worth asking again when the run is resumed: a fault that may pass, an
        unparseable reply, a row not run, a setup problem since fixed; not a request the provider
        refused for this row (a prompt over the context window)."""
        if self.ok:
            return False
        kind = self.error_kind
        if kind is None:  # lines written before error_kind existed
            return (self.error or "").startswith(("unparseable reply", "not run"))
        return kind != "provider"

    def to_line(self) -> bytes:
        """One JSONL line: the fields the record was given (a user's file keeps its own keys). The
        optional fields (sample, components, ungraded, raw, meta) are given only when they hold
        something."""
        return self.__pydantic_serializer__.to_json(self, exclude_unset=True) + b"\n"

    def set_scores(self, rewards: dict[str, float | None], metrics: dict[str, float | None],
                   reward: float | None, components: dict[str, float | None],
                   ungraded: dict[str, str] | None = None) -> None:
        """Replace the scores (re-scoring); components the new scores lack are left as they were,
        and the reasons of the last scoring replace those the line had (``ungraded``).
        Scores are computed, not read: set directly (pydantic's checked setattr costs more than
        the scoring of a simple reward)."""
        update: JSON = {"rewards": rewards, "metrics": metrics, "reward": reward}
        if components:
            update["components"] = components
        if ungraded:
            update["ungraded"] = ungraded
        elif self.ungraded:  # graded now: the old reasons no longer hold
            self.__dict__["ungraded"] = {}
            self.__pydantic_fields_set__.discard("ungraded")
        self.__dict__.update(update)
        self.__pydantic_fields_set__.update(update)
