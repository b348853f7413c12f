"""Outputs and the response cache under stress (issue 13 item 8): two runs on one --out, an
--out that cannot be written, a corrupt or unwritable response cache, and the permissions of
what a run writes.

Runs that must not be privileged (a read-only folder means nothing to root) run the CLI in a
subprocess; as root, that subprocess gives up the capabilities that override file permissions
(setpriv), so the tests check the same thing a user account would see."""

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fakelm
import pytest
from faultserver import FaultServer
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.errors import RewardctlWarning
from rewardctl.io import atomic_write_bytes
from rewardctl.lm.cache import ResponseCache
from rewardctl.outdir import LOCK_NAME, claim_out_dir

from conftest import MINIMAL_SPEC, ROOT, write

runner = CliRunner()
ROWS = [{"question": "2+2?", "answer": "4"}, {"question": "3+1?", "answer": "4"}, {"question": "1+1?", "answer": "2"}]
COMMANDS = ["eval", "score", "merge", "optimize", "inspect-rewards", "train-reward"]
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
                "--inh-caps=-dac_override,-dac_read_search,-fowner"]


@pytest.fixture(autouse=True)
def _a_key(monkeypatch):
    """The mock model (litellm's mock_response) calls nothing, but a hosted model's key is
    checked before the first request."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")


def mock_spec(tmp_path, reply='{"answer": "4"}'):
    text = MINIMAL_SPEC.replace("  name: openai/gpt-4o-mini\n",
                                f"  name: openai/gpt-4o-mini\n  extra: {{mock_response: {json.dumps(reply)}}}\n")
    return write(tmp_path / "spec.yaml", text)


def data(tmp_path, rows=ROWS, name="data.jsonl"):
    return write(tmp_path / name, "".join(json.dumps(r) + "\n" for r in rows))


def command_args(command, tmp_path, out):
    """Arguments that parse for ``command``, writing to ``out``."""
    spec, rows = mock_spec(tmp_path), data(tmp_path)
    return {
        "eval": ["eval", spec, "-d", rows, "--out", out],
        "score": ["score", spec, "-p", rows, "--out", out],
        "merge": ["merge", spec, tmp_path / "shard", "--out", out],
        "optimize": ["optimize", spec, "--train", rows, "--out", out],
        "inspect-rewards": ["inspect-rewards", spec, "-d", rows, "--out", out],
        "train-reward": ["train-reward", "--pairs", rows, "--out", out],
    }[command]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def cli_env(tmp_path) -> dict[str, str]:
    return dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", REWARDCTL_CACHE_DIR=str(tmp_path / "cache"),
                PYTHONPATH=str(ROOT))


def run_cli(args, env, *, unprivileged=False, timeout=1200) -> subprocess.CompletedProcess:
    """``rewardctl ARGS`` in a subprocess; ``unprivileged``: without root's power over permissions."""
    prefix = []
    if unprivileged and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot be tested")
        prefix = UNPRIVILEGED
    return subprocess.run([*prefix, sys.executable, "-m", "rewardctl", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


# --- (a) one run per --out --------------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_a_second_run_on_the_same_out_is_refused_naming_the_first(tmp_path, monkeypatch, command):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["rewardctl", "eval", "first.yaml", "--out", "out"])
    with claim_out_dir(out):
        result = invoke(*command_args(command, tmp_path, out))
        assert result.exit_code == 2, result.stderr
        line = error_line(result)
        assert line.startswith(f"rewardctl: error: {out}: in use by another run (pid {os.getpid()} on ")
        assert "`rewardctl eval first.yaml --out out`, since 20" in line and "choose another --out" in line
        assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # nothing of the second run's
    assert not out.exists()  # the first created the folder and wrote nothing: gone again


HOLDER = """\
import sys, time
from rewardctl.outdir import claim_out_dir
sys.argv = ["rewardctl", "optimize", "held.yaml"]
with claim_out_dir(OUT):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_lock_dies_with_its_process(tmp_path):
    """Held by another process: refused; that process killed (kill -9): its stale lock file is
    taken over, and the run goes through."""
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.replace("OUT", repr(str(out)))],
                              stdout=subprocess.PIPE, text=True, env=cli_env(tmp_path))
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["eval", mock_spec(tmp_path), "-d", data(tmp_path), "--out", out, "--json"]
        result = invoke(*args)
        assert result.exit_code == 2 and result.stdout == ""
        assert f"in use by another run (pid {holder.pid} " in error_line(result)
        assert "`rewardctl optimize held.yaml`" in result.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid  # stale, left behind
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["count"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["predictions.jsonl", "report.html", "report.json", "report.md"]


def answer(messages):
    return json.dumps({"answer": "4"})


def test_two_evals_at_once_on_one_out(tmp_path):
    """A real first run (a subprocess, against a slow server) holds --out; a second started
    meanwhile is refused before any model call; the first finishes intact; then --out is free."""
    rows = [{"question": f"{i}+0?", "answer": str(i)} for i in range(6)]
    out = tmp_path / "out"
    with FaultServer(answer, delay_s=0.4) as server:
        spec = write(tmp_path / "spec.yaml", MINIMAL_SPEC.replace(
            "  name: openai/gpt-4o-mini\n", f"  name: openai/served\n  api_base: {server.url}\n"))
        args = ["eval", spec, "-d", data(tmp_path, rows), "--out", out, "--concurrency", "1", "--no-cache", "--json"]
        first = subprocess.Popen([sys.executable, "-m", "rewardctl", *map(str, args)], env=cli_env(tmp_path),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while server.served == 0 and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.served >= 1 and first.poll() is None, "the first run did not start"
            served = server.served
            second = invoke(*args)
            assert second.exit_code == 2 and second.stdout == ""
            assert f"{out}: in use by another run (pid {first.pid} " in error_line(second)
            stdout, stderr = first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == 0, stderr
        assert served >= 1 and server.served == 6  # one request per row: the second run made none
    report = json.loads(stdout)
    assert report["summary"]["count"] == 6 and report["summary"]["errors"] == 0
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 6
    assert not (out / LOCK_NAME).exists()


# --- (c) an --out that cannot be written ------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_that_is_a_file_is_a_usage_error(tmp_path, command):
    out = write(tmp_path / "report.txt", "keep me\n")
    result = invoke(*command_args(command, tmp_path, out))
    assert result.exit_code == 2 and result.stdout == ""
    assert error_line(result) == f"rewardctl: error: {out}: is a file, not a folder; --out names the folder to write to"
    assert out.read_text() == "keep me\n"
    result = invoke(*command_args(command, tmp_path, out / "sub"))
    assert result.exit_code == 2
    assert error_line(result) == f"rewardctl: error: {out / 'sub'}: cannot create the folder: {out} is a file"


def test_export_out_that_is_a_folder_is_a_usage_error(tmp_path):
    result = invoke("export", mock_spec(tmp_path), "--checkpoint", tmp_path / "best.json", "--out", tmp_path)
    assert result.exit_code == 2
    assert error_line(result) == f"rewardctl: error: {tmp_path}: is a folder; --out names the file to write"


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_folder_that_is_not_writable_is_a_usage_error(tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    env = cli_env(tmp_path)
    result = run_cli(command_args(command, tmp_path, locked), env, unprivileged=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"rewardctl: error: {locked}: the folder is not writable"
    result = run_cli(command_args(command, tmp_path, locked / "new"), env, unprivileged=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"rewardctl: error: {locked / 'new'}: cannot create the folder: "
                                     f"{locked} is not writable")
    assert list(locked.iterdir()) == []


# --- (b) the response cache -------------------------------------------------------------------------

def test_a_corrupt_cache_is_set_aside_and_rebuilt(tmp_path):
    cache_dir = tmp_path / "responses"
    write(cache_dir / "cache.db", "this is not an SQLite file\n" * 200)
    args = ["eval", mock_spec(tmp_path), "-d", data(tmp_path), "--out", tmp_path / "out", "--cache-dir", cache_dir,
            "--json"]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["count"] == 3 and report["summary"]["reward"] == pytest.approx(2 / 3)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("rewardctl: warning:")]
    [aside] = tmp_path.glob("responses.corrupt-*")
    assert warnings == [f"rewardctl: warning: response cache {cache_dir} was corrupt (file is not a database); "
                        f"set it aside as {aside} and started an empty one"]
    assert (aside / "cache.db").read_text().startswith("this is not an SQLite file")  # kept for a look
    result = invoke(*args[:5], tmp_path / "again", *args[6:])
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert json.loads(result.stdout)["usage"]["cached_rows"] == 3  # the rebuilt cache works


def test_a_cache_found_corrupt_during_a_run_is_set_aside(tmp_path):
    """Pages damaged after the schema: SQLite opens the file and fails on some reads only."""
    cache_dir = tmp_path / "responses"
    cache = ResponseCache(cache_dir)
    for i in range(2000):
        cache.set(f"k{i}", {"text": "x" * 200, "i": i})
    cache.close()
    raw = bytearray((cache_dir / "cache.db").read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 16384] = b"A" * 16384
    (cache_dir / "cache.db").write_bytes(bytes(raw))
    cache = ResponseCache(cache_dir)
    with pytest.warns(RewardctlWarning, match="was corrupt \\(database disk image is malformed\\); set it aside"):
        values = [cache.get(f"k{i}") for i in range(0, 2000, 50)]
    assert None in values and len(list(tmp_path.glob("responses.corrupt-*"))) == 1
    cache.set("new", {"text": "fresh"})
    assert cache.enabled and cache.get("new") == {"text": "fresh"} and cache.get("k0") is None
    cache.close()


def test_a_read_only_cache_folder_leaves_the_eval_uncached(tmp_path):
    cache_dir = tmp_path / "responses"
    cache = ResponseCache(cache_dir)
    cache.set("k", {"text": "v"})
    cache.close()
    read_only(cache_dir)
    env = cli_env(tmp_path)
    args = ["eval", mock_spec(tmp_path), "-d", data(tmp_path), "--out", tmp_path / "out", "--cache-dir", cache_dir,
            "--json", "-q"]
    result = run_cli(args, env, unprivileged=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (f"rewardctl: warning: response cache {cache_dir} cannot be opened "
                                     "(attempt to write a readonly database); continuing without a cache")
    report = json.loads(result.stdout)
    assert report["summary"]["count"] == 3 and report["summary"]["errors"] == 0
    assert report["usage"]["cached_rows"] == 0


def test_a_cache_that_stops_taking_writes_is_dropped_with_one_warning(tmp_path):
    """A full disk, as SQLite reports it on a write: the run goes on, uncached, warned once."""
    cache = ResponseCache(tmp_path / "full")
    cache.set("before", {"text": "kept"})

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    cache._cache.set = full
    with pytest.warns(RewardctlWarning) as caught:
        cache.set("a", {"text": "x"})
        cache.set("b", {"text": "y"})
    assert [str(w.message) for w in caught] == [
        f"response cache {tmp_path / 'full'} cannot be written (database or disk is full); continuing without a cache"]
    assert not cache.enabled and cache.get("before") is None and cache.misses == 1
    cache.close()


# --- (d) permissions ----------------------------------------------------------------------------------

@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "report.json", b"{}")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


OPTIMIZE_SPEC = """\
name: quiz
model: {name: fakelm/demo-hungry, prompt_format: fields}
inputs: {q: string}
outputs: {answer: string}
rewards:
  - {name: em, type: exact_match}
optimizer: {type: random_few_shot, epochs: 1, batch_size: 4, patience: null}
"""


def test_reports_and_checkpoints_get_the_permissions_of_predictions(tmp_path, umask_022):
    out = tmp_path / "eval"
    result = invoke("eval", mock_spec(tmp_path), "-d", data(tmp_path), "--out", out, "-q")
    assert result.exit_code == 0, result.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {"predictions.jsonl": 0o644, "report.json": 0o644, "report.md": 0o644, "report.html": 0o644}

    fakelm.register()
    rows = []
    for i in range(12):
        fakelm.ANSWERS[f"question {i}"] = f"answer {i}"
        rows.append({"q": f"question {i}", "answer": f"answer {i}"})
    spec = write(tmp_path / "quiz.yaml", OPTIMIZE_SPEC)
    result = invoke("optimize", spec, "--train", data(tmp_path, rows, "train.jsonl"), "--out", tmp_path / "opt", "-q")
    assert result.exit_code == 0, result.stderr
    written = {str(p.relative_to(tmp_path / "opt")): stat.S_IMODE(p.stat().st_mode)
               for p in (tmp_path / "opt").rglob("*") if p.is_file()}
    assert {"best.json", "report.json", "report.md", "learning_curve.png", "checkpoints/epoch-001.json"} <= set(written)
    assert set(written.values()) == {0o644}, written


def test_the_lock_file_is_written_for_people_to_read(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["rewardctl", "eval", "a b.yaml"])
    with claim_out_dir(tmp_path / "runs" / "new" / "out") as out:
        info = json.loads((out / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and info["command"] == "rewardctl eval 'a b.yaml'"
    assert info["since"].startswith("20")
    assert list(tmp_path.iterdir()) == []  # the folders it created for nothing are gone


HOLD_AND_EXIT = textwrap.dedent("""\
    import sys
    from rewardctl.outdir import claim_out_dir
    with claim_out_dir(sys.argv[1]):
        open(sys.argv[1] + "/result.txt", "w").write("done")
""")


def test_the_lock_is_released_when_a_run_finishes(tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", HOLD_AND_EXIT, str(out)], env=cli_env(tmp_path), timeout=600)
        assert done.returncode == 0
    with claim_out_dir(out):
        pass
    assert sorted(p.name for p in out.iterdir()) == ["result.txt"]
