"""What every report shares: its format version, kind, the rewardctl that wrote it, and when."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from rewardctl import __version__

# One version for every report and for the predictions.jsonl lines beside them; it moves when a
# field is renamed or changes meaning (CHANGELOG.md says which).
REPORT_SCHEMA_VERSION = 1


class Report(BaseModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: str
    rewardctl_version: str = __version__
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
