"""The command line. It parses arguments and calls into the library; nothing else.

Exit codes (a contract; also in the README):
  0  done
  1  a threshold (--fail-under or the spec's thresholds) was not met
  2  bad usage or bad input (spec, dataset, options)
  3  the run could not complete (model failed to load, every row failed, interrupted)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from rewardctl import __version__
from rewardctl.errors import (
    EXIT_RUN_FAILED,
    EXIT_THRESHOLD,
    RewardctlError,
    RewardctlWarning,
    one_line,
)
from rewardctl.options import (
    CompareOptions,
    EvalOptions,
    InspectOptions,
    OptimizeOptions,
    RenderOptions,
    ScoreOptions,
    TrainOptions,
)

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 a threshold (--fail-under or the spec's thresholds) not met, or "
    "compare --fail-on-regression found a regression; 2 bad usage or bad input; 3 the run could not complete."
)

app = typer.Typer(
    name="rewardctl",
    help="Evaluate and optimize LM programs from a YAML spec. " + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rewardctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def _fail(message: str, code: int) -> typer.Exit:
    sys.stderr.write(f"rewardctl: error: {message}\n")
    sys.stderr.flush()
    return typer.Exit(code)


def run_async(coro):
    """asyncio.run, with SIGTERM handled like Ctrl-C: the command is cancelled, flushes what it
    finished, and says how to continue. litellm's HTTP clients are closed before the loop ends."""
    from rewardctl.lm.litellm_setup import close_clients
    # Cancelling on Ctrl-C or SIGTERM drops coroutines that litellm created but never started;
    # Python's warning about them says nothing to a user, and would bury the message that does.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)

    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        # Not possible outside the main thread (typer's test runner): then SIGTERM stays as it was.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coro
        finally:
            await close_clients()

    return asyncio.run(main())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, RewardctlWarning):
        sys.stderr.write(f"rewardctl: warning: {message}\n")
        sys.stderr.flush()
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def _run(fn):
    """Run a command body: library errors become one line on stderr and their exit code; the
    library's warnings, one line each, once."""
    warnings.simplefilter("default", RewardctlWarning)
    warnings.showwarning = _show_warning
    try:
        return fn()
    except RewardctlError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise _fail("interrupted", EXIT_RUN_FAILED) from None
    except typer.Exit:
        raise
    except Exception as exc:
        if os.environ.get("REWARDCTL_DEBUG"):
            raise
        raise _fail(f"internal error: {one_line(f'{type(exc).__name__}: {exc}')} "
                    "(set REWARDCTL_DEBUG=1 for the traceback)", EXIT_RUN_FAILED) from None


def _run_report_command(spec: Path, quiet: bool, json_out: bool, out: Path | None, make_report,
                        junit: Path | None = None) -> None:
    """eval, score and merge: build the report from the loaded spec (``make_report(program_spec,
    on_progress, write_report)``) under a progress bar, write its files to ``out`` (and with
    --junit, the JUnit XML of its rows and thresholds), print the summary on stderr and, with
    --json, the report on stdout; exit 1 when a threshold is not met."""
    from rewardctl.console import DataChannel, progress_bar, stderr_console
    from rewardctl.errors import InputError
    from rewardctl.outdir import claim_out_dir
    from rewardctl.report import print_summary, render_json, write_eval_outputs
    from rewardctl.spec import load_spec

    def body() -> None:
        if junit is not None and out is None:
            raise InputError("--junit needs --out (the rows are read from its predictions.jsonl)")
        console = stderr_console()
        write = None if out is None else (lambda report: write_eval_outputs(out, report))
        with claim_out_dir(out), DataChannel() as channel:
            if junit is not None:
                from rewardctl.report.junit import check_junit_path, write_eval_junit

                check_junit_path(junit)
            program_spec = load_spec(spec)
            with progress_bar(console, quiet) as on_progress:
                report = make_report(program_spec, on_progress, write)
            if junit is not None:  # before the threshold's exit: a failing gate is what CI shows
                write_eval_junit(junit, report)
            if not quiet:
                print_summary(console, report)
            if json_out:
                channel.write(render_json(report))
        if not report.passed:
            raise typer.Exit(EXIT_THRESHOLD)

    _run(body)


SpecArg = Annotated[Path, typer.Argument(help="The program spec (YAML).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (and nothing else).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary on stderr.")]
FieldOpt = Annotated[list[str] | None, typer.Option(
    "--field", metavar="FIELD=COLUMN", help="Read the spec field FIELD from the dataset column COLUMN "
    "(repeatable); overrides the spec's data.fields.", show_default=False)]
