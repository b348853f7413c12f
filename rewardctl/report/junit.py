"""JUnit XML, for CI test reports (`--junit FILE` on eval, score, merge and compare).

The format is the one Jenkins, GitLab and GitHub's test reporters read (the Jenkins / Maven
Surefire schema; tests/data/junit-10.xsd is a copy): ``<testsuites>`` of ``<testsuite>``s of
``<testcase>``s, each passing or carrying one ``<failure>``, ``<error>`` or ``<skipped>``.
``junit_xml`` builds any such document from :class:`JUnitSuite`s; ``eval_junit`` builds the one
of an eval, score or merge run: a suite of its rows (``row_failure`` is the pass rule) and a suite
of its thresholds.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardctl.errors import InputError, RunError, one_line
from rewardctl.io import atomic_write_text
from rewardctl.records.eval import EvalReport, ThresholdResult
from rewardctl.records.prediction import PredictionRecord

# A row passes at a total reward of at least this (the total's pass_threshold in the report).
ROW_PASS = 0.5
MESSAGE_CHARS = 200  # a failure's or error's `message` attribute: one line
TEXT_CHARS = 8000  # a failure's or error's full text
OUTPUT_CHARS = 4000  # a row's <system-out>: its inputs, y_true and y_pred

# Characters XML 1.0 does not allow in a document at all (not even escaped), and lone surrogates
# (which UTF-8 cannot encode).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass
class JUnitCase:
    """One test case: passed, or with a failure (a check not met), an error (it could not run) or
    skipped; when several are given, the first of error, failure, skipped counts and is written.
    ``kind`` is the failure's or error's ``type`` attribute."""

    name: str
    classname: str
    time_s: float = 0.0
    failure: str | None = None
    error: str | None = None
    skipped: str | None = None
    system_out: str | None = None
    kind: str | None = None

    @property
    def outcome(self) -> str | None:
        """'error', 'failure', 'skipped', or None (passed)."""
        for name in ("error", "failure", "skipped"):
            if getattr(self, name) is not None:
                return name
        return None


@dataclass
class JUnitSuite:
    name: str
    cases: list[JUnitCase]
    time_s: float = 0.0
    timestamp: str | None = None
    properties: dict[str, str] = field(default_factory=dict)


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (NUL, most C0 controls, lone surrogates)."""
    return _NOT_XML.sub("", text)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _message(text: str) -> str:
    """The ``message`` attribute: the text's first paragraph, on one line, clipped."""
    return one_line(text.strip().split("\n\n", 1)[0], MESSAGE_CHARS)


def _counts(cases: list[JUnitCase]) -> dict[str, int]:
    outcomes = [case.outcome for case in cases]
    return {"tests": len(cases), "failures": outcomes.count("failure"), "errors": outcomes.count("error"),
            "skipped": outcomes.count("skipped")}


def _case_element(case: JUnitCase) -> ET.Element:
    element = ET.Element("testcase", {"name": xml_text(case.name), "classname": xml_text(case.classname),
                                      "time": _seconds(case.time_s)})
    outcome = case.outcome
    if outcome is not None:
        text = xml_text(getattr(case, outcome))
        attributes = {"message": _message(text)}
        if case.kind and outcome != "skipped":
            attributes["type"] = xml_text(case.kind)
        ET.SubElement(element, outcome, attributes).text = text or None
    if case.system_out is not None:
        ET.SubElement(element, "system-out").text = xml_text(case.system_out)
    return element


def _suite_element(suite: JUnitSuite) -> ET.Element:
    counts = _counts(suite.cases)
    attributes = {"name": xml_text(suite.name), **{k: str(v) for k, v in counts.items()},
                  "time": _seconds(suite.time_s)}
    if suite.timestamp:
        attributes["timestamp"] = xml_text(suite.timestamp)
    element = ET.Element("testsuite", attributes)
    if suite.properties:
        properties = ET.SubElement(element, "properties")
        for name, value in suite.properties.items():
            ET.SubElement(properties, "property", {"name": xml_text(name), "value": xml_text(str(value))})
    element.extend(_case_element(case) for case in suite.cases)
    return element


