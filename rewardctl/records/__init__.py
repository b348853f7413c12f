"""Typed records: every line and report rewardctl writes, one pydantic model each (versioned)."""
