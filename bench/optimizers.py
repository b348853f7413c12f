"""Optimizers on held-out tasks: every method's test reward, its 95% CI, and its wall time.

    python bench/optimizers.py [--tasks element_names,number_words] [--methods zero-shot,k=3,default]
                               [--limit-test N] [--limit-train N] [--limit-val N] [--epochs N]
                               [--option KEY=VALUE ...] [--seed 0] [--draws 3] [--out DIR] [--json]
                               [--model NAME [--api-base URL] [--max-tokens N]]

Tasks are the folders of bench/tasks/ (spec.yaml without demos; train.jsonl, val.jsonl,
test.jsonl), written for this benchmark and not tuned to the shipped recipes. Every method runs as
a user runs it, the rewardctl CLI in a subprocess:
  - zero-shot:      rewardctl eval SPEC --data test.jsonl;
  - k=3, k=8 (k=N): the same with N demos drawn from train.jsonl, written into the `examples` of a
                    temporary copy of the spec; --draws draws (default 3; seeds --seed, --seed+1,
                    ...; draw 0 is the one optimize makes for its own baseline with that seed),
                    the method's score being the mean over draws (one draw is a noisy measure);
  - each registered optimizer (random_few_shot, bootstrap_few_shot, kl, ...):
                    rewardctl optimize SPEC --train --val --test --optimizer NAME --seed S;
  - default:        rewardctl optimize without --optimizer (the name it ran is shown).
An optimizer's score is the test score its optimize report gives for the best program
(report.json `test.optimized`); the CI comes from `rewardctl eval --checkpoint best.json` on the
same rows, served from that run's cache (its mean is checked against the report's), so every CI is
eval's 95% bootstrap CI of the mean. `vs start` is the optimize report's paired difference from
its initial program on test (the specs have no demos: the start is zero-shot) with its 95% CI.

Each method gets a fresh response cache, so its wall time pays for every model call it makes:
for optimize, the training epochs plus the initial and best programs scored on val and test.
Budget knobs pass through: --epochs, and --option KEY=VALUE (repeatable; e.g. batch_size=4)
goes into the spec's `optimizer:` entry of every optimizer that has that option.

--model NAME (a litellm model string) replaces every task spec's `model` (temperature 0 and
the task's max_tokens kept; its prompt format is then the model's default: json for a chat
model), and --api-base URL points it at a server: `--model openai/smollm2 --api-base
http://127.0.0.1:PORT/v1` runs the tasks on a model served by llama.cpp's server. The tasks'
max_tokens (4 to 24) fit the embedded model's `field: value` replies; a chat model's JSON reply
({"correct": true}) needs more: --max-tokens N replaces them.

How to read it: one block per task (mean, [95% CI], rows, wall time), then the task x method
table of means with each method's mean over tasks, and the check of issue 15: the default
optimizer at or above the best baseline (zero-shot and the k-shot methods run) on every task, and
above it on average. Wall times on a loaded machine are not comparable across runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TASKS_DIR = ROOT / "bench" / "tasks"
SPLITS = ("train", "val", "test")


def rewardctl_command() -> list[str]:
    exe = Path(sys.executable).with_name("rewardctl")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rewardctl"]


def registered_optimizers() -> dict[str, set[str]]:
    """Each registered optimizer's name and the options its config takes."""
    from rewardctl.optimizers import OPTIMIZERS

    return {name: set(cls.config_model.model_fields) - {"type"} for name, cls in OPTIMIZERS.items()}


def default_optimizer() -> str:
    from rewardctl import optimize

    return getattr(optimize, "DEFAULT_OPTIMIZER", "random_few_shot")


def all_tasks() -> list[str]:
    return sorted(path.parent.name for path in TASKS_DIR.glob("*/spec.yaml"))


def method_label(method: str) -> str:
    return f"{method} labeled" if method.startswith("k=") else method


def parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option takes KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def prepare_data(task: str, work: Path, limits: dict[str, int | None]) -> dict[str, Path]:
    """The task's split files, cut to --limit-* rows (copies under work/data) when asked."""
    paths = {}
    for split in SPLITS:
        source = TASKS_DIR / task / f"{split}.jsonl"
        if limits.get(split) is None:
            paths[split] = source
            continue
        target = work / "data" / f"{split}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(target, read_jsonl(source)[: limits[split]])
        paths[split] = target
    return paths


