"""inspect-rewards: planted defects, each caught by the check meant for it."""

import json
import random

import pytest
from typer.testing import CliRunner

from rewardctl.cli import app

from conftest import write

runner = CliRunner()

DEFECTS = '''
EMOJI = set("😀🎉👍✨😊🔥")

def constant(y_true, y_pred):
    return 0.5

def pays_for_length(y_true, y_pred):
    return min(1.0, len(y_pred["answer"]) / 40)

def pays_for_emojis(y_true, y_pred):
    correct = float(y_true["answer"].lower() in y_pred["answer"].lower())
    return 0.5 * correct + 0.5 * min(1.0, sum(ch in EMOJI for ch in y_pred["answer"]) / 3)

def anything_goes(y_true, y_pred):
    return 1.0 if y_pred["answer"] else 0.0

def inverse_f1(y_true, y_pred):
    t, p = set(y_true["answer"].lower().split()), set(y_pred["answer"].lower().split())
    common = len(t & p)
    f1 = 0.0 if not common else 2 * common / (len(t) + len(p))
    return 1.0 - f1
'''

SPEC = """\
name: planted
model: {name: openai/gpt-4o-mini}
inputs: {question: string}
outputs: {answer: string}
rewards:
  - {name: sound, type: exact_match, text_normalization: [strip, casefold]}
  - {name: constant, type: python, function: "defects.py:constant"}
  - {name: pays_for_length, type: python, function: "defects.py:pays_for_length"}
  - {name: pays_for_emojis, type: python, function: "defects.py:pays_for_emojis"}
  - {name: anything_goes, type: python, function: "defects.py:anything_goes"}
metrics:
  - {name: f1, type: f1_score}
  - {name: inverse_f1, type: python, function: "defects.py:inverse_f1"}
"""

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Italy", "Rome"),
            ("Spain", "Madrid"), ("Egypt", "Cairo"), ("Chile", "Santiago"), ("Cuba", "Havana"), ("Iran", "Tehran"),
            ("Nepal", "Kathmandu"), ("Mali", "Bamako"), ("Laos", "Vientiane"), ("Oman", "Muscat"), ("Fiji", "Suva"),
            ("Togo", "Lome"), ("Chad", "Ndjamena"), ("Qatar", "Doha"), ("Malta", "Valletta"), ("Ghana", "Accra")]


@pytest.fixture
def planted(tmp_path):
    write(tmp_path / "defects.py", DEFECTS)
    spec = write(tmp_path / "spec.yaml", SPEC)
    rng = random.Random(0)
    data, preds = [], []
    for i, (country, capital) in enumerate(CAPITALS):
        question = f"What is the capital of {country}?"
        data.append({"question": question, "answer": capital})
        style = i % 4
        wrong = CAPITALS[(i + 7) % len(CAPITALS)][1]
        answer = [capital, f"The capital of {country} is {capital}, a lovely city.", wrong,
                  f"I believe it might be {wrong}, but I am not sure at all."][style]
        preds.append({"inputs": {"question": question}, "y_true": {"answer": capital},
                      "y_pred": {"answer": answer}})
    rng.shuffle(preds)
    return (spec, write(tmp_path / "data.jsonl", "".join(json.dumps(d) + "\n" for d in data)),
            write(tmp_path / "preds.jsonl", "".join(json.dumps(p) + "\n" for p in preds)), tmp_path)


def inspect(*args):
    result = runner.invoke(app, ["inspect-rewards", *map(str, args), "--json", "-q"])
    assert result.exit_code in (0, 1), result.stderr
    return result, json.loads(result.stdout)


def status(report, check, score=None):
    found = [c for c in report["checks"] if c["check"] == check and c["score"] == score]
    assert found, (check, score)
    return found[0]


