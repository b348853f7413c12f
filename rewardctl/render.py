"""``rewardctl render``: the request eval would send for each row, built by the code that sends
it, without calling the model.

Each row's request comes from the program (``Program.first_call``: prompt format, demos,
instructions, response_format or grammar) and the LM client (``LMClient.call_params`` and
``call_arguments``: sampling parameters, stop sequences, api_base, structured-output mode, extra
parameters): the functions eval's calls go through. For an OpenAI-compatible route the HTTP body
is litellm's own (rewardctl.lm.wire.BodyCapture); for the embedded model, the prompt, GBNF grammar
and sampling arguments llama.cpp runs (rewardctl.lm.wire.engine_request). Keys are redacted.
"""

from __future__ import annotations

from collections.abc import Callable

from rewardctl.dataset import ReadStats, Row, read_rows
from rewardctl.errors import InputError, warn
from rewardctl.lm.client import LMClient
from rewardctl.lm.wire import BodyCapture, engine_request, env_secrets, redact, scrub
from rewardctl.options import RenderOptions
from rewardctl.program import Program
from rewardctl.records.request import RequestRecord
from rewardctl.spec import ProgramSpec
from rewardctl.state import ProgramState

PROBING_NOTE = ("structured_output auto on a self-hosted server: response_format json_schema is sent "
                "first; once the server refuses it (llama.cpp's answers 500), eval sends json_object with "
                "the schema instead, then none; set model.structured_output to send one mode only")
STEPWISE_NOTE = ("stepwise decoding: this is the first line's request; each later line's prompt "
                 "is this one with the reply so far and the line's name appended")


def check_attempt(program: Program, attempt: int) -> None:
    plan = program.attempt_plan()
    if attempt > len(plan):
        raise InputError(f"this program makes at most {len(plan)} attempts (model.max_parse_retries "
                         f"{len(plan) - 1})", field="--attempt")
    if attempt > 1 and plan[attempt - 1] == "chat" and program.format_name != "fields":
        raise InputError("a chat model's later attempts quote the reply that failed to parse, which only "
                         "a real call gives: only attempt 1 can be shown (eval --log-requests keeps them)",
                         field="--attempt")


async def render_row(program: Program, client: LMClient, row: Row, attempt: int,
                     capture: BodyCapture | None) -> RequestRecord:
    """The record of one row's request (``attempt``: 1-based)."""
    mode, request, constraints = program.first_call(row.inputs, attempt - 1)
    params = client.call_params(request, **constraints)
    call = await client.call_arguments(request, params)
    secrets = set(client.secrets) | env_secrets()
    config = client.config
    notes = [STEPWISE_NOTE] if mode == "stepwise" else []
    if client.probing and "response_format" in call:
        notes.append(PROBING_NOTE)
    record = RequestRecord(index=row.index, line=row.line, model=config.name, attempt=attempt, decoding=mode,
                           request=redact(call, secrets))
    if config.is_local:
        record.engine = redact(engine_request(call), secrets)
    elif config.deployments:
        record.deployments = [redact(d["litellm_params"], secrets) for d in client.model_list()]
    elif capture is not None:
        captured = await capture.http(call)
        if isinstance(captured, str):
            notes.append(captured)
        else:
            record.url, record.body = captured[0], scrub(captured[1], secrets)
    record.note = "; ".join(notes) or None
    return record


def wants_body(program_spec: ProgramSpec) -> bool:
    """An OpenAI-compatible route, whose HTTP body can be shown."""
    model = program_spec.model
    return not model.is_local and not model.deployments and \
        model.call_name().startswith(("openai/", "text-completion-openai/"))


async def render_requests(spec: ProgramSpec, options: RenderOptions, *, state: ProgramState | None = None,
                          emit: Callable[[RequestRecord], None]) -> int:
    """Hand ``emit`` each row's record, in order, as it is built; returns the number of rows.
    Dataset errors are eval's (the same reader), raised when the bad line is reached."""
    program = Program(spec.signature(), state)
    check_attempt(program, options.attempt)
    route = spec.model.route_warning()
    if route is not None:  # as eval warns
        warn(route)
    client = LMClient(spec.model)  # no cache, no workers: nothing is sent
    rows = read_rows(options.data, spec.inputs, spec.outputs, skip_invalid=options.skip_invalid,
                     limit=options.limit, required_outputs={}, stats=ReadStats(),
                     data=spec.data_options(options.columns, options.data_format))
    count = 0
    if wants_body(spec):
        async with BodyCapture() as capture:
            for row in rows:
                emit(await render_row(program, client, row, options.attempt, capture))
                count += 1
        return count
    for row in rows:
        emit(await render_row(program, client, row, options.attempt, None))
        count += 1
    return count
