"""inspect-rewards on typed outputs (integer, boolean, enum): the bad outputs change every type,
and a score constant because every prediction was right is a warning, not a failure."""

import json

import pytest
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.inspection.probes import emptied, garbage, truncated

from conftest import write

runner = CliRunner()

TEAMS = ["billing", "shipping", "account", "technical"]

SPEC = """\
name: triage
model: {name: openai/gpt-4o-mini}
inputs: {ticket: string}
outputs:
  priority: integer
  urgent: boolean
  team: {type: enum, values: [billing, shipping, account, technical]}
  score: number
rewards:
  - {name: priority_match, type: exact_match, in_mask: [priority]}
  - {name: urgent_match, type: exact_match, in_mask: [urgent]}
  - {name: team_match, type: exact_match, in_mask: [team]}
  - {name: score_match, type: exact_match, in_mask: [score]}
"""

BLIND = "\ndef always_one(y_true, y_pred):\n    return 1.0\n"


@pytest.fixture
def triage(tmp_path):
    data, right, mixed = [], [], []
    for i in range(24):
        team, priority = TEAMS[i % 4], 1 + (i * 7) % 5
        y = {"priority": priority, "urgent": priority >= 4, "team": team, "score": round(0.1 * i, 1)}
        ticket = f"Ticket {i}: my {team} problem"
        data.append({"ticket": ticket, **y})
        right.append({"inputs": {"ticket": ticket}, "y_true": y, "y_pred": y})
        wrong = {"priority": 1 + priority % 5, "urgent": not y["urgent"], "team": TEAMS[(i + 1) % 4],
                 "score": y["score"] + 1}
        mixed.append({"inputs": {"ticket": ticket}, "y_true": y, "y_pred": wrong if i % 3 == 0 else y})

    def jsonl(name, rows):
        return write(tmp_path / name, "".join(json.dumps(r) + "\n" for r in rows))

    write(tmp_path / "blind.py", BLIND)
    return (write(tmp_path / "spec.yaml", SPEC), jsonl("data.jsonl", data), jsonl("right.jsonl", right),
            jsonl("mixed.jsonl", mixed), tmp_path)


def inspect(*args, strict=False):
    result = runner.invoke(app, ["inspect-rewards", *map(str, args), "--json", "-q",
                                 *(["--strict"] if strict else [])])
    assert result.exit_code in (0, 1), result.stderr
    return result.exit_code, json.loads(result.stdout)


def check(report, kind, score):
    found = [c for c in report["checks"] if c["check"] == kind and c["score"] == score]
    assert len(found) == 1, (kind, score)
    return found[0]


@pytest.mark.parametrize("value", [7, 12345, -40, 0, 3.75, 1.0, 0.0, -2.5, True, False, "billing", "a",
                                   ["x", "y", "z"], [1, 2], [True]])
def test_garbage_and_truncated_change_every_type(value):
    for probe in (garbage, truncated):
        out = probe({"field": value})["field"]
        if probe is truncated and value == 0 and not isinstance(value, bool):
            assert out == 0  # no digit to drop: the extremes check leaves such a row out
            continue
        assert out != value, (probe.__name__, value, out)
        assert probe({"field": value}) == probe({"field": value})  # deterministic
        if not isinstance(value, list) and not isinstance(out, str):
            assert type(out) is type(value), (probe.__name__, value, out)  # a reward reading it gets its type
    assert garbage({"team": "billing"})["team"] not in TEAMS  # garbage: not an allowed value
    assert truncated({"n": 12345, "urgent": True}) == {"n": 1, "urgent": False}
    assert abs(garbage({"n": 5})["n"]) > 10**8
    assert emptied({"n": 5, "b": True, "s": "x", "l": [1]}) == {"n": 0, "b": False, "s": "", "l": []}


def test_exact_match_on_typed_fields_passes_the_extremes(triage):
    spec, data, _right, mixed, _ = triage
    code, report = inspect(spec, "--data", data, "--predictions", mixed, strict=True)
    for name in ("priority_match", "urgent_match", "team_match", "score_match"):
        extremes = check(report, "extremes", name)
        assert extremes["status"] == "pass", extremes
        assert extremes["evidence"]["means"]["garbage"] == 0.0
        assert extremes["evidence"]["means"]["truncated"] == 0.0
    # an empty boolean is False: the rows whose reference is False already are left out of its mean
    rows = check(report, "extremes", "urgent_match")["evidence"]["rows"]
    assert 0 < rows["empty"] < rows["self"] == 24 and rows["garbage"] == 24
    assert report["counts"]["fail"] == 0 and code == 0


def test_all_right_constant_is_a_warning_and_strict_passes(triage):
    spec, data, right, _mixed, _ = triage
    code, report = inspect(spec, "--data", data, "--predictions", right, strict=True)
    for name in ("priority_match", "urgent_match", "team_match", "score_match"):
        dist = check(report, "distribution", name)
        assert dist["status"] == "warn", dist
        assert dist["summary"].startswith("every prediction matched its reference: all 24 rows score 1")
        assert dist["evidence"]["all_predictions_matched"] is True
        assert check(report, "extremes", name)["status"] == "pass"
    assert report["counts"]["fail"] == 0
    assert code == 0


def test_a_reward_that_ignores_its_output_still_fails(triage):
    _spec, data, right, _mixed, tmp_path = triage
    blind = write(tmp_path / "blind.yaml", SPEC + '  - {name: blind, type: python, function: "blind.py:always_one"}\n')
    code, report = inspect(blind, "--data", data, "--predictions", right)
    assert code == 0  # without --strict a failed check still exits 0
    dist = check(report, "distribution", "blind")
    assert dist["status"] == "fail" and dist["summary"].startswith("constant: every output scores 1")
    assert dist["evidence"]["all_predictions_matched"] is False
    assert check(report, "extremes", "blind")["status"] == "fail"
    assert check(report, "distribution", "team_match")["status"] == "warn"
    code, _ = inspect(blind, "--data", data, "--predictions", right, strict=True)
    assert code == 1