def junit_xml(suites: list[JUnitSuite], name: str = "rewardctl") -> str:
    """A ``<testsuites>`` document: each suite with its tests, failures, errors, skipped and time;
    the root with the totals (but skipped, which the Jenkins schema does not allow there)."""
    root = ET.Element("testsuites", {"name": xml_text(name)})
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in suites:
        for key, count in _counts(suite.cases).items():
            if key in totals:
                totals[key] += count
        root.append(_suite_element(suite))
    root.attrib.update({k: str(v) for k, v in totals.items()})
    root.set("time", _seconds(sum(suite.time_s for suite in suites)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --- eval, score and merge -----------------------------------------------------------------------

def _num(value: float) -> str:
    return f"{value:.4g}"


def row_failure(record: PredictionRecord, pass_thresholds: dict[str, float | None]) -> str | None:
    """Why a graded row fails, or None when it passes: its total reward is below ``ROW_PASS``, or a
    reward is below its own pass_threshold (``pass_thresholds``, by reward name). Names each score
    that fails with its value: ``reward 0.25 < 0.5; judge 0.75 < 0.8``."""
    below = []
    if record.reward is not None and record.reward < ROW_PASS:
        below.append(f"reward {_num(record.reward)} < {_num(ROW_PASS)}")
    for name, value in record.rewards.items():
        threshold = pass_thresholds.get(name)
        if value is not None and threshold is not None and value < threshold:
            below.append(f"{name} {_num(value)} < {_num(threshold)}")
    return "; ".join(below) or None


def _scores(record: PredictionRecord, pass_thresholds: dict[str, float | None]) -> str:
    """The row's scores, one a line: ``judge: 0.75 (passes at 0.8)``."""
    lines = [f"reward: {'ungraded' if record.reward is None else _num(record.reward)} (passes at {_num(ROW_PASS)})"]
    for group, values in (("", record.rewards), ("metric ", record.metrics)):
        for name, value in values.items():
            threshold = pass_thresholds.get(name) if not group else None
            shown = ("ungraded: " + record.ungraded.get(name, "no value")) if value is None else _num(value)
            lines.append(f"{group}{name}: {shown}" + (f" (passes at {_num(threshold)})" if threshold is not None else ""))
    return "\n".join(lines)


def _row_error(record: PredictionRecord) -> str:
    text = record.error or "the prediction failed"
    if record.error_kind and not text.startswith(record.error_kind):
        text = f"{record.error_kind}: {text}"
    if record.raw is not None:
        text += f"\n\nlast reply:\n{record.raw}"
    return clip(text, TEXT_CHARS)


def _row_output(record: PredictionRecord) -> str:
    shown: dict[str, Any] = {"inputs": record.inputs, "y_true": record.y_true, "y_pred": record.y_pred}
    return clip(json.dumps(shown, ensure_ascii=False, separators=(",", ":"), default=str), OUTPUT_CHARS)


def row_case(record: PredictionRecord, position: int, classname: str,
             pass_thresholds: dict[str, float | None]) -> JUnitCase:
    """The test case of one predictions line (``position``: its 0-based place in the file): an
    error when the prediction failed, skipped when no reward could grade it, a failure when
    ``row_failure`` says so."""
    index = record.index if record.index is not None else position
    line = record.line if record.line is not None else position + 1
    name = f"row {index} (line {line})" + (f" sample {record.sample}" if record.sample is not None else "")
    case = JUnitCase(name, classname, time_s=record.latency_s or 0.0)
    if not record.ok:
        case.error, case.kind = _row_error(record), record.error_kind or "error"
    elif record.reward is None:
        reasons = [f"{score}: {why}" for score, why in record.ungraded.items()] or ["no reward gave a value"]
        case.skipped = clip("ungraded: " + "\n".join(reasons), TEXT_CHARS)
    else:
        failure = row_failure(record, pass_thresholds)
        if failure is not None:
            case.failure = clip(f"{failure}\n\n{_scores(record, pass_thresholds)}", TEXT_CHARS)
            case.kind = "below pass threshold"
    if case.outcome is not None:  # a passing row needs no output: 100,000 rows stay a small file
        case.system_out = _row_output(record)
    return case


def _records(path: str | Path) -> Iterator[PredictionRecord]:
    """The lines of a predictions.jsonl, one at a time."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below; the OSError of open alone is caught)
    except OSError as exc:
        raise RunError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with handle:
        for raw in handle:
            if raw.strip():
                yield PredictionRecord.model_validate_json(raw)


def threshold_case(result: ThresholdResult, classname: str) -> JUnitCase:
    """A threshold's test case: failed with ``reward 0.41 < 0.6`` when it was not met."""
    label = {"rewards": f"reward {result.name}", "metrics": f"metric {result.name}"}.get(result.kind, result.name)
    ungraded = f" ({result.ungraded} ungraded)" if result.ungraded else ""
    if result.value is None:
        verdict = f"{label}: no value (threshold {_num(result.threshold)})"
    else:
        op = ("<=" if result.passed else ">") if result.kind == "max_error_rate" else (">=" if result.passed else "<")
        verdict = f"{label} {_num(result.value)} {op} {_num(result.threshold)}{ungraded}"
    if result.passed:
        return JUnitCase(f"threshold {label}", classname, system_out=verdict)
    return JUnitCase(f"threshold {label}", classname, failure=verdict, kind="threshold not met")


def _properties(report: EvalReport) -> dict[str, str]:
    props = {"kind": report.kind, "spec": report.spec.path or "", "program": report.spec.name,
             "model": report.spec.model, "fingerprint": report.spec.fingerprint, "data": report.data.path,
             "rows": str(report.summary.count), "errors": str(report.summary.errors),
             "ungraded": str(report.summary.ungraded),
             "reward": "" if report.summary.reward is None else repr(report.summary.reward),
             "passed": str(report.passed).lower(), "rewardctl_version": report.rewardctl_version}
    if report.data.shard:
        props["shard"] = report.data.shard
    return props


def eval_junit(report: EvalReport, predictions_path: str | Path) -> str:
    """The JUnit XML of an eval, score or merge run: suite "<name>: rows", one case per line of
    ``predictions_path`` (read a line at a time), and suite "<name>: thresholds", one per gate."""
    name = report.spec.name
    classname = f"rewardctl.{name}"
    pass_thresholds = {reward: st.pass_threshold for reward, st in report.stats.rewards.items()}
    rows = [row_case(record, position, classname, pass_thresholds)
            for position, record in enumerate(_records(predictions_path))]
    gates = [threshold_case(result, classname) for result in report.thresholds]
    return junit_xml([
        JUnitSuite(f"{name}: rows", rows, time_s=report.wall_time_s, timestamp=report.created_at,
                   properties=_properties(report)),
        JUnitSuite(f"{name}: thresholds", gates, timestamp=report.created_at),
    ])


def check_junit_path(path: str | Path) -> None:
    """``--junit FILE``, before any work: a file (not a folder) in a folder that exists and can be
    written; a one-line usage error naming it otherwise."""
    target = Path(path)
    folder = target.absolute().parent
    if target.is_dir():
        raise InputError("is a folder; --junit names the file to write", path=str(target))
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise InputError(f"cannot write here: the folder {folder} {what}", path=str(target), field="--junit")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write here: the folder {folder} is not writable", path=str(target),
                         field="--junit")


def write_eval_junit(path: str | Path, report: EvalReport) -> None:
    """Write ``eval_junit`` of the report (its rows from ``report.outputs['predictions']``),
    atomically."""
    predictions = report.outputs.get("predictions")
    if predictions is None:
        raise RunError("--junit: the run wrote no predictions.jsonl to read the rows from")
    atomic_write_text(path, eval_junit(report, predictions))
