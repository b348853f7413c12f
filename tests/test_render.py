"""`rewardctl render` shows the request eval sends, and `eval --log-requests` keeps every call.

The check that matters: what render prints is what the server receives. A recording HTTP server
(canned replies, or a proxy in front of a real llama.cpp server) keeps every POST body of an eval
run, and they must equal render's bodies for the same rows. For the embedded model, a stand-in
llama.cpp object records what the engine runs (prompt, grammar, sampling arguments)."""

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rewardctl.cli import app

from conftest import MINIMAL_SPEC, write

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-render-test-0123456789"


class Recorder:
    """An OpenAI-compatible server on 127.0.0.1 that records every POST (path, headers, JSON
    body). It answers with ``content`` (a canned reply; ``fail_first`` requests get a 503 first),
    or, given ``target`` (a base URL), forwards each request there and relays the answer."""

    def __init__(self, content: str = '{"answer": "4"}', target: str | None = None, fail_first: int = 0):
        self.posts: list[tuple[str, dict, dict]] = []
        self.content, self.target, self.fail_first = content, target, fail_first
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                status, reply = recorder.answer(self.path, body, recorder.posts[-1][1])
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        if self.target is not None:
            request = urllib.request.Request(self.target.removesuffix("/v1") + path, data=body, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": headers.get("authorization", "")})
            try:
                with urllib.request.urlopen(request, timeout=600) as reply:
                    return reply.status, reply.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()
        if len(self.posts) <= self.fail_first:
            return 503, b'{"error": {"message": "busy"}}'
        usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        if path.endswith("/chat/completions"):
            choice = {"index": 0, "message": {"role": "assistant", "content": self.content}, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": self.content, "finish_reason": "stop", "logprobs": None}
        return 200, json.dumps({"id": "r", "object": "x", "created": 0, "model": "m", "choices": [choice],
                                "usage": usage}).encode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


def chat_spec(tmp_path: Path, base: str, **model) -> Path:
    data = yaml.safe_load(MINIMAL_SPEC)
    data["model"] = {"name": "openai/tiny", "api_base": base, "api_key_env": "RENDER_TEST_KEY",
                     "max_tokens": 16, "seed": 3, "stop": ["###"], "retries": 2, "backoff_base": 0.01, **model}
    return write(tmp_path / "spec.yaml", yaml.safe_dump(data, sort_keys=False))


def dataset(tmp_path: Path, rows: int = 3) -> Path:
    return write(tmp_path / "data.jsonl", "".join(json.dumps({"question": f"{i}+{i}?", "answer": str(2 * i)}) + "\n"
                                                   for i in range(rows)))


def render(*args: str) -> list[dict]:
    result = runner.invoke(app, ["render", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def evaluate(spec: Path, data: Path, *args, codes: tuple[int, ...] = (0, 1)) -> None:
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--no-cache", "--concurrency", "1", "-q",
                                 *map(str, args)])
    assert result.exit_code in codes, result.stderr


@pytest.mark.parametrize("prompt_format,path", [("json", "/v1/chat/completions"), ("fields", "/v1/completions")])
def test_render_shows_the_body_the_server_receives(recorder, tmp_path, monkeypatch, prompt_format, path):
    monkeypatch.setenv("RENDER_TEST_KEY", KEY)
    recorder.content = '{"answer": "0"}' if prompt_format == "json" else " 0"
    spec, data = chat_spec(tmp_path, recorder.base, prompt_format=prompt_format), dataset(tmp_path)
    records = render(spec, "-d", data)
    assert [r["index"] for r in records] == [0, 1, 2] and [r["line"] for r in records] == [1, 2, 3]
    evaluate(spec, data)
    assert [p for p, _, _ in recorder.posts] == [path] * 3
    assert [b for _, _, b in recorder.posts] == [r["body"] for r in records]
    assert {r["url"] for r in records} == {recorder.base.removesuffix("/v1") + path}
    request = records[0]["request"]
    assert request["api_key"] == "<redacted>" and request["seed"] == 3 and request["max_tokens"] == 16
    assert request["model"] == ("openai/tiny" if prompt_format == "json" else "text-completion-openai/tiny")
    assert recorder.posts[0][1]["authorization"] == f"Bearer {KEY}"  # the key is sent, never shown


def test_render_never_shows_a_key(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("RENDER_TEST_KEY", KEY)
    spec = chat_spec(tmp_path, recorder.base, extra={"extra_headers": {"Authorization": f"Bearer {KEY}", "X-Trace": "t"}})
    for args in ([], ["--json"]):
        result = runner.invoke(app, ["render", str(spec), "-d", str(dataset(tmp_path)), *args])
        assert result.exit_code == 0, result.stderr
        assert KEY not in result.stdout and KEY not in result.stderr and "<redacted>" in result.stdout
    record = json.loads(result.stdout.splitlines()[0])
    assert record["request"]["extra_headers"] == {"Authorization": "<redacted>", "X-Trace": "t"}
    assert recorder.posts == []  # render sent nothing to the server


def test_render_text_is_the_prompt_to_read(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("RENDER_TEST_KEY", KEY)
    result = runner.invoke(app, ["render", str(chat_spec(tmp_path, recorder.base)), "-d", str(dataset(tmp_path)),
                                 "--limit", "1"])
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert text.startswith("== row 0 (line 1): openai/tiny, attempt 1 (chat) ==\n")
    assert f"POST {recorder.base}/chat/completions\n" in text
    assert "[system]\n" in text and '[user]\n{"question": "0+0?"}\n' in text and "[response_format]\n" in text
    assert '"max_tokens":16' not in text and "max_tokens=16" in text and 'api_key="<redacted>"' in text
    assert text.count("== row") == 1


def test_render_lists_the_deployments_the_router_picks_from(tmp_path, monkeypatch):
    monkeypatch.setenv("RENDER_TEST_KEY", KEY)
    spec = chat_spec(tmp_path, "unused")
    text = spec.read_text().replace("  api_base: unused\n", "  deployments:\n  - {api_base: 'http://a:1/v1'}\n"
                                    "  - {api_base: 'http://b:2/v1', weight: 2}\n")
    records = render(write(spec, text), "-d", dataset(tmp_path, 1))
    assert records[0]["request"]["model"] == "rewardctl" and records[0]["body"] is None
    assert [(d["api_base"], d["api_key"]) for d in records[0]["deployments"]] == [
        ("http://a:1/v1", "<redacted>"), ("http://b:2/v1", "<redacted>")]


def test_log_requests_keeps_every_call_and_never_a_key(tmp_path, monkeypatch):
    """Each request (a 503 and its retry included) with its reply, usage and latency; a rerun's
    cache hits marked cached; the key, sent in a header and echoed in a reply, is never written."""
    monkeypatch.setenv("RENDER_TEST_KEY", KEY)
    server = Recorder(content='{"answer": "0 ' + KEY + '"}', fail_first=1)
    try:
        spec, data = chat_spec(tmp_path, server.base), dataset(tmp_path)
        log = tmp_path / "calls.jsonl"
        evaluate(spec, data, "--log-requests", log)
        records = [json.loads(line) for line in log.read_text().splitlines()]
        assert KEY not in log.read_text()
        assert len(records) == len(server.posts) == 4
        first, retry = records[0], records[1]
        assert (first["index"], first["attempt"], first["retry"], first["fault"]) == (0, 1, 0, "http_503")
        assert first["reply"] is None and "busy" in first["error"]
        assert (retry["index"], retry["retry"], retry["error"], retry["cached"]) == (0, 1, None, False)
        assert retry["reply"]["text"] == '{"answer": "0 <redacted>"}' and retry["usage"]["completion_tokens"] == 2
        assert [r["index"] for r in records[2:]] == [1, 2] and all(r["latency_s"] > 0 for r in records)
        rendered = render(spec, "-d", data)
        assert [r["request"] for r in records[1:]] == [r["request"] for r in rendered]  # one shape
        again = tmp_path / "again.jsonl"
        result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "-q", "--log-requests", str(again)])
        assert result.exit_code in (0, 1), result.stderr
        result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "-q", "--log-requests", str(again)])
        cached = sorted((json.loads(line) for line in again.read_text().splitlines()), key=lambda r: r["index"])
        assert [(r["index"], r["cached"]) for r in cached] == [(0, True), (1, True), (2, True)] and cached[0]["reply"]["text"] == retry["reply"]["text"]
    finally:
        server.close()


