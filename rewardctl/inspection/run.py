"""The inspect-rewards run: load the rows to inspect, score them, run the checks in order, and
build the report. Writing the report's files is the report layer's (rewardctl.report.inspect);
`write_normalized_spec` writes the spec with the recommended normalization."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rewardctl.dataset import Row, iter_json_objects, read_rows
from rewardctl.errors import InputError
from rewardctl.inspection.checks import (
    PreferencePair,
    check_agreement,
    check_balance,
    check_distribution,
    check_extremes,
    check_length_bias,
    check_normalization,
    check_pairs,
    check_probes,
)
from rewardctl.inspection.context import (
    InspectOptions,
    Item,
    Population,
    Source,
    raw_values,
    text_length,
)
from rewardctl.io import atomic_write_text
from rewardctl.lm.cache import ResponseCache
from rewardctl.lm.client import LMClient
from rewardctl.paths import responses_dir
from rewardctl.records.inspect import (
    STATUSES,
    AnyCheck,
    InspectedSpec,
    InspectReport,
    InspectSeries,
    NormalizationCheck,
)
from rewardctl.runner import Runner
from rewardctl.scorefile import read_predictions
from rewardctl.scoring import Scorer
from rewardctl.spec import ProgramSpec, build_scorer, load_spec
from rewardctl.yamlload import load_yaml


@dataclass
class Inspection:
    """The report, and what its pages draw (each score's values, each output's length)."""

    report: InspectReport
    series: InspectSeries
    reward_names: set[str]


# --- the rows ------------------------------------------------------------------------------------

async def generated_items(spec: ProgramSpec, scorer: Scorer, data_rows: list[Row],
                          options: InspectOptions) -> list[Item]:
    """Run the program on the dataset's rows: its outputs are the ones inspected."""
    cache = ResponseCache(options.cache_dir or responses_dir()) if options.use_cache else None
    runner = Runner(spec, scorer, LMClient(spec.model, cache), options.concurrency, options.use_cache)
    results = await runner.run(spec.initial_state(), data_rows)
    if cache is not None:
        cache.close()
    return [Item(r.inputs, r.y_true or {}, p.y_pred if p.ok else None)
            for r, (p, _) in zip(data_rows, results, strict=True)]


async def load_items(spec: ProgramSpec, scorer: Scorer, data_rows: list[Row],
                     options: InspectOptions) -> tuple[Source, list[Item]]:
    """The outputs to inspect: saved predictions, the program's own, or the references alone."""
    if options.predictions:
        required = scorer.required_outputs(spec.outputs)
        return "predictions", [Item(r.inputs or {}, r.y_true, r.y_pred) for r in
                               read_predictions(options.predictions, spec.outputs, required, limit=options.limit)]
    if options.generate:
        return "program", await generated_items(spec, scorer, data_rows, options)
    return "references", [Item(r.inputs, r.y_true or {}, r.y_true) for r in data_rows]


def read_pairs(path: str, spec: ProgramSpec) -> list[PreferencePair]:
    """Preference pairs (JSONL of prompt, chosen, rejected and an optional reference); a bare
    value stands for the program's first input or output field."""
    in_name, out_name = next(iter(spec.inputs)), next(iter(spec.outputs))

    def as_obj(value: Any, name: str) -> dict[str, Any]:
        return value if isinstance(value, dict) else {name: value}

    pairs = []
    for line_no, obj in iter_json_objects(path):
        for key in ("prompt", "chosen", "rejected"):
            if key not in obj:
                raise InputError(f"missing '{key}'", path=path, line=line_no, field=key)
        reference = as_obj(obj["reference"], out_name) if "reference" in obj else None
        pairs.append(PreferencePair(as_obj(obj["prompt"], in_name), as_obj(obj["chosen"], out_name),
                                    as_obj(obj["rejected"], out_name), reference))
    return pairs


# --- the checks ----------------------------------------------------------------------------------

