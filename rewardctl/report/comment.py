"""report.md is posted as a pull request comment: GitHub refuses a comment over 65,536
characters, so a report lists fewer rows until it fits, and is cut as a last resort."""

from __future__ import annotations

import json
from collections.abc import Callable

GITHUB_COMMENT_LIMIT = 65_536
BUDGET = GITHUB_COMMENT_LIMIT - 1_536  # room for the header a CI step adds around it
CUT_NOTE = "\n\n_Cut to fit a GitHub comment: report.json and report.html have everything._\n"


def fit_comment(render: Callable[[int], str], rows: int, budget: int = BUDGET) -> str:
    """``render(n)`` with the most listed rows ``n`` (at most ``rows``) that fits ``budget``
    characters; cut at a line break if even no rows do not."""
    text = render(rows)
    while len(text) > budget and rows > 0:
        rows //= 2
        text = render(rows)
    if len(text) <= budget:
        return text
    cut = text.rfind("\n", 0, budget - len(CUT_NOTE))
    return text[:max(cut, 0)] + CUT_NOTE


def cell(value: object, limit: int = 120) -> str:
    """A value in one Markdown table cell: JSON unless a string, pipes escaped, one line, clipped."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"
