"""``rewardctl merge``: join the outputs of a sharded eval (``eval --shard K/N``) into one run.

Each shard's predictions.jsonl holds its rows with their global index, in order, so the merge is
a streaming k-way merge by index (memory stays flat however large the run). The report is rebuilt
from the merged rows with the same statistics code as eval, in the same row order, so it equals
the report of an unsharded run of the same rows; only timing fields differ: wall_time_s is the
longest shard's (the shards ran side by side) and latency percentiles are over every shard's calls.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import ValidationError

from rewardctl.dataset import ReadStats, iter_json_objects
from rewardctl.errors import InputError
from rewardctl.io import JsonlWriter
from rewardctl.records.eval import EvalReport, ModelUsage, Usage
from rewardctl.records.prediction import PredictionRecord
from rewardctl.results import build_report
from rewardctl.scoring import RunStats
from rewardctl.shards import parse_shard
from rewardctl.spec import ProgramSpec, build_scorer


def _load_report(folder: Path) -> EvalReport:
    path = folder / "report.json"
    if not path.is_file():
        partial = folder / "predictions.jsonl.partial"
        why = " (the shard was interrupted: finish it with eval --resume)" if partial.exists() else ""
        raise InputError(f"no report.json{why}", path=str(folder))
    try:
        return EvalReport.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise InputError(f"not a rewardctl report: {str(exc).splitlines()[0]}", path=str(path)) from None


def _records(path: Path) -> Iterator[tuple[tuple[int, int], PredictionRecord]]:
    """The shard's records with their (index, sample) order key; --repeat samples share an index."""
    last = (-1, -1)
    for line_no, obj in iter_json_objects(str(path)):
        try:
            record = PredictionRecord.model_validate(obj)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or None
            raise InputError(f"not an eval prediction: {error['msg']}", path=str(path), line=line_no,
                             field=field) from None
        if record.index is None or (record.index, record.sample or 0) <= last:
            raise InputError("expected rows in increasing 'index' (and 'sample') order (eval's predictions.jsonl)",
                             path=str(path), line=line_no, field="index")
        last = (record.index, record.sample or 0)
        yield last, record


def _sum_usage(usages: list[Usage | None]) -> Usage | None:
    present = [u for u in usages if u is not None]
    if not present:
        return None
    faults: dict[str, int] = {}
    for usage in present:
        for kind, count in usage.faults.items():
            faults[kind] = faults.get(kind, 0) + count
    costs = [u.cost_usd for u in present]
    return Usage(
        requests=sum(u.requests for u in present), cached_rows=sum(u.cached_rows for u in present),
        prompt_tokens=sum(u.prompt_tokens for u in present),
        completion_tokens=sum(u.completion_tokens for u in present),
        retries=sum(u.retries for u in present), faults=faults,
        resumed_rows=sum(u.resumed_rows for u in present),
        cost_usd=None if any(c is None for c in costs) else round(sum(costs), 10),
        judge=ModelUsage.total(u.judge for u in present),
    )


def _check_shards(spec: ProgramSpec, folders: list[Path], reports: list[EvalReport]) -> None:
    """Every shard of one split, once, from this spec and the same data."""
    fingerprint = spec.fingerprint()
    seen: dict[int, Path] = {}
    total_shards = None
    for folder, report in zip(folders, reports, strict=True):
        where = str(folder / "report.json")
        if report.kind != "eval":
            raise InputError(f"a '{report.kind}' report, not an eval shard", path=where)
        if report.spec.fingerprint != fingerprint:
            raise InputError("this shard ran another spec (its fingerprint differs from the spec given)",
                             path=where, field="spec.fingerprint")
        shard = parse_shard(report.data.shard) if report.data.shard else (1, 1)
        if total_shards is not None and shard[1] != total_shards:
            raise InputError(f"shard {report.data.shard} of another split (the first folder has "
                             f"{total_shards} shards)", path=where, field="data.shard")
        total_shards = shard[1]
        if shard[0] in seen:
            raise InputError(f"shard {shard[0]}/{shard[1]} given twice (also {seen[shard[0]]})", path=where)
        seen[shard[0]] = folder
        if report.data.path != reports[0].data.path or report.data.limit != reports[0].data.limit:
            raise InputError(f"this shard read {report.data.path} (limit {report.data.limit}), the first "
                             f"read {reports[0].data.path} (limit {reports[0].data.limit})",
                             path=where, field="data.path")
    missing = sorted(set(range(1, (total_shards or 1) + 1)) - set(seen))
    if missing:
        listed = ", ".join(f"{k}/{total_shards}" for k in missing)
        raise InputError(f"missing shards: {listed} (every shard's folder is needed)")


def _merge_rows(folders: list[Path], out: Path, stats: RunStats) -> None:
    """The shards' predictions in index order, into one predictions.jsonl (streamed)."""
    writer = JsonlWriter(out / "predictions.jsonl")
    streams = [_records(f / "predictions.jsonl") for f in folders]
    try:
        for _, record in heapq.merge(*streams, key=lambda item: item[0]):
            stats.add(record)
            writer.write_line(record.to_line())
    except BaseException:
        writer.close()
        raise
    writer.commit()


async def merge_shards(spec: ProgramSpec, shard_dirs: list[str], out_dir: str, *,
                       spec_path: str | None = None, fail_under: float | None = None,
                       write_report: Callable[[EvalReport], None] | None = None) -> EvalReport:
    if not shard_dirs:
        raise InputError("no shard folders given")
    folders = [Path(d) for d in shard_dirs]
    reports = [_load_report(f) for f in folders]
    _check_shards(spec, folders, reports)
    scorer = build_scorer(spec, spec_path=spec_path, use_cache=False)
    stats = RunStats(scorer)
    out = Path(out_dir)
    _merge_rows(folders, out, stats)
    # Every shard reads every line (and skips the same invalid ones); it keeps only its rows.
    read_stats = ReadStats(skipped=reports[0].data.skipped, skipped_examples=list(reports[0].skipped_examples))
    warnings = list(dict.fromkeys(w for r in reports for w in r.warnings))
    report = build_report(kind="eval", spec=spec, spec_path=spec_path, data_path=reports[0].data.path,
                          stats=stats, read_stats=read_stats, scorer=scorer,
                          wall=max(r.wall_time_s for r in reports), limit=reports[0].data.limit,
                          fail_under=fail_under, usage=_sum_usage([r.usage for r in reports]),
                          outputs={"predictions": str(out / "predictions.jsonl")},
                          row_rule=reports[0].repeats.row_rule if reports[0].repeats else "mean",
                          normalization=reports[0].normalization, warnings=warnings)
    report.merged_from = [str(f) for f in folders]
    if write_report is not None:
        write_report(report)
    return report
