"""--junit FILE on eval, score and merge: JUnit XML that CI test reporters read, valid against the
Jenkins JUnit schema (tests/data/junit-10.xsd, vendored from jenkinsci/xunit-plugin)."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from faultserver import FaultServer
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.records.prediction import PredictionRecord
from rewardctl.report.junit import JUnitCase, JUnitSuite, junit_xml, row_failure

from conftest import MINIMAL_SPEC, ROOT, write

runner = CliRunner()
SCHEMA = xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit-10.xsd"))
CONTROL = "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r") + "\ud800\ufffe\uffff"


def checked(path_or_text) -> ET.Element:
    """Valid against the schema, its counts right at both levels; the parsed root."""
    if isinstance(path_or_text, Path):
        path_or_text = path_or_text.read_text(encoding="utf-8")
    SCHEMA.validate(path_or_text)
    root = ET.fromstring(path_or_text.encode("utf-8"))
    assert root.tag == "testsuites"
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        counts = {"tests": len(cases), "failures": sum(c.find("failure") is not None for c in cases),
                  "errors": sum(c.find("error") is not None for c in cases),
                  "skipped": sum(c.find("skipped") is not None for c in cases)}
        assert {k: int(suite.get(k)) for k in counts} == counts, suite.get("name")
        for case in cases:  # one outcome at most, and a one-line message
            outcomes = [e for e in case if e.tag in ("failure", "error", "skipped")]
            assert len(outcomes) <= 1
            for e in outcomes:
                assert "\n" not in e.get("message") and len(e.get("message")) <= 200
        for key in totals:
            totals[key] += counts[key]
    assert {k: int(root.get(k)) for k in totals} == totals
    return root


def cases(root: ET.Element, suite: str) -> dict[str, ET.Element]:
    (found,) = [s for s in root.iter("testsuite") if s.get("name") == suite]
    return {case.get("name"): case for case in found.findall("testcase")}


def outcome(case: ET.Element) -> str | None:
    return next((e.tag for e in case if e.tag in ("failure", "error", "skipped")), None)


# --- the builder ---------------------------------------------------------------------------------

def test_junit_xml_counts_outcomes_and_keeps_one_per_case():
    xml = junit_xml([
        JUnitSuite("a", [JUnitCase("ok", "c", time_s=0.25),
                         JUnitCase("bad", "c", failure="x 0.2 < 0.5\n\nthe details", kind="below"),
                         JUnitCase("broke", "c", error="boom", failure="also"),  # the error counts
                         JUnitCase("skip", "c", skipped="ungraded: judge: no reply")],
                   time_s=1234.5, timestamp="2025-01-02T03:04:05+00:00", properties={"model": "m"}),
        JUnitSuite("empty", []),
    ])
    root = checked(xml)
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("time")) == ("4", "1", "1", "1234.500")
    a = cases(root, "a")
    assert [outcome(c) for c in a.values()] == [None, "failure", "error", "skipped"]
    assert a["bad"].find("failure").get("message") == "x 0.2 < 0.5"  # the first paragraph
    assert a["bad"].find("failure").text == "x 0.2 < 0.5\n\nthe details" and a["bad"].find("failure").get("type") == "below"
    assert a["broke"].find("failure") is None
    (suite_a, empty) = root.findall("testsuite")
    assert suite_a.get("skipped") == "1" and suite_a.get("timestamp") == "2025-01-02T03:04:05+00:00"
    assert suite_a.find("properties/property").attrib == {"name": "model", "value": "m"}
    assert empty.get("tests") == "0" and empty.find("properties") is None


def test_characters_xml_forbids_are_stripped_everywhere_and_long_messages_clipped():
    text = f"a{CONTROL}b <&> \"quotes\" ]]> é"
    long = "word " * 200
    xml = junit_xml([JUnitSuite(text, [JUnitCase(text, text, failure=text + "\n" + long, system_out=text),
                                       JUnitCase("e", "c", error=long, kind=text),
                                       JUnitCase("s", "c", skipped=text)],
                                properties={text: text})])
    root = checked(xml)
    case = root.find("testsuite/testcase")
    assert case.get("name") == "ab <&> \"quotes\" ]]> é" and case.find("system-out").text == case.get("name")
    failure = case.find("failure")
    assert failure.text.startswith("ab <&>") and failure.text.endswith("word ")
    assert len(root.find("testsuite/testcase[@name='e']/error").get("message")) <= 200


def test_the_row_rule_names_every_score_below_its_pass_threshold():
    def record(reward, **rewards):
        return PredictionRecord(y_true={}, y_pred={}, reward=reward, rewards=rewards)

    assert row_failure(record(0.9, em=1.0, judge=0.9), {"em": 0.5, "judge": 0.8}) is None
    assert row_failure(record(0.41, em=0.41), {"em": 0.5}) == "reward 0.41 < 0.5; em 0.41 < 0.5"
    assert row_failure(record(0.75, judge=0.75), {"judge": 0.8}) == "judge 0.75 < 0.8"
    assert row_failure(record(0.9, judge=None, em=0.9), {"judge": 0.8, "em": None}) is None


# --- eval: failures, errors, an ungraded row, thresholds -----------------------------------------

NASTY = "I will not answer\x00\x07\x1b[31m in JSON"


def answer(messages):
    """The program answers per country (Peru: prose with control characters, which does not parse);
    the judge grades Paris 5, Lyon 1, Bonn 4 and answers prose to anything else."""
    content = json.loads(messages[-1]["content"])
    if "response" not in content:
        country = content["question"]
        if country == "Peru":
            return NASTY
        return json.dumps({"answer": {"France": "Paris", "Italy": "Lyon", "Germany": "Bonn"}.get(country, "Madrid")})
    return {"Paris": '{"score": "5"}', "Lyon": '{"score": "1"}', "Bonn": '{"score": "4"}'}.get(
        content["response"], "I would rather not say.")


def judged_spec(tmp_path, server):
    model = {"name": "openai/program", "api_base": server.url, "retries": 0, "max_parse_retries": 0}
    spec = {"name": "capitals", "model": model, "inputs": {"question": "string"}, "outputs": {"answer": "string"},
            "rewards": [{"type": "lm_judge", "name": "judge", "rubric": "Is the answer right?",
                         "pass_threshold": 0.8, "model": {**model, "name": "openai/judge"}}],
            "thresholds": {"reward": 0.6, "max_error_rate": 0.5}}
    return write(tmp_path / "spec.yaml", json.dumps(spec))


def test_eval_junit_has_a_case_per_row_and_per_threshold(tmp_path):
    countries = ["France", "Italy", "Germany", "Spain", "Peru"]
    data = write(tmp_path / "d.jsonl", "".join(json.dumps({"question": c, "answer": "?"}) + "\n" for c in countries))
    out, junit = tmp_path / "out", tmp_path / "out" / "junit.xml"  # --out does not exist yet
    with FaultServer(answer) as server:
        result = runner.invoke(app, ["eval", str(judged_spec(tmp_path, server)), "-d", str(data), "--out", str(out),
                                     "--junit", str(junit), "--no-cache", "-q"])
    assert result.exit_code == 1, result.stderr  # the reward threshold fails: the file is written all the same
    root = checked(junit)
    assert [s.get("name") for s in root.findall("testsuite")] == ["capitals: rows", "capitals: thresholds"]
    rows = cases(root, "capitals: rows")
    assert list(rows) == [f"row {i} (line {i + 1})" for i in range(5)]
    assert {c.get("classname") for c in rows.values()} == {"rewardctl.capitals"}
    assert [outcome(c) for c in rows.values()] == [None, "failure", "failure", "skipped", "error"]
    france, italy, germany, spain, peru = rows.values()
    assert france.find("system-out") is None  # a passing row has no output
    assert json.loads(italy.find("system-out").text)["inputs"] == {"question": "Italy"}
    assert italy.find("failure").get("message") == "reward 0 < 0.5; judge 0 < 0.8"
    assert germany.find("failure").get("message") == "judge 0.75 < 0.8"  # its total 0.75 passes
    assert "judge: 0.75 (passes at 0.8)" in germany.find("failure").text
    assert spain.find("skipped").get("message").startswith("ungraded: judge: reply unparseable")
    error = peru.find("error")
    assert error.get("type") == "unparseable" and error.get("message").startswith("unparseable reply")
    assert "I will not answer\x1b" not in error.text and "I will not answer[31m in JSON" in error.text
    assert float(france.get("time")) >= 0
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("5", "2", "1", "1")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["kind"] == "eval" and props["rows"] == "5" and props["passed"] == "false"

    report = json.loads((out / "report.json").read_text())
    gates = cases(root, "capitals: thresholds")
    assert list(gates) == ["threshold reward", "threshold error rate"]
    assert outcome(gates["threshold error rate"]) is None
    assert gates["threshold error rate"].find("system-out").text == "error rate 0.2 <= 0.5"
    reward = report["summary"]["reward"]
    assert gates["threshold reward"].find("failure").get("message") == f"reward {reward:.4g} < 0.6 (1 ungraded)"


# --- the option: needs --out, a writable folder; score, merge, --repeat ------------------------------

def mock_spec(tmp_path, extra=""):
    return write(tmp_path / "spec.yaml", MINIMAL_SPEC.replace(
        "  name: openai/gpt-4o-mini\n",
        "  name: openai/gpt-4o-mini\n  temperature: 1\n  extra: {mock_response: '{\"answer\": \"4\"}'}\n") + extra)


def rows(tmp_path, n=4):
    return write(tmp_path / "d.jsonl", "".join(json.dumps({"question": f"{i}+{i}?", "answer": str(2 * i)}) + "\n"
                                               for i in range(n)))


@pytest.mark.parametrize("command", ["eval", "score"])
def test_junit_without_out_is_a_usage_error_before_any_call(tmp_path, command):
    with FaultServer(answer) as server:
        spec = judged_spec(tmp_path, server)
        source = ["-d", str(rows(tmp_path))] if command == "eval" else \
            ["-p", str(write(tmp_path / "p.jsonl", '{"y_true": {"answer": "x"}, "y_pred": {"answer": "x"}}\n'))]
        result = runner.invoke(app, [command, str(spec), *source, "--junit", str(tmp_path / "j.xml")])
        assert server.served == 0
    assert result.exit_code == 2
    assert result.stderr == "rewardctl: error: --junit needs --out (the rows are read from its predictions.jsonl)\n"
    assert not (tmp_path / "j.xml").exists()


@pytest.mark.parametrize("where,message", [
    ("missing/j.xml", "does not exist"),
    ("afile/j.xml", "is a file"),
    ("adir", "is a folder; --junit names the file to write"),
])
def test_a_junit_path_that_cannot_be_written_is_one_line_exit_2(tmp_path, where, message):
    write(tmp_path / "afile", "x")
    (tmp_path / "adir").mkdir()
    with FaultServer(answer) as server:
        result = runner.invoke(app, ["eval", str(judged_spec(tmp_path, server)), "-d", str(rows(tmp_path)),
                                     "--out", str(tmp_path / "out"), "--junit", str(tmp_path / where)])
        assert server.served == 0
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"rewardctl: error: {tmp_path / where}: ") and message in line
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


LINES = [
    {"inputs": {"question": "2+2?"}, "y_true": {"answer": "4"}, "y_pred": {"answer": "4"}},
    {"inputs": {"question": "3+3?"}, "y_true": {"answer": "6"}, "y_pred": {"answer": "six"}},
    {"y_true": {"answer": "2"}, "y_pred": None, "status": "error", "error": "timeout\x00 after 30 s"},
    {"y_true": {"answer": "8"}, "y_pred": {"answer": "8"}},
]


def test_score_junit(tmp_path):
    predictions = write(tmp_path / "p.jsonl", "".join(json.dumps(line) + "\n" for line in LINES))
    junit = tmp_path / "score.xml"
    result = runner.invoke(app, ["score", str(mock_spec(tmp_path, "thresholds: {reward: 0.4}\n")), "-p", str(predictions),
                                 "--out", str(tmp_path / "out"), "--junit", str(junit), "-q"])
    assert result.exit_code == 0, result.stderr
    root = checked(junit)
    scored = cases(root, "demo: rows")
    assert list(scored) == ["row 0 (line 1)", "row 1 (line 2)", "row 2 (line 3)", "row 3 (line 4)"]
    assert [outcome(c) for c in scored.values()] == [None, "failure", "error", None]
    assert scored["row 2 (line 3)"].find("error").get("message") == "timeout after 30 s"
    assert scored["row 2 (line 3)"].find("error").get("type") == "error"
    (gate,) = cases(root, "demo: thresholds").values()
    assert gate.get("name") == "threshold reward" and outcome(gate) is None
    assert {p.get("name"): p.get("value") for p in root.iter("property")}["kind"] == "score"


def test_merge_junit(tmp_path):
    spec, data = mock_spec(tmp_path), rows(tmp_path)
    for k in (1, 2):
        result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--shard", f"{k}/2",
                                     "--out", str(tmp_path / f"s{k}"), "-q"])
        assert result.exit_code in (0, 1), result.stderr
    junit = tmp_path / "merged.xml"
    result = runner.invoke(app, ["merge", str(spec), str(tmp_path / "s2"), str(tmp_path / "s1"),
                                 "--out", str(tmp_path / "merged"), "--junit", str(junit), "-q"])
    assert result.exit_code == 0, result.stderr
    root = checked(junit)
    merged = cases(root, "demo: rows")
    assert list(merged) == [f"row {i} (line {i + 1})" for i in range(4)]
    assert [outcome(c) for c in merged.values()] == ["failure", "failure", None, "failure"]  # "4" is only 2+2
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["rows"] == "4" and props["kind"] == "eval"


def test_repeat_samples_are_cases_of_their_own(tmp_path):
    junit = tmp_path / "j.xml"
    result = runner.invoke(app, ["eval", str(mock_spec(tmp_path)), "-d", str(rows(tmp_path, 2)), "--repeat", "2",
                                 "--out", str(tmp_path / "out"), "--junit", str(junit), "-q"])
    assert result.exit_code == 0, result.stderr
    names = list(cases(checked(junit), "demo: rows"))
    assert names == ["row 0 (line 1) sample 0", "row 0 (line 1) sample 1", "row 1 (line 2) sample 0",
                     "row 1 (line 2) sample 1"]