def test_each_planted_defect_is_caught(planted):
    spec, data, preds, tmp_path = planted
    _, report = inspect(spec, "--data", data, "--predictions", preds, "--out", tmp_path / "out")
    # the sound reward passes what matters
    for check in ("distribution", "extremes", "hacking", "length_bias"):
        assert status(report, check, "sound")["status"] == "pass", check
    # a constant reward
    constant = status(report, "distribution", "constant")
    assert constant["status"] == "fail" and "constant" in constant["summary"]
    # a reward that pays for length
    length = status(report, "length_bias", "pays_for_length")
    assert length["status"] == "fail" and "pays for length" in length["summary"]
    hacked = status(report, "hacking", "pays_for_length")
    assert hacked["status"] == "fail" and "padding" in hacked["summary"]
    # a reward that pays for emojis
    emoji = status(report, "hacking", "pays_for_emojis")
    assert emoji["status"] == "fail" and "emoji" in emoji["summary"]
    assert emoji["evidence"]["probes"]["emoji"]["mean_gain"] == pytest.approx(0.5)
    assert emoji["evidence"]["probes"]["emoji"]["examples"]
    # a reward that scores y_true and garbage alike
    alike = status(report, "extremes", "anything_goes")
    assert alike["status"] == "fail" and "garbage score alike" in alike["summary"]
    # two scores that disagree
    agreement = status(report, "agreement")
    assert agreement["status"] == "fail" and "inverse_f1" in agreement["evidence"]["most_disagreeing_pair"]
    assert agreement["evidence"]["spearman"]["f1"]["inverse_f1"] < -0.5
    assert agreement["evidence"]["kendall"]["f1"]["inverse_f1"] < -0.5
    assert agreement["evidence"]["disagreements"]
    # outputs
    for name in ("report.json", "report.md", "report.html", "histograms.png", "correlation.png", "reward_vs_length.png"):
        assert (tmp_path / "out" / name).exists(), name
    page = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page  # self-contained, static
    assert "| distribution | constant | **fail** |" in (tmp_path / "out" / "report.md").read_text()


def test_strict_exit_code(planted):
    spec, data, preds, tmp_path = planted
    result = runner.invoke(app, ["inspect-rewards", str(spec), "--data", str(data), "-p", str(preds), "--strict", "-q"])
    assert result.exit_code == 1
    clean = write(tmp_path / "clean.yaml", "\n".join(SPEC.splitlines()[:5]) + "\n  - {name: sound, type: exact_match, text_normalization: [strip, casefold]}\n")
    result = runner.invoke(app, ["inspect-rewards", str(clean), "--data", str(data), "-p", str(preds), "--strict", "-q"])
    assert result.exit_code == 0, result.stderr


def test_distribution_flags_nan_and_out_of_range(planted, tmp_path):
    _spec, data, preds, _ = planted
    write(tmp_path / "defects.py", DEFECTS + "\ndef nan_sometimes(t, p):\n    return float('nan') if len(p['answer']) > 20 else 0.5\n")
    nan_spec = write(tmp_path / "nan.yaml", SPEC + "  - {name: nan_sometimes, type: python, function: \"defects.py:nan_sometimes\"}\n")
    _, report = inspect(nan_spec, "--data", data, "--predictions", preds)
    nan = status(report, "distribution", "nan_sometimes")
    assert nan["status"] == "fail" and nan["evidence"]["nan"] == 10


def test_balance_normalization_and_write_spec(planted):
    spec, data, preds, tmp_path = planted
    dupes = write(tmp_path / "dupes.jsonl", data.read_text() + data.read_text().splitlines()[0] + "\n")
    _, report = inspect(spec, "--data", dupes, "--predictions", preds, "--write-spec", tmp_path / "normalized.yaml")
    balance = status(report, "balance")
    assert balance["status"] == "warn" and balance["evidence"]["duplicates"] == 1
    recs = report["recommended_normalization"]
    assert recs["pays_for_length"]["method"] == "zscore" and recs["sound"]["method"] == "none"
    written = (tmp_path / "normalized.yaml").read_text()
    assert written.startswith("# Written by rewardctl inspect-rewards")
    assert "method: zscore" in written
    result = runner.invoke(app, ["validate", str(tmp_path / "normalized.yaml")])
    assert result.exit_code == 0, result.stderr


def test_references_alone_and_pairs(planted):
    spec, data, _preds, tmp_path = planted
    pairs = [{"prompt": f"What is the capital of {c}?", "chosen": a, "rejected": f"{a}? No wait, maybe not {a}, sorry.",
              "reference": a} for c, a in CAPITALS]
    pairs_path = write(tmp_path / "pairs.jsonl", "".join(json.dumps(p) + "\n" for p in pairs))
    _, report = inspect(spec, "--data", data, "--pairs", pairs_path)
    assert report["source"] == "references"
    assert status(report, "distribution", "sound")["status"] == "skip"
    assert status(report, "extremes", "sound")["status"] == "pass"
    sound = status(report, "pairs", "sound")
    assert sound["status"] == "pass" and sound["evidence"]["accuracy"] == 1.0
    length = status(report, "pairs", "pays_for_length")
    assert length["status"] == "fail" and length["evidence"]["chosen_not_longer"]["accuracy"] == 0.0


def test_bad_usage(planted):
    spec, data, preds, _ = planted
    result = runner.invoke(app, ["inspect-rewards", str(spec), "--data", str(data), "-p", str(preds), "--generate"])
    assert result.exit_code == 2 and "not both" in result.stderr