DataFormatOpt = Annotated[str | None, typer.Option(
    "--data-format", help="jsonl, csv, tsv, parquet or arrow [default: the spec's data.format, else by "
    "the extension (others: jsonl); a folder: a Hugging Face save_to_disk folder or shards].", show_default=False)]
DATA_HELP = ("The dataset: JSON Lines, CSV, TSV, Parquet or Arrow (by the extension), or a folder (a Hugging "
             "Face save_to_disk folder, or shards); '-' reads JSON Lines from stdin.")
JunitOpt = Annotated[Path | None, typer.Option(
    "--junit", help="Also write JUnit XML here for CI test reports: a test case per row and per "
    "threshold. Needs --out.", show_default=False)]


@app.command()
def validate(spec: SpecArg, json_out: JsonOpt = False) -> None:
    """Check a spec: YAML, keys, types, demos, masks, and that every reward and metric can be built
    (python functions, reward models, schemas). Lists every problem found, one line each naming
    the file, line and field (with --json: {"valid": false, "problems": [...]}); exit 2."""
    from rewardctl.console import DataChannel
    from rewardctl.errors import EXIT_USAGE
    from rewardctl.spec import check_spec

    def body() -> None:
        with DataChannel() as data:
            program, problems = check_spec(spec)
            if problems or program is None:
                if json_out:
                    listed = [{"path": p.path, "line": p.line, "field": p.field, "message": p.detail} for p in problems]
                    data.write(json.dumps({"valid": False, "path": str(spec), "problems": listed}) + "\n")
                else:
                    sys.stderr.write("".join(f"rewardctl: error: {p}\n" for p in problems))
                raise typer.Exit(EXIT_USAGE)
            rewards = [r.display_name for r in program.reward_configs()]
            info = {"valid": True, "path": str(spec), "name": program.name, "model": program.model.name,
                    "inputs": list(program.inputs), "outputs": list(program.outputs),
                    "examples": len(program.examples), "rewards": rewards,
                    "metrics": [m.display_name for m in program.metrics],
                    "fingerprint": program.fingerprint()}
            if json_out:
                data.write(json.dumps(info) + "\n")
            else:
                default = "" if program.rewards else " (default)"
                sys.stderr.write(
                    f"ok: {spec}: program '{program.name}' on {program.model.name}; "
                    f"inputs {', '.join(program.inputs)} -> outputs {', '.join(program.outputs)}; "
                    f"{len(program.examples)} examples; rewards {', '.join(rewards)}{default}\n")

    _run(body)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec format (for editors: yaml-language-server)."""
    from rewardctl.spec import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2))


@app.command("eval", epilog=EXIT_CODES_HELP)
def eval_command(
    spec: SpecArg,
    data: Annotated[str, typer.Option("--data", "-d", help=DATA_HELP, show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write predictions.jsonl, report.json and report.md here.")] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="Evaluate only the first N rows.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Most requests in flight.")] = EvalOptions.concurrency,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Bypass the response cache (neither read nor write).")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Response cache folder [default: ~/.cache/rewardctl/responses].")] = None,
    fail_under: Annotated[float | None, typer.Option(help="Exit 1 when the mean reward is below X.")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip and count invalid dataset lines instead of stopping.")] = False,
    field_map: FieldOpt = None,
    data_format: DataFormatOpt = None,
    repeat: Annotated[int, typer.Option(min=1, help="Samples per row (for pass@k and pass^k); each is a prediction line, and its own cache entry.")] = EvalOptions.repeat,
    row_pass: Annotated[str, typer.Option(help="With --repeat: a row passes when its mean sample passes (mean), all its samples do (all), or any does (any).")] = EvalOptions.row_pass,
    checkpoint: Annotated[Path | None, typer.Option(help="Evaluate the learned state of an optimize checkpoint (DIR/best.json).")] = None,
    max_errors: Annotated[str | None, typer.Option(help="Error budget: stop calling the model after N failed rows, or P% of the rows (every row is still recorded).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish the interrupted run in --out: its finished rows are kept, rows that failed on a transient error (connection, timeout, 429, 5xx, unparseable reply) are asked again.")] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Ask the failed rows of the run in --out again (finished or interrupted) and rewrite its outputs.")] = False,
    shard: Annotated[str | None, typer.Option(help="K/N: evaluate only the K-th of N shards (rows dealt round-robin); join the shards with `rewardctl merge`.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Budget in USD: once spent, no further request starts and the run stops cleanly (every row is still recorded).")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Processes that make the litellm calls to a remote model (0: this process) [default: 0 for a chat model on an OpenAI-compatible server (api_base); else one per core, up to 4, at --concurrency 32+ over 1,000+ rows; else 0].", show_default=False)] = None,
    log_requests: Annotated[Path | None, typer.Option("--log-requests", help="Write every model call to this JSONL file as the run goes: row, attempt, the request (as `rewardctl render` shows it), the reply, usage, latency, error; cache hits marked cached. Keys are never written.", show_default=False)] = None,
    junit: JunitOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the program over a dataset, score every output, write predictions and a report."""

    from rewardctl.evaluate import evaluate

    def make_report(program_spec, on_progress, write_report):
        state = None
        if checkpoint is not None:  # optimize's records load only then
            from rewardctl.checkpoint import load_state

            state = load_state(program_spec, checkpoint)
        options = EvalOptions(data=data, out_dir=str(out) if out else None, limit=limit,
                              concurrency=concurrency, use_cache=not no_cache,
                              cache_dir=str(cache_dir) if cache_dir else None,
                              skip_invalid=skip_invalid, fail_under=fail_under, repeat=repeat,
                              max_errors=max_errors, resume=resume, retry_errors=retry_errors, shard=shard,
                              max_cost=max_cost, workers=workers, row_pass=row_pass,
                              fields=field_map or (), data_format=data_format,
                              log_requests=str(log_requests) if log_requests else None)
        return run_async(evaluate(program_spec, options, spec_path=str(spec), state=state,
                                  on_progress=on_progress, write_report=write_report))

    _run_report_command(spec, quiet, json_out, out, make_report, junit)