def test_log_requests_to_an_unwritable_place_is_a_usage_error(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("RENDER_TEST_KEY", KEY)
    result = runner.invoke(app, ["eval", str(chat_spec(tmp_path, recorder.base)), "-d", str(dataset(tmp_path)),
                                 "--log-requests", str(tmp_path / "missing" / "calls.jsonl")])
    assert result.exit_code == 2 and "--log-requests" in result.stderr and recorder.posts == []


class FakeLlama:
    """Stands in for llama_cpp.Llama: records what create_completion is given, answers nothing
    usable (so every parse attempt runs)."""

    def __init__(self):
        self.calls: list[dict] = []

    def tokenize(self, data: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(range(len(data) // 4 + 1))

    def create_completion(self, prompt: str, **kwargs):
        grammar = kwargs.pop("grammar")
        self.calls.append({"prompt": prompt, "grammar": None if grammar is None else grammar._grammar, **kwargs})
        return {"choices": [{"text": "", "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 0}}


LOCAL_SPEC = """\
name: caps
model: {name: local/fake.gguf, max_tokens: 12, PROMPT_FORMAT}
inputs: {country: string}
outputs: {capital: string}
examples:
  - input: {country: France}
    output: {capital: Paris}
"""


@pytest.mark.parametrize("prompt_format", ["fields", "json"])
def test_render_shows_what_the_embedded_model_runs(tmp_path, monkeypatch, prompt_format):
    """Each attempt's prompt, grammar and sampling arguments, as llama.cpp is given them. Every
    reply is empty, so each row makes all 3 attempts: fields: a plain completion, the one line
    decoded stepwise, then the whole reply under a grammar; json: a plain completion, then twice
    under the output schema's grammar."""
    from rewardctl.lm.local import LocalEngine

    fake = FakeLlama()
    monkeypatch.setattr(LocalEngine, "llama", property(lambda self: fake))
    write(tmp_path / "fake.gguf", "")
    spec = write(tmp_path / "caps.yaml", LOCAL_SPEC.replace("PROMPT_FORMAT", f"prompt_format: {prompt_format}"))
    data = write(tmp_path / "d.jsonl", '{"country": "Peru", "capital": "Lima"}\n{"country": "Chad", "capital": "N"}\n')
    evaluate(spec, data, codes=(3,))  # every row fails after its last attempt
    assert len(fake.calls) == 2 * 3
    for attempt in (1, 2, 3):
        records = render(spec, "-d", data, "--attempt", attempt)
        assert [r["engine"] for r in records] == fake.calls[attempt - 1::3]
        assert all(r["attempt"] == attempt and r["body"] is None for r in records)
    assert fake.calls[0]["grammar"] is None and "root ::=" in fake.calls[-1]["grammar"]
    result = runner.invoke(app, ["render", str(spec), "-d", str(data), "--attempt", "4"])
    assert result.exit_code == 2 and "--attempt" in result.stderr


def test_render_applies_a_checkpoint_as_eval_does(tmp_path):
    """The fakelm quiz (a custom provider: no HTTP body): after optimize, render --checkpoint
    shows the learned demos, and its requests are those eval --checkpoint logs."""
    from conftest import write_quiz

    write_quiz(tmp_path, rows=12, train=8)
    spec = write(tmp_path / "quiz.yaml", "name: quiz\nmodel: {name: fakelm/demo-hungry, prompt_format: fields}\n"
                 "inputs: {q: string}\noutputs: {answer: string}\nrewards:\n  - {name: em, type: exact_match}\n"
                 "optimizer: {type: random_few_shot, epochs: 1, batch_size: 4}\n")
    result = runner.invoke(app, ["optimize", str(spec), "--train", str(tmp_path / "train.jsonl"), "--out",
                                 str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.stderr
    best, test = tmp_path / "run" / "best.json", tmp_path / "test.jsonl"
    plain = render(spec, "-d", test)
    learned = render(spec, "-d", test, "--checkpoint", best)
    demos = json.loads(best.read_text())["state"]["examples"]
    assert demos and demos[0]["input"]["q"] not in plain[0]["request"]["messages"][0]["content"]
    assert demos[0]["input"]["q"] in learned[0]["request"]["messages"][0]["content"]
    log = tmp_path / "calls.jsonl"
    evaluate(spec, test, "--checkpoint", best, "--log-requests", log)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["request"] for r in logged] == [r["request"] for r in learned]
    assert all(r["body"] is None and r["note"] is None for r in learned)


def test_render_reads_a_dataset_as_eval_does(tmp_path, monkeypatch):
    """The same reader: a CSV file, a column mapped to a field with --field."""
    monkeypatch.setenv("RENDER_TEST_KEY", KEY)
    spec = chat_spec(tmp_path, "http://127.0.0.1:9/v1")
    data = write(tmp_path / "d.csv", 'q,answer\n"2+2?",4\n')
    records = render(spec, "-d", data, "--field", "question=q")
    assert [(r["index"], r["line"]) for r in records] == [(0, 2)]
    assert records[0]["body"]["messages"][-1] == {"role": "user", "content": '{"question": "2+2?"}'}


def test_bad_input_is_eval_s_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("RENDER_TEST_KEY", KEY)
    spec = chat_spec(tmp_path, "http://127.0.0.1:9/v1")
    bad = write(tmp_path / "bad.jsonl", '{"question": "1?", "answer": "1"}\n{"question": 5, "answer": "x"}\n')
    for command in ("render", "eval"):
        result = runner.invoke(app, [command, str(spec), "-d", str(bad)])
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines()[-1].startswith(f"rewardctl: error: {bad}:2: ")
    errors = {}
    for command in ("render", "eval"):
        result = runner.invoke(app, [command, str(tmp_path / "nope.yaml"), "-d", str(bad)])
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
        errors[command] = result.stderr
    assert errors["render"] == errors["eval"]
    result = runner.invoke(app, ["render", str(spec), "-d", str(bad), "--attempt", "2"])
    assert result.exit_code == 2 and "only attempt 1" in result.stderr


# --- the real server: llama-cpp-python's OpenAI-compatible server behind a recording proxy -----


def served_spec(tmp_path: Path, recipe: str, model: dict) -> Path:
    data = yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text())
    data["model"] = {**data.get("model", {}), "max_tokens": 8, **model}
    return write(tmp_path / f"{recipe}.served.yaml", yaml.safe_dump(data, sort_keys=False))


def head(path: Path, rows: int, tmp_path: Path) -> Path:
    return write(tmp_path / f"head-{path.name}", "".join(path.read_text().splitlines(keepends=True)[:rows]))


@pytest.mark.e2e
@pytest.mark.parametrize("served,recipe,model", [
    ("chat_server", "sentiment", {"name": "openai/smollm2", "prompt_format": "json", "structured_output": "json_object"}),
    ("base_server", "capitals", {"name": "openai/gemma", "prompt_format": "fields"}),
])
def test_render_equals_what_the_real_server_receives(request, tmp_path, served, recipe, model):
    """eval through a recording proxy in front of the real server: the first request of each row
    that the server received is, body for body, what render printed for that row (json_object:
    the structured-output mode llama.cpp's server takes)."""
    server = request.getfixturevalue(served)
    proxy = Recorder(target=server.base)
    try:
        spec = served_spec(tmp_path, recipe, {**model, "api_base": proxy.base})
        data = head(ROOT / "datasets" / recipe / "test.jsonl", 3, tmp_path)
        records = render(spec, "-d", data)
        log = tmp_path / "calls.jsonl"
        evaluate(spec, data, "--log-requests", log)
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(logged) == len(proxy.posts) >= 3
        firsts = [post for post, call in zip(proxy.posts, logged, strict=True)
                  if call["attempt"] == 1 and call["retry"] == 0 and call["call"] == 0]
        assert [body for _, _, body in firsts] == [r["body"] for r in records]
        assert [p for p, _, _ in firsts] == [r["url"].removeprefix(proxy.base.removesuffix("/v1")) for r in records]
    finally:
        proxy.close()


@pytest.mark.e2e
def test_render_notes_the_step_down_a_real_server_forces(chat_server, tmp_path):
    """structured_output auto: the server refuses json_schema (llama-cpp-python answers 500), and
    eval sends json_object with the schema from then on, as render's note says: the first body
    is render's, every later one render's with response_format stepped down."""
    proxy = Recorder(target=chat_server.base)
    try:
        spec = served_spec(tmp_path, "sentiment", {"name": "openai/smollm2", "prompt_format": "json",
                                                   "api_base": proxy.base})
        data = head(ROOT / "datasets" / "sentiment" / "test.jsonl", 3, tmp_path)
        records = render(spec, "-d", data)
        assert all("structured_output" in r["note"] for r in records)
        log = tmp_path / "calls.jsonl"
        evaluate(spec, data, "--log-requests", log)
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        bodies = [body for _, _, body in proxy.posts]
        assert bodies[0] == records[0]["body"] and logged[0]["fault"] == "http_500"

        def stepped_down(body):
            schema = body["response_format"]["json_schema"]["schema"]
            return {**body, "response_format": {"type": "json_object", "schema": schema}}

        assert bodies[1:] == [stepped_down(records[call["index"]]["body"]) for call in logged[1:]]
        assert [call["index"] for call in logged[1:]] == [0, 1, 2]
    finally:
        proxy.close()