MODEL: dict[str, Any] = {}  # --model and --api-base: what replaces every task spec's model
MAX_TOKENS: dict[str, int] = {}  # --max-tokens


def task_model(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The model entry --model gives this task: temperature 0 and the task's max_tokens kept."""
    if not MODEL:
        return None
    max_tokens = MAX_TOKENS.get("value") or spec.get("model", {}).get("max_tokens", 256)
    return {**MODEL, "temperature": 0, "max_tokens": max_tokens}


def task_spec(task: str, target: Path) -> Path:
    """The task's spec as it runs: the file itself, or a copy with --model's model."""
    return write_spec(task, target) if MODEL else TASKS_DIR / task / "spec.yaml"


def write_spec(task: str, target: Path, **changes: Any) -> Path:
    spec = yaml.safe_load((TASKS_DIR / task / "spec.yaml").read_text())
    model = task_model(spec)
    if model is not None:
        spec["model"] = model
    spec.update(changes)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return target


def labeled_demos(task: str, train: Path, k: int, seed: int) -> list[dict[str, Any]]:
    spec = yaml.safe_load((TASKS_DIR / task / "spec.yaml").read_text())
    rows = read_jsonl(train)
    if k > len(rows):
        raise ValueError(f"k={k} but {train} has {len(rows)} rows")
    # The draw optimize makes for its "k labeled demos" baseline with this seed (rewardctl.optimize.
    # baseline_states): the bench's k=N and an optimize report's baseline of that seed are the same demos.
    picked = random.Random(f"{seed}:{k} labeled demos").sample(rows, k)
    return [{"input": {name: row[name] for name in spec["inputs"]},
             "output": {name: row[name] for name in spec["outputs"] if name in row}} for row in picked]


def run_cli(args: list[str], log: Path) -> tuple[int, float]:
    """Run rewardctl with args; stderr goes to log. Returns the exit code and the wall time."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("w") as err:
        code = subprocess.run(rewardctl_command() + args, check=False, stdout=subprocess.DEVNULL, stderr=err,
                              cwd=ROOT).returncode
    return code, time.monotonic() - start


def tail(log: Path, lines: int = 3) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(text[-lines:])


def eval_report(out: Path) -> dict[str, Any]:
    report = json.loads((out / "report.json").read_text())
    stats = report["stats"]["reward"]
    return {"mean": report["summary"]["reward"], "ci95": stats.get("ci95"), "rows": report["summary"]["count"],
            "errors": report["summary"]["errors"]}


def run_eval_method(task: str, method: str, data: dict[str, Path], work: Path, seed: int,
                    draws: int = 1) -> dict[str, Any]:
    """zero-shot, or k=N: N labeled demos; with draws > 1, one eval per draw (seeds seed, seed+1,
    ...), the mean over draws as the method's score and each draw's beside it."""
    if method == "zero-shot" or draws <= 1:
        return run_one_eval(task, method, data, work, seed)
    runs = [run_one_eval(task, method, data, work / f"draw-{i}", seed + i) for i in range(draws)]
    failed = [r for r in runs if r.get("error")]
    if failed:
        return failed[0]
    means = [r["mean"] for r in runs]
    return {"wall_s": sum(r["wall_s"] for r in runs), "exit_code": 0, "mean": sum(means) / len(means),
            "rows": runs[0]["rows"], "errors": sum(r["errors"] for r in runs), "draws": means,
            "ci95": None}


def run_one_eval(task: str, method: str, data: dict[str, Path], work: Path, seed: int) -> dict[str, Any]:
    if method == "zero-shot":
        spec = task_spec(task, work / "spec.yaml")
    else:
        k = int(method.removeprefix("k="))
        try:
            demos = labeled_demos(task, data["train"], k, seed)
        except ValueError as exc:
            return {"wall_s": 0.0, "error": str(exc)}
        spec = write_spec(task, work / "spec.yaml", examples=demos)
    out = work / "eval"
    code, wall = run_cli(["eval", str(spec), "--data", str(data["test"]), "--out", str(out),
                          "--cache-dir", str(work / "cache"), "--quiet"], work / "eval.log")
    result: dict[str, Any] = {"wall_s": wall, "exit_code": code}
    if code not in (0, 1) or not (out / "report.json").exists():
        return {**result, "error": f"eval exited {code}: {tail(work / 'eval.log')}"}
    return {**result, **eval_report(out)}


def run_optimize_method(task: str, method: str, data: dict[str, Path], work: Path, args: argparse.Namespace,
                        optimizers: dict[str, set[str]]) -> dict[str, Any]:
    name = default_optimizer() if method == "default" else method
    spec = task_spec(task, work / "spec.yaml")
    skipped = sorted(key for key in args.option if key not in optimizers.get(name, set()))
    options = {key: value for key, value in args.option.items() if key not in skipped}
    if options:  # the budget knobs go into the spec's optimizer entry
        spec = write_spec(task, work / "spec.yaml", optimizer={"type": name, **options})
    out = work / "optimize"
    command = ["optimize", str(spec), "--train", str(data["train"]), "--val", str(data["val"]),
               "--test", str(data["test"]), "--out", str(out), "--cache-dir", str(work / "cache"), "--quiet"]
    if method != "default":
        command += ["--optimizer", name]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    code, wall = run_cli(command, work / "optimize.log")
    result: dict[str, Any] = {"wall_s": wall, "exit_code": code, "options_skipped": skipped}
    if code not in (0, 1) or not (out / "report.json").exists():
        return {**result, "error": f"optimize exited {code}: {tail(work / 'optimize.log')}"}
    report = json.loads((out / "report.json").read_text())
    test = report.get("test") or {}
    result.update({
        "optimizer": report["optimizer"].get("type"), "mean": test.get("optimized"), "rows": test.get("rows"),
        "vs_start": test.get("difference"), "vs_start_ci95": test.get("ci95"), "start": test.get("baseline"),
        "val_reward": report["best"].get("val_reward"), "best_demos": report["best"].get("demos"),
        "epochs_run": len(report.get("history", [])), "early_stopped": report.get("early_stopped"),
        "model_requests": report.get("usage", {}).get("requests"), "calls": report.get("calls"),
        "best_instructions": report["best"].get("instructions"),
    })
    # The CI of the best program's mean on test: eval of best.json on the same rows (cached).
    check = work / "best_eval"
    code, ci_wall = run_cli(["eval", str(spec), "--data", str(data["test"]), "--checkpoint", str(out / "best.json"),
                             "--out", str(check), "--cache-dir", str(work / "cache"), "--quiet"], work / "best_eval.log")
    result["ci_eval_s"] = ci_wall
    if code in (0, 1) and (check / "report.json").exists():
        scored = eval_report(check)
        result["ci95"] = scored["ci95"]
        result["errors"] = scored["errors"]
        if result["mean"] is None or scored["mean"] is None or abs(scored["mean"] - result["mean"]) > 1e-9:
            result["warning"] = (f"eval --checkpoint gives {scored['mean']} on test, "
                                 f"the optimize report {result['mean']}")
    else:
        result["warning"] = f"eval --checkpoint exited {code}: {tail(work / 'best_eval.log')}"
    return result


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def fmt_ci(ci: list[float] | None, signed: bool = False) -> str:
    if not ci:
        return "-"
    return f"{ci[0]:+.2f} to {ci[1]:+.2f}" if signed else f"{ci[0]:.2f}-{ci[1]:.2f}"


def summarize(tasks: list[str], methods: list[str], results: dict[tuple[str, str], dict]) -> dict[str, Any]:
    means = {m: [results[t, m].get("mean") for t in tasks] for m in methods}
    average = {m: (sum(v) / len(v) if v and all(x is not None for x in v) else None) for m, v in means.items()}
    baselines = [m for m in methods if m == "zero-shot" or m.startswith("k=")]
    summary: dict[str, Any] = {"average": average, "baselines": baselines}
    if "default" in methods and baselines:
        per_task = []
        for task in tasks:
            scores = {m: results[task, m].get("mean") for m in baselines}
            known = {m: s for m, s in scores.items() if s is not None}
            best = max(known, key=known.__getitem__) if known else None
            default = results[task, "default"].get("mean")
            per_task.append({"task": task, "default": default, "best_baseline": best,
                             "best_baseline_mean": known.get(best) if best else None,
                             "at_or_above": None if default is None or best is None else default >= known[best] - 1e-12})
        complete = [row for row in per_task if row["at_or_above"] is not None]
        best_avg = (sum(r["best_baseline_mean"] for r in complete) / len(complete)) if complete else None
        default_avg = (sum(r["default"] for r in complete) / len(complete)) if complete else None
        summary["default_vs_best_baseline"] = {
            "per_task": per_task, "default_average": default_avg, "best_baseline_average": best_avg,
            "at_or_above_on_each": bool(complete) and len(complete) == len(tasks) and all(r["at_or_above"] for r in complete),
            "above_on_average": None if best_avg is None else default_avg > best_avg,
        }
    return summary


def print_tables(tasks: list[str], methods: list[str], results: dict[tuple[str, str], dict],
                 summary: dict[str, Any], header: str) -> None:
    print(header)
    print()
    print(f"{'task':<15}{'method':<28}{'test':>7}  {'95% CI':<11}{'rows':>5}{'wall s':>9}   "
          f"{'vs start (95% CI)':<24}notes")
    for task in tasks:
        for i, method in enumerate(methods):
            r = results[task, method]
            label = method_label(method)
            if method == "default" and r.get("optimizer"):
                label = f"default ({r['optimizer']})"
            vs = "" if r.get("vs_start") is None else f"{r['vs_start']:+.3f} ({fmt_ci(r.get('vs_start_ci95'), True)})"
            notes = []
            if r.get("error"):
                notes.append(r["error"][:120])
            if r.get("errors"):
                notes.append(f"{r['errors']} rows failed")
            if r.get("draws"):
                notes.append("mean of draws " + " / ".join(fmt(x) for x in r["draws"]))
            if r.get("best_demos") is not None:
                notes.append(f"{r['best_demos']} demos, val {fmt(r.get('val_reward'))}, {r.get('epochs_run')} epochs")
            start_instructions = yaml.safe_load((TASKS_DIR / task / "spec.yaml").read_text()).get("instructions")
            if r.get("best_instructions") not in (None, start_instructions):
                notes.append(f"instructions {json.dumps(r['best_instructions'][:100])}")
            if r.get("options_skipped"):
                notes.append("options not taken: " + ",".join(r["options_skipped"]))
            if r.get("warning"):
                notes.append(r["warning"])
            print(f"{task if i == 0 else '':<15}{label:<28}{fmt(r.get('mean')):>7}  {fmt_ci(r.get('ci95')):<11}"
                  f"{r.get('rows') if r.get('rows') is not None else '-':>5}{r.get('wall_s', 0):>9.1f}   {vs:<24}"
                  + "; ".join(notes))
        print()
    # task x method: means only
    width = max(12, *(len(method_label(m)) + 2 for m in methods))
    print(f"{'mean test reward':<18}" + "".join(f"{method_label(m):>{width}}" for m in methods))
    for task in tasks:
        print(f"{task:<18}" + "".join(f"{fmt(results[task, m].get('mean')):>{width}}" for m in methods))
    print(f"{'mean over tasks':<18}" + "".join(f"{fmt(summary['average'][m]):>{width}}" for m in methods))
    print(f"{'wall s, total':<18}" + "".join(f"{sum(results[t, m].get('wall_s', 0) for t in tasks):>{width}.0f}"
                                            for m in methods))
    check = summary.get("default_vs_best_baseline")
    if check:
        print()
        for row in check["per_task"]:
            verdict = {True: "at or above", False: "BELOW", None: "n/a"}[row["at_or_above"]]
            print(f"default vs best baseline on {row['task']}: {fmt(row['default'])} vs {fmt(row['best_baseline_mean'])} "
                  f"({method_label(row['best_baseline']) if row['best_baseline'] else '-'}): {verdict}")
        print(f"average: default {fmt(check['default_average'])} vs best baseline per task "
              f"{fmt(check['best_baseline_average'])}; at or above on each: {'yes' if check['at_or_above_on_each'] else 'no'}; "
              f"above on average: {'yes' if check['above_on_average'] else 'no'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--tasks", help=f"comma-separated [default: all of bench/tasks: {','.join(all_tasks())}]")
    parser.add_argument("--methods", help="comma-separated: zero-shot, k=N, an optimizer's name, default "
                        "[default: zero-shot,k=3,k=8, every registered optimizer, default]")
    parser.add_argument("--limit-test", type=int, help="first N test rows only")
    parser.add_argument("--limit-train", type=int, help="first N training rows only")
    parser.add_argument("--limit-val", type=int, help="first N validation rows only")
    parser.add_argument("--epochs", type=int, help="optimize --epochs [default: the optimizer's]")
    parser.add_argument("--option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                        help="an optimizer option for every optimizer that takes it (repeatable), e.g. batch_size=4")
    parser.add_argument("--seed", type=int, default=0, help="optimize --seed and the k-shot demo draws (0 is a seed)")
    parser.add_argument("--draws", type=int, default=3,
                        help="k=N: demo draws (seeds seed, seed+1, ...), scored by their mean: one draw of N demos "
                        "is a noisy measure of the method (draw 0 is optimize's own baseline of that seed)")
    parser.add_argument("--out", type=Path, help="keep every run here (DIR/<task>/<method>/) [default: a temporary folder]")
    parser.add_argument("--json", action="store_true", help="print the results as JSON (and nothing else) on stdout")
    parser.add_argument("--model", help="a litellm model string that replaces every task spec's model "
                        "(temperature 0 and max_tokens kept), e.g. openai/smollm2")
    parser.add_argument("--api-base", help="--model's server, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--max-tokens", type=int, help="with --model: max_tokens for every task [default: the task's]")
    args = parser.parse_args()
    args.option = dict(args.option)
    if (args.api_base or args.max_tokens) and not args.model:
        parser.error("--api-base and --max-tokens need --model")
    if args.max_tokens:
        MAX_TOKENS["value"] = args.max_tokens
    if args.model:
        MODEL.update({"name": args.model, **({"api_base": args.api_base} if args.api_base else {})})

    optimizers = registered_optimizers()
    tasks = args.tasks.split(",") if args.tasks else all_tasks()
    for task in tasks:
        if not (TASKS_DIR / task / "spec.yaml").exists():
            parser.error(f"no task {task!r} (known: {', '.join(all_tasks())})")
    methods = (args.methods.split(",") if args.methods
               else ["zero-shot", "k=3", "k=8", *optimizers, "default"])
    for method in methods:
        if not (method in ("zero-shot", "default") or method in optimizers
                or (method.startswith("k=") and method[2:].isdigit() and int(method[2:]) > 0)):
            parser.error(f"unknown method {method!r}: zero-shot, k=N, default or one of {', '.join(optimizers)}")

    root = args.out or Path(tempfile.mkdtemp(prefix="rewardctl-bench-optimizers-"))
    limits = {"train": args.limit_train, "val": args.limit_val, "test": args.limit_test}
    results: dict[tuple[str, str], dict] = {}
    started = time.monotonic()
    try:
        for task in tasks:
            for method in methods:
                work = root / task / method.replace("=", "")
                if work.exists():
                    shutil.rmtree(work)  # a fresh cache and fresh outputs for every method
                work.mkdir(parents=True)
                data = prepare_data(task, work, limits)
                if method == "zero-shot" or method.startswith("k="):
                    result = run_eval_method(task, method, data, work, args.seed, args.draws)
                else:
                    result = run_optimize_method(task, method, data, work, args, optimizers)
                results[task, method] = result
                print(f"{task} · {method_label(method)}: {fmt(result.get('mean'))} [{fmt_ci(result.get('ci95'))}] "
                      f"in {result['wall_s']:.1f} s" + (f" ({result['error']})" if result.get("error") else ""),
                      file=sys.stderr, flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)
    total = time.monotonic() - started

    summary = summarize(tasks, methods, results)
    header = (f"tasks={','.join(tasks)} seed={args.seed} epochs={args.epochs or 'default'} "
              + (f"model={args.model} max_tokens={args.max_tokens or 'per task'} " if args.model else "")
              + f"options={args.option or '-'} limits={ {k: v for k, v in limits.items() if v is not None} or '-'} "
              f"cpus={os.cpu_count()} total {total:.0f} s")
    if args.json:
        print(json.dumps({"tasks": tasks, "methods": methods, "seed": args.seed, "epochs": args.epochs,
                          "model": args.model, "api_base": args.api_base, "max_tokens": args.max_tokens,
                          "options": args.option, "limits": limits, "total_wall_s": total,
                          "results": [{"task": t, "method": m, **results[t, m]} for t in tasks for m in methods],
                          "summary": summary}, indent=2))
    else:
        print_tables(tasks, methods, results, summary, header)


if __name__ == "__main__":
    main()