@app.command("merge", epilog=EXIT_CODES_HELP)
def merge_command(
    spec: SpecArg,
    shards: Annotated[list[Path], typer.Argument(help="The --out folders of the shards (eval --shard K/N), in any order.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the joined predictions.jsonl, report.json and report.md here.", show_default=False)],
    fail_under: Annotated[float | None, typer.Option(help="Exit 1 when the mean reward is below X.")] = None,
    junit: JunitOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Join the outputs of a sharded eval into the predictions and report of one run."""

    from rewardctl.merge import merge_shards

    def make_report(program_spec, on_progress, write_report):
        return run_async(merge_shards(program_spec, [str(s) for s in shards], str(out),
                                      spec_path=str(spec), fail_under=fail_under, write_report=write_report))

    _run_report_command(spec, quiet, json_out, out, make_report, junit)


@app.command("score", epilog=EXIT_CODES_HELP)
def score_command(
    spec: SpecArg,
    predictions: Annotated[str, typer.Option("--predictions", "-p", show_default=False,
                                             help="Predictions JSONL (y_true, y_pred, optional inputs); '-' reads stdin.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write predictions.jsonl (with each score by name), report.json and report.md here.")] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="Score only the first N lines.")] = None,
    fail_under: Annotated[float | None, typer.Option(help="Exit 1 when the mean reward is below X.")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip and count invalid lines instead of stopping.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="LM judges: bypass the response cache.")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Response cache folder for LM judges.")] = None,
    junit: JunitOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-score existing predictions with the spec's rewards and metrics (no program model calls)."""

    from rewardctl.scorefile import score_predictions

    def make_report(program_spec, on_progress, write_report):
        options = ScoreOptions(predictions=predictions, out_dir=str(out) if out else None,
                               limit=limit, skip_invalid=skip_invalid, fail_under=fail_under,
                               use_cache=not no_cache, cache_dir=str(cache_dir) if cache_dir else None)
        return run_async(score_predictions(program_spec, options, spec_path=str(spec),
                                           on_progress=on_progress, write_report=write_report))

    _run_report_command(spec, quiet, json_out, out, make_report, junit)


COMPARE_EXIT_CODES = ("Exit codes: 0 no regression (or no gate); 1 a regression with --fail-on-regression; "
                      "2 bad usage or input.")


@app.command("compare", epilog=COMPARE_EXIT_CODES)
def compare_command(
    base: Annotated[Path, typer.Argument(help="The baseline's --out folder (eval, score or merge).", show_default=False)],
    new: Annotated[Path, typer.Argument(help="The new run's --out folder.", show_default=False)],
    key: Annotated[str | None, typer.Option(help="Pair rows by this field (of the inputs, y_true or the dataset's other keys; 'index': the row's position) [default: a hash of the input fields].", show_default=False)] = None,
    fail_on_regression: Annotated[float | None, typer.Option(
        "--fail-on-regression", metavar="[MARGIN]", min=0,
        help="Exit 1 when the total reward (or a reward or metric the spec's thresholds name) drops "
             "significantly by more than MARGIN: the upper end of its 95% CI is below -MARGIN [MARGIN default: 0].",
        show_default=False)] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of the paired tests.")] = CompareOptions.alpha,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap CIs.")] = CompareOptions.seed,
    max_flips: Annotated[int, typer.Option(help="Flipped rows listed in report.json (all are counted).")] = CompareOptions.max_flips,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write report.json, report.md and report.html here.")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write JUnit XML here: a test case per paired row (a failure when it went pass -> fail) and per score (a failure when a gated score regressed).", show_default=False)] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare two runs row by row: paired differences, CIs and tests, flipped rows; gate CI on a regression."""
    from rewardctl.compare import run_compare
    from rewardctl.console import DataChannel, stderr_console
    from rewardctl.outdir import claim_out_dir
    from rewardctl.report import print_compare, render_json, write_compare_outputs
    from rewardctl.report.junit import check_junit_path

    def body() -> None:
        options = CompareOptions(base=str(base), new=str(new), key=key, seed=seed, alpha=alpha,
                                 margin=fail_on_regression, max_flips=max_flips, out_dir=str(out) if out else None)
        with claim_out_dir(out), DataChannel() as channel:
            if junit is not None:
                check_junit_path(junit)
            report = run_compare(options, lambda report, pairs: write_compare_outputs(out, report, pairs, junit))
            if not quiet:
                print_compare(stderr_console(), report)
            if json_out:
                channel.write(render_json(report))
        if not report.passed:
            raise typer.Exit(EXIT_THRESHOLD)

    _run(body)


@app.command("optimize", epilog=EXIT_CODES_HELP)
def optimize_command(
    spec: SpecArg,
    train: Annotated[str, typer.Option("--train", show_default=False, help="Training data (any format eval's --data reads).")],
    val: Annotated[str | None, typer.Option("--val", help="Validation data [default: --val-split of the training set].")] = None,
    val_split: Annotated[float, typer.Option(help="Share of the training set held out for validation when --val is not given.")] = OptimizeOptions.val_split,
    test: Annotated[str | None, typer.Option("--test", help="Held-out data: baseline and best are also compared on it.")] = None,
    field_map: FieldOpt = None,
    data_format: DataFormatOpt = None,
    optimizer: Annotated[str | None, typer.Option(help="demo_search, random_few_shot, bootstrap_few_shot, kl or reflective [default: the spec's, else demo_search].")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs [default: the optimizer's].")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed [default: the optimizer's, 0]; 0 is a seed.")] = None,
    zero_shot: Annotated[bool, typer.Option("--zero-shot", help="Start from no demos (the baseline is zero-shot).")] = False,
    reference: Annotated[Path | None, typer.Option(help="A checkpoint whose state is the KL reference [default: the initial program].")] = None,
    final_kl_rows: Annotated[int, typer.Option(min=0, help="Local models: estimate the best state's KL to the reference at the end on a seeded sample of at most this many validation rows (2 sampled outputs each; 0: not at all).")] = OptimizeOptions.final_kl_rows,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Checkpoints, best.json, report.json, report.md, learning_curve.png.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out from its last checkpoint.")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Most requests in flight.")] = OptimizeOptions.concurrency,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Bypass the response cache.")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Response cache folder.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Improve the program's demos and instructions on training data; keep the best."""

    from rewardctl.console import DataChannel, progress_bar, stderr_console
    from rewardctl.optimize import optimize
    from rewardctl.outdir import claim_out_dir
    from rewardctl.report import render, render_json, write_optimize_outputs
    from rewardctl.spec import load_spec

    def body() -> None:
        console = stderr_console()
        options = OptimizeOptions(train=train, val=val, val_split=val_split, test=test,
                                  out_dir=str(out) if out else None, optimizer=optimizer, epochs=epochs,
                                  seed=seed, zero_shot=zero_shot, resume=resume, concurrency=concurrency,
                                  reference=str(reference) if reference else None, final_kl_rows=final_kl_rows,
                                  use_cache=not no_cache, cache_dir=str(cache_dir) if cache_dir else None,
                                  fields=field_map or (), data_format=data_format)
        write = None if out is None else (lambda report: write_optimize_outputs(out, report))
        with claim_out_dir(out), DataChannel() as channel:
            program_spec = load_spec(spec)
            with progress_bar(console, quiet) as on_progress:
                report = run_async(optimize(program_spec, options, spec_path=str(spec),
                                            on_progress=on_progress, write_report=write))
            if not quiet:
                console.print(render(report, "markdown"), markup=False, highlight=False, soft_wrap=True)
                if report.outputs:
                    console.print(f"wrote {', '.join(report.outputs.values())}", highlight=False, soft_wrap=True)
            if json_out:
                channel.write(render_json(report))

    _run(body)