async def run_checks(pop: Population) -> list[AnyCheck]:
    """Every check, in the report's order."""
    outputs = [it.y_pred for it in pop.items]
    y_trues, inputs = [it.y_true for it in pop.items], [it.inputs for it in pop.items]
    for score in pop.scores:
        pop.values[score.name] = await raw_values(score, y_trues, outputs, inputs)
    extremes = [await check_extremes(pop, score) for score in pop.scores]
    # a constant score's verdict needs its extremes: all right, or blind to its input
    checks: list[AnyCheck] = [check_distribution(pop, score, ext) for score, ext in zip(pop.scores, extremes, strict=True)]
    checks += extremes
    checks += [check_balance(pop), check_normalization(pop), check_agreement(pop)]
    checks += [check_length_bias(pop, score) for score in pop.scores]
    checks += [await check_probes(pop, score) for score in pop.scores]
    if pop.options.pairs:
        checks += await check_pairs(pop, read_pairs(pop.options.pairs, pop.spec))
    return checks


def series_of(pop: Population) -> InspectSeries:
    return InspectSeries(scores=[s.name for s in pop.scores], values=pop.values, has_outputs=pop.has_outputs,
                         output_lengths=[None if it.y_pred is None else text_length(it.y_pred) for it in pop.items])


async def inspect_rewards(spec: ProgramSpec, options: InspectOptions, *,
                          spec_path: str | None = None) -> Inspection:
    """Run the spec's rewards and metrics on the rows (and perturbations of them) and check them.
    Values are inspected raw (before normalization and the failure policy)."""
    started = time.perf_counter()
    scorer = build_scorer(spec, spec_path=spec_path, use_cache=options.use_cache, cache_dir=options.cache_dir)
    required = scorer.required_outputs(spec.outputs)
    data_rows = list(read_rows(options.data, spec.inputs, spec.outputs, required_outputs=required, limit=options.limit,
                               data=spec.data_options(options.columns, options.data_format)))
    source, items = await load_items(spec, scorer, data_rows, options)
    if not items:
        raise InputError("no rows to inspect", path=options.predictions or options.data)
    reward_names = {r.name for r in scorer.rewards}
    pop = Population(spec, [*scorer.rewards, *scorer.metrics], reward_names, items, data_rows, source, options)
    checks = await run_checks(pop)
    normalization = next(c for c in checks if isinstance(c, NormalizationCheck))
    report = InspectReport(
        spec=InspectedSpec(path=spec_path, name=spec.name, model=spec.model.name), source=source,
        rows=len(items), failed_predictions=sum(1 for it in items if it.y_pred is None),
        counts={k: sum(1 for c in checks if c.status == k) for k in STATUSES}, checks=checks,
        recommended_normalization=normalization.evidence.recommended or {},
        wall_time_s=round(time.perf_counter() - started, 2))
    return Inspection(report, series_of(pop), reward_names)


# --- the normalized spec -------------------------------------------------------------------------

def write_normalized_spec(spec_path: str | None, report: InspectReport, out: str, reward_names: set[str]) -> None:
    """Write the spec with each reward's recommended normalization (where it recommends one),
    check that it loads, and list it among the report's outputs."""
    if spec_path is None:
        raise InputError("--write-spec needs the spec's file")
    data = dict(load_yaml(Path(spec_path).read_text(encoding="utf-8-sig"), spec_path).data)
    changed = []
    for entry in data.get("rewards") or []:
        name = entry.get("name") or entry.get("type")
        rec = report.recommended_normalization.get(name)
        if name in reward_names and rec and rec.method != "none":
            entry["normalization"] = rec.parameters()
            changed.append(name)
    header = (f"# Written by rewardctl inspect-rewards from {spec_path}: normalization fitted on "
              f"{report.rows} rows ({report.source}) for {', '.join(changed) or 'no reward'}.\n")
    atomic_write_text(out, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    load_spec(out)
    report.outputs["spec"] = out
