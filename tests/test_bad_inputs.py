"""The bad-input corpus (tests/bad_inputs/): every file gets exit code 2 and one line on stderr that
names the file and the line or field, never a traceback. Huge lines are generated here."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rewardctl.cli import app

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = json.loads((CORPUS / "cases.json").read_text())
GOOD_SPEC = CORPUS / "good" / "spec.yaml"
runner = CliRunner()


def command_for(kind: str, path: Path, tmp_path: Path) -> list[str]:
    if kind == "validate":
        return ["validate", str(path)]
    if kind == "eval":
        return ["eval", str(GOOD_SPEC), "-d", str(path), "--out", str(tmp_path / "out"), "--no-cache"]
    if kind == "score":
        return ["score", str(GOOD_SPEC), "-p", str(path)]
    if kind == "train-reward":
        return ["train-reward", "--pairs", str(path), "--out", str(tmp_path / "rm")]
    raise AssertionError(kind)


def assert_refused_cleanly(result, path: Path, where: str) -> str:
    stderr = result.stderr
    assert result.exit_code == 2, (result.exit_code, stderr, result.exception)
    assert "Traceback" not in stderr and not isinstance(result.exception, (AssertionError, RecursionError))
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("rewardctl: error: ") and path.name in line, line
    assert where in line, (where, line)
    assert result.stdout == ""
    return line


def test_the_corpus_is_large_and_covers_every_kind():
    assert len(CASES) >= 50
    assert {case["command"] for case in CASES.values()} == {"validate", "eval", "score", "train-reward"}
    for rel in CASES:
        assert (CORPUS / rel).exists(), rel


@pytest.mark.parametrize("rel", sorted(CASES))
def test_bad_input_is_refused_with_one_line_naming_file_and_place(rel, tmp_path):
    case = CASES[rel]
    path = CORPUS / rel
    result = runner.invoke(app, command_for(case["command"], path, tmp_path))
    assert_refused_cleanly(result, path, case["where"])
    # Nothing half-written: a refused eval publishes no predictions or report.
    assert not (tmp_path / "out" / "predictions.jsonl").exists()
    assert not (tmp_path / "out" / "report.json").exists()


def test_the_good_companions_are_accepted(tmp_path):
    result = runner.invoke(app, ["eval", str(GOOD_SPEC), "-d", str(CORPUS / "good" / "data.jsonl"), "--json",
                                 "--no-cache"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["reward"] == 1.0


@pytest.mark.parametrize("kind", ["eval", "score"])
def test_a_huge_line_is_refused_naming_its_line(tmp_path, kind):
    from rewardctl.dataset import MAX_LINE_BYTES

    ok = ('{"question": "2+2?", "answer": "4"}\n' if kind == "eval"
          else '{"y_true": {"answer": "4"}, "y_pred": {"answer": "4"}}\n')
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as handle:
        handle.write(ok)
        handle.write('{"question": "' + "x" * (MAX_LINE_BYTES + 10) + '"}\n')
        handle.write(ok)
    result = runner.invoke(app, command_for(kind, path, tmp_path))
    line = assert_refused_cleanly(result, path, ":2:")
    assert "MiB" in line


def test_a_huge_spec_line_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("name: corpus\nmodel: openai/x\ninputs: {q: string}\noutputs: {a: string}\n"
                    "description: " + "y" * (8 * 1024 * 1024) + "\ninstrucions: x\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert_refused_cleanly(result, path, "instrucions")


def test_bom_and_crlf_alone_are_accepted(tmp_path):
    """A BOM or Windows line ends are not mistakes: the corpus's BOM/CRLF files fail elsewhere."""
    spec = (CORPUS / "good" / "spec.yaml").read_text()
    bom_crlf_spec = tmp_path / "spec.yaml"
    bom_crlf_spec.write_bytes(b"\xef\xbb\xbf" + spec.replace("\n", "\r\n").encode())
    data = tmp_path / "data.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + b'{"question": "2+2?", "answer": "4"}\r\n' * 3)
    result = runner.invoke(app, ["eval", str(bom_crlf_spec), "-d", str(data), "--json", "--no-cache"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["count"] == 3


@pytest.mark.parametrize("rel", sorted(rel for rel, case in CASES.items() if case["command"] == "validate"))
def test_validate_json_lists_the_one_problem(rel):
    """Each corpus spec is wrong in one way: validate --json lists exactly that problem (no
    echoes of it from later checks), on stdout, exit 2, nothing on stderr."""
    path = CORPUS / rel
    result = runner.invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 2 and result.stderr == "", result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is False and len(report["problems"]) == 1, report
    problem = report["problems"][0]
    assert set(problem) == {"path", "line", "field", "message"} and problem["path"] == str(path)
    where = f"{problem['path']}:{problem['line']}: {problem['field'] or ''}: {problem['message']}"
    assert CASES[rel]["where"] in where