@app.command("inspect-rewards", epilog="Exit codes: 0 done (1 with --strict when a check fails); 2 bad usage or input; 3 the run could not complete.")
def inspect_rewards_command(
    spec: SpecArg,
    data: Annotated[str, typer.Option("--data", "-d", show_default=False, help=DATA_HELP)],
    predictions: Annotated[str | None, typer.Option("--predictions", "-p", help="Saved predictions to inspect the rewards on.")] = None,
    generate: Annotated[bool, typer.Option("--generate", help="Run the program to get outputs to inspect the rewards on.")] = False,
    pairs: Annotated[str | None, typer.Option("--pairs", help="Preference pairs (JSONL of prompt, chosen, rejected).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="report.json, report.md, report.html and the plots.")] = None,
    write_spec: Annotated[Path | None, typer.Option(help="Write the spec with the recommended normalization here.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most rows inspected.")] = InspectOptions.limit,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any check fails (for CI).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for sampled rows (0 is a seed).")] = InspectOptions.seed,
    concurrency: Annotated[int, typer.Option(min=1)] = InspectOptions.concurrency,
    no_cache: Annotated[bool, typer.Option("--no-cache")] = False,
    field_map: FieldOpt = None,
    data_format: DataFormatOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check the spec's rewards before trusting them: distributions, extreme cases, balance,
    normalization, agreement, length bias, reward-hacking probes, preference pairs."""

    from rewardctl.console import DataChannel, stderr_console
    from rewardctl.inspection import inspect_rewards, write_normalized_spec
    from rewardctl.outdir import claim_out_dir
    from rewardctl.report import print_inspection, render_json, write_inspect_outputs
    from rewardctl.spec import load_spec

    def body() -> None:
        options = InspectOptions(data=data, predictions=predictions, generate=generate, pairs=pairs,
                                 limit=limit, seed=seed, concurrency=concurrency, use_cache=not no_cache,
                                 fields=field_map or (), data_format=data_format)
        with claim_out_dir(out), DataChannel() as channel:
            program_spec = load_spec(spec)
            inspection = run_async(inspect_rewards(program_spec, options, spec_path=str(spec)))
            report = inspection.report
            if out:
                write_inspect_outputs(out, report, inspection.series)
            if write_spec:
                write_normalized_spec(str(spec), report, str(write_spec), inspection.reward_names)
            if not quiet:
                print_inspection(stderr_console(), report)
            if json_out:
                channel.write(render_json(report))
        if strict and report.failed:
            raise typer.Exit(EXIT_THRESHOLD)

    _run(body)


@app.command("render", epilog="Exit codes: 0 done; 2 bad usage or input; 3 the requests could not be built.")
def render_command(
    spec: SpecArg,
    data: Annotated[str, typer.Option("--data", "-d", help=DATA_HELP, show_default=False)],
    limit: Annotated[int | None, typer.Option(min=0, help="Only the first N rows.")] = None,
    field_map: FieldOpt = None,
    data_format: DataFormatOpt = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Apply the learned state (demos, instructions) of an optimize checkpoint (DIR/best.json), as eval --checkpoint does.")] = None,
    attempt: Annotated[int, typer.Option(min=1, help="Which attempt's request: 1 the first; later ones are a local model's parse retries (under a grammar).")] = RenderOptions.attempt,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip invalid dataset lines instead of stopping.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per row (JSON Lines) instead of text.")] = False,
) -> None:
    """Print the request eval would send for each row, without calling the model: messages or
    completion prompt, response_format or grammar, sampling parameters, and for an
    OpenAI-compatible server the HTTP body litellm POSTs. Keys are redacted."""
    from rewardctl.checkpoint import load_state
    from rewardctl.console import DataChannel
    from rewardctl.render import render_requests
    from rewardctl.report.requests import request_json_line, request_text
    from rewardctl.spec import load_spec

    def body() -> None:
        options = RenderOptions(data=data, limit=limit, skip_invalid=skip_invalid, attempt=attempt,
                                fields=field_map or (), data_format=data_format)
        with DataChannel() as channel:
            program_spec = load_spec(spec)
            state = None if checkpoint is None else load_state(program_spec, checkpoint)
            show = request_json_line if json_out else request_text
            with contextlib.suppress(BrokenPipeError):  # `rewardctl render ... | head`: a reader that has enough
                run_async(render_requests(program_spec, options, state=state, emit=lambda r: channel.write(show(r))))

    _run(body)


@app.command("export")
def export_command(
    spec: SpecArg,
    checkpoint: Annotated[Path, typer.Option("--checkpoint", show_default=False, help="An optimize checkpoint (DIR/best.json).")],
    out: Annotated[Path, typer.Option("--out", "-o", show_default=False, help="The new spec (YAML).")],
) -> None:
    """Write a spec that holds the learned state (demos, instructions) of a checkpoint."""
    from rewardctl.console import stderr_console
    from rewardctl.export import export_spec
    from rewardctl.outdir import check_out_file

    def body() -> None:
        check_out_file(out)
        n = export_spec(spec, checkpoint, out)
        stderr_console().print(f"wrote {out} ({n} examples)", highlight=False, soft_wrap=True)

    _run(body)


@app.command("train-reward", epilog=EXIT_CODES_HELP)
def train_reward_command(
    pairs: Annotated[str, typer.Option("--pairs", show_default=False,
                                       help="JSONL of preference pairs: prompt, chosen, rejected (optional margin).")],
    out: Annotated[Path, typer.Option("--out", show_default=False, help="Folder to write the model to (replaced).")],
    val_split: Annotated[float, typer.Option(min=0.0, max=0.95, help="Share of prompts held out.")] = TrainOptions.val_split,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs [default: 40 for the head, 2 fine-tuning].")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the split, initialization and shuffling (0 is a seed).")] = TrainOptions.seed,
    base_model: Annotated[Path | None, typer.Option(help="Fine-tune this local Hugging Face model instead of training a head on frozen embeddings.")] = None,
    centering: Annotated[float, typer.Option(min=0.0, help="Weight of the centering term (r_chosen + r_rejected)^2.")] = TrainOptions.centering,
    learning_rate: Annotated[float | None, typer.Option(help="[default: 1e-3 head, 2e-5 fine-tuning]")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    split_by: Annotated[str, typer.Option(help="'prompt' (held-out prompts are never trained on) or 'pair'.")] = TrainOptions.split_by,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a small reward model from preference pairs (Bradley-Terry loss)."""
    from rewardctl.console import DataChannel, progress_bar, stderr_console
    from rewardctl.outdir import claim_out_dir
    from rewardctl.rm.train import train_reward_model

    def body() -> None:
        console = stderr_console()
        options = TrainOptions(pairs=pairs, out=str(out), val_split=val_split, epochs=epochs, seed=seed,
                               base_model=str(base_model) if base_model else None, centering=centering,
                               learning_rate=learning_rate, batch_size=batch_size, split_by=split_by)
        with claim_out_dir(out), DataChannel() as channel:
            with progress_bar(console, quiet) as on_progress:
                result = train_reward_model(options, on_progress)
            if not quiet:
                val = "-" if result.val_accuracy is None else f"{result.val_accuracy:.3f}"
                console.print(f"trained {result.kind} on {result.train_pairs} pairs ({result.val_pairs} held out) "
                              f"in {result.seconds:.1f} s: held-out pairwise accuracy {val}, "
                              f"reward mean {result.reward_mean:.3f} std {result.reward_std:.3f}; wrote {out}",
                              highlight=False, soft_wrap=True)
            if json_out:
                channel.write(json.dumps(result.to_json(), indent=2) + "\n")

    _run(body)


def optional_margin(argv: list[str]) -> list[str]:
    """``--fail-on-regression`` takes an optional MARGIN, which typer cannot declare: given bare
    (last, or before another option or argument that is not a number), it means margin 0."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--fail-on-regression":
            following = out[i + 1] if i + 1 < len(out) else None
            try:
                float(following or "")
            except ValueError:
                out.insert(i + 1, "0")
            break
    return out


def main() -> None:
    try:
        app(args=optional_margin(sys.argv[1:]), prog_name="rewardctl")
    finally:
        # The process exits next: the collector need not trace every object the command made
        # (pydantic's schemas, numpy's) once more on the way out (~0.08 s of a cached eval).
        gc.freeze()


if __name__ == "__main__":
    main()
