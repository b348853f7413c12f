"""The checks. Each looks at the population (and perturbations of its outputs) and returns its
finding, typed: pass, warn, fail, or skip with the reason, and its evidence.

1. distribution: statistics, histogram, NaN/infinite and out-of-range values, constant rewards, ties;
2. extremes: y_true against itself at the top; empty, truncated, unrelated and garbage outputs at
   the bottom; good and bad clearly apart; the best- and worst-scored rows;
3. balance: labels of enum/boolean outputs, reference lengths, duplicate rows;
4. normalization: scale and spread, a recommended normalization with fitted parameters;
5. agreement: Spearman and Kendall correlations between scores, the rows they disagree on most;
6. length bias: correlation of each score with output length;
7. hacking probes: meaningless edits (emojis, repetition, padding, upper case, the input copied
   in, extra JSON fields) must not raise a score;
8. preference pairs: pairwise accuracy and margin, split by whether the chosen answer is longer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardctl.dataset import Row
from rewardctl.inspection.context import (
    Item,
    Population,
    kendall,
    raw_values,
    short,
    spearman,
    text_length,
)
from rewardctl.inspection.probes import PROBES, emptied, garbage, probe, truncated
from rewardctl.records.inspect import (
    AgreementCheck,
    AgreementEvidence,
    BalanceCheck,
    BalanceEvidence,
    DistributionCheck,
    DistributionEvidence,
    DuplicateExample,
    ExtremesCheck,
    ExtremesEvidence,
    HackingCheck,
    HackingEvidence,
    Histogram,
    LengthBiasCheck,
    LengthBiasEvidence,
    NormalizationCheck,
    NormalizationEvidence,
    PairsCheck,
    PairsEvidence,
    PairsSubset,
    ProbeExample,
    ProbeResult,
    Recommendation,
    ReferenceLength,
    ScoredRow,
    Status,
)
from rewardctl.rewards import Reward

NO_OUTPUTS = "no outputs: pass --predictions or --generate"


# --- 1. distribution -----------------------------------------------------------------------------

def distribution_stats(values: list[float | None], known: tuple[float, float] | None) -> DistributionEvidence:
    raw = [v for v in values if v is not None]
    nonfinite = [v for v in raw if not math.isfinite(v)]
    finite = [v for v in raw if math.isfinite(v)]
    stats = DistributionEvidence(count=len(raw), failed_predictions=len(values) - len(raw),
                                 nan=sum(1 for v in nonfinite if math.isnan(v)),
                                 infinite=sum(1 for v in nonfinite if math.isinf(v)))
    if finite:
        a = np.asarray(finite)
        counts, edges = np.histogram(a, bins=10)
        distinct, freq = np.unique(a, return_counts=True)
        stats.mean, stats.std = float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0
        stats.min, stats.max = float(a.min()), float(a.max())
        stats.percentiles = {f"p{p}": float(np.percentile(a, p)) for p in (5, 25, 50, 75, 95)}
        stats.histogram = Histogram(counts=counts.tolist(), edges=[float(e) for e in edges])
        stats.distinct = len(distinct)
        stats.mode_share = float(freq.max() / len(a))
        stats.tie_share = float(1 - (freq == 1).sum() / len(a))
        if known is not None:
            stats.expected_range = list(known)
            stats.out_of_range = sum(1 for v in finite if v < known[0] - 1e-9 or v > known[1] + 1e-9)
    return stats


def all_matched(stats: DistributionEvidence, extremes: ExtremesEvidence | None) -> bool:
    """Whether a constant score is every prediction scoring what its reference scores against
    itself, by a reward that does drop on bad outputs (the extremes check's separation): then the
    sample holds no wrong prediction, and the reward is not shown to ignore its input."""
    if extremes is None or extremes.separation is None or not extremes.means or extremes.range is None:
        return False
    top = extremes.means.get("self")
    width = extremes.range[1] - extremes.range[0]
    return (top is not None and stats.min is not None and extremes.separation >= 0.1
            and stats.min >= top - 1e-6 * max(width, 1.0))


def constant_finding(stats: DistributionEvidence, extremes: ExtremesEvidence | None) -> tuple[Status, str]:
    """A constant score fails (it cannot rank outputs), unless every prediction was right (a warning)."""
    value = stats.min
    stats.all_predictions_matched = all_matched(stats, extremes)
    if not stats.all_predictions_matched or extremes is None or not extremes.means:
        return "fail", f"constant: every output scores {value:g}, so it cannot rank outputs"
    bad = [(k, extremes.means[k]) for k in ("empty", "truncated", "unrelated", "garbage")
           if extremes.means.get(k) is not None]
    drops = ", ".join(f"{k} {v:.3f}" for k, v in bad)
    return "warn", (f"every prediction matched its reference: all {stats.count} rows score {value:g}, the "
                    f"reference's own score, so the sample cannot show how it ranks wrong outputs; bad outputs "
                    f"score lower ({drops})")


def check_distribution(pop: Population, score: Reward, extremes: ExtremesCheck | None = None) -> DistributionCheck:
    """``extremes``: the same score's extremes check, which tells a constant score that ignores its
    input (a failure) from one over predictions that were all right (a warning)."""
    name = score.name
    if not pop.has_outputs:
        return DistributionCheck(score=name, status="skip",
                                 summary="no outputs to score: pass --predictions or --generate")
    known = score.value_range()
    stats = distribution_stats(pop.values[name], known)
    finite = pop.finite(name)
    status: Status
    if stats.nan or stats.infinite:
        status, summary = "fail", f"{stats.nan + stats.infinite} NaN or infinite values"
    elif stats.out_of_range:
        status, summary = "fail", f"{stats.out_of_range} values outside its range {list(known)}"
    elif len(finite) >= 2 and stats.distinct == 1:
        status, summary = constant_finding(stats, extremes.evidence if extremes is not None else None)
    elif len(finite) >= 10 and stats.mode_share >= 0.95:
        status, summary = "warn", f"nearly constant: {stats.mode_share:.0%} of outputs score the same"
    elif not finite:
        status, summary = "skip", "no scored outputs"
    else:
        status, summary = "pass", (f"mean {stats.mean:.3f}, std {stats.std:.3f}, "
                                   f"{stats.distinct} distinct values")
    return DistributionCheck(score=name, status=status, summary=summary, evidence=stats)


# --- 2. extremes ---------------------------------------------------------------------------------

def bad_outputs(sample: list[Item], score: Reward) -> dict[str, list[Any]]:
    """y_true itself, and outputs that should score low: emptied, truncated, another row's
    reference (one that differs where the reward looks, after its masks, when a row has one),
    garbage."""
    y_trues = [it.y_true for it in sample]
    seen = [score.apply_masks(t) for t in y_trues]
    unrelated = []
    n = len(sample)
    for i in range(n):
        others = [(i + k) % n for k in range(1, n)]
        other = next((j for j in others if seen[j] != seen[i]),
                     next((j for j in others if y_trues[j] != y_trues[i]), (i + 1) % n))
        unrelated.append(y_trues[other])
    return {"self": y_trues, "empty": [emptied(t) for t in y_trues],
            "truncated": [truncated(t) for t in y_trues], "unrelated": unrelated,
            "garbage": [garbage(t) for t in y_trues]}


def changed_rows(score: Reward, y_trues: list[Any], preds: list[Any]) -> list[int]:
    """The rows where a bad output differs from its reference where the reward looks: one equal
    to it (an empty string, 0 or False already, or a cut that drops nothing) is no bad output."""
    return [i for i, (t, p) in enumerate(zip(y_trues, preds, strict=True))
            if score.apply_masks(t) != score.apply_masks(p)]


def best_and_worst(pop: Population, name: str) -> list[ScoredRow]:
    scored = sorted([(v, i) for i, v in enumerate(pop.values[name]) if v is not None and math.isfinite(v)])
    return [ScoredRow(value=v, inputs=short(pop.items[i].inputs), y_pred=short(pop.items[i].y_pred),
                      y_true=short(pop.items[i].y_true)) for v, i in [*scored[-2:][::-1], *scored[:2]]]


def judge_extremes(ev: ExtremesEvidence, per_kind: dict[str, list[float]]) -> tuple[Status, str]:
    """Fail when y_true and bad outputs score alike, or y_true is not at the top of a known range;
    warn when bad outputs score in the upper half, or truncated outputs like whole ones."""
    means, (lo, hi) = ev.means, ev.range
    width = hi - lo
    bad_kinds = [k for k in ("empty", "unrelated", "garbage") if means[k] is not None]
    worst_bad = max((means[k] for k in bad_kinds), default=lo)
    ev.separation = (means["self"] - worst_bad) / width
    ev.self_at_top = sum(1 for v in per_kind["self"] if v >= hi - 0.05 * width) / len(per_kind["self"])
    problems = []
    status: Status = "pass"
    if ev.separation < 0.1:
        status = "fail"
        problems.append(f"y_true and garbage score alike (self {means['self']:.3f}, worst bad "
                        f"{worst_bad:.3f})")
    if ev.range_known and ev.self_at_top < 0.95:
        status = "fail"
        problems.append(f"y_true against itself is at the top of {[lo, hi]} for only {ev.self_at_top:.0%} of rows")
    high_bad = [k for k in bad_kinds if means[k] > lo + 0.5 * width]
    if high_bad and status == "pass":
        status = "warn"
        problems.append("bad outputs score in the upper half: " + ", ".join(f"{k} {means[k]:.3f}" for k in high_bad))
    if means["truncated"] is not None and means["truncated"] >= means["self"] - 0.02 * width and status == "pass":
        status = "warn"
        problems.append(f"truncated outputs score like whole ones ({means['truncated']:.3f})")
    summary = "; ".join(problems) if problems else (
        f"self {means['self']:.3f} at the top; " +
        ", ".join(f"{k} {means[k]:.3f}" if means[k] is not None else f"{k} n/a"
                  for k in ("empty", "unrelated", "garbage")))
    return status, summary


async def check_extremes(pop: Population, score: Reward) -> ExtremesCheck:
    name = score.name
    sample = pop.items[: min(len(pop.items), 200)]
    if len(sample) < 2:
        return ExtremesCheck(score=name, status="skip", summary="needs at least 2 rows")
    y_trues, inputs = [it.y_true for it in sample], [it.inputs for it in sample]
    per_kind: dict[str, list[float]] = {}
    for kind, preds in bad_outputs(sample, score).items():
        rows = range(len(sample)) if kind == "self" else changed_rows(score, y_trues, preds)
        values = await raw_values(score, [y_trues[i] for i in rows], [preds[i] for i in rows],
                                  [inputs[i] for i in rows]) if rows else []
        per_kind[kind] = [v for v in values if v is not None and math.isfinite(v)]
    means = {kind: float(np.mean(vals)) if vals else None for kind, vals in per_kind.items()}
    lo, hi, known = pop.span(score, [v for vals in per_kind.values() for v in vals] + pop.finite(name))
    ev = ExtremesEvidence(means=means, rows={kind: len(vals) for kind, vals in per_kind.items()},
                          range=[lo, hi], range_known=known)
    if pop.has_outputs:
        ev.best_and_worst = best_and_worst(pop, name)
    if means["self"] is None:
        return ExtremesCheck(score=name, status="skip", summary="no values for y_true against itself", evidence=ev)
    if all(means[k] is None for k in ("empty", "unrelated", "garbage")):
        return ExtremesCheck(score=name, status="skip", evidence=ev,
                             summary="no bad output differs from its reference where the reward looks")
    status, summary = judge_extremes(ev, per_kind)
    return ExtremesCheck(score=name, status=status, summary=summary, evidence=ev)


# --- 3. balance ----------------------------------------------------------------------------------

def label_counts(pop: Population, problems: list[str]) -> dict[str, dict[str, int]]:
    """How often each enum/boolean output takes each value in the references."""
    labels: dict[str, dict[str, int]] = {}
    for name, field_spec in pop.spec.outputs.items():
        if field_spec.type not in ("enum", "boolean"):
            continue
        counts: dict[str, int] = {}
        for row in pop.data_rows:
            if row.y_true and name in row.y_true:
                key = json.dumps(row.y_true[name]) if field_spec.type == "boolean" else str(row.y_true[name])
                counts[key] = counts.get(key, 0) + 1
        if field_spec.type == "enum":
            for value in field_spec.values or []:
                counts.setdefault(value, 0)
        labels[name] = counts
        total = sum(counts.values())
        if total:
            top = max(counts, key=counts.get)
            if counts[top] / total > 0.8:
                problems.append(f"'{name}' is {counts[top] / total:.0%} '{top}'")
            missing = [k for k, c in counts.items() if c == 0]
            if missing:
                problems.append(f"'{name}' never takes {', '.join(missing)}")
    return labels


def reference_length(rows: list[Row]) -> ReferenceLength:
    lengths = np.asarray([text_length(r.y_true) for r in rows])
    return ReferenceLength(mean=float(lengths.mean()), min=int(lengths.min()), p50=float(np.percentile(lengths, 50)),
                           p95=float(np.percentile(lengths, 95)), max=int(lengths.max()))


def find_duplicates(rows: list[Row], ev: BalanceEvidence) -> None:
    """Rows whose inputs repeat an earlier row's, and how many of them have another reference."""
    seen: dict[str, Any] = {}
    duplicates = conflicting = 0
    examples = []
    for row in rows:
        key = json.dumps(row.inputs, sort_keys=True, ensure_ascii=False)
        if key in seen:
            duplicates += 1
            if seen[key] != row.y_true:
                conflicting += 1
            if len(examples) < 3:
                examples.append(DuplicateExample(line=row.line, inputs=short(row.inputs)))
        else:
            seen[key] = row.y_true
    ev.duplicates, ev.conflicting_duplicates, ev.duplicate_examples = duplicates, conflicting, examples


def check_balance(pop: Population) -> BalanceCheck:
    rows = pop.data_rows
    if not rows:
        return BalanceCheck(status="skip", summary="no dataset rows")
    problems: list[str] = []
    ev = BalanceEvidence(rows=len(rows))
    ev.labels = label_counts(pop, problems)
    ev.reference_length = reference_length(rows)
    find_duplicates(rows, ev)
    if ev.duplicates:
        problems.append(f"{ev.duplicates} duplicate inputs ({ev.conflicting_duplicates} with different references)")
    if problems:
        return BalanceCheck(status="warn", summary="; ".join(problems), evidence=ev)
    return BalanceCheck(status="pass", evidence=ev, summary=f"{len(rows)} rows, no duplicates, reference length "
                        f"median {ev.reference_length.p50:.0f} chars")


# --- 4. normalization ----------------------------------------------------------------------------

def recommend(score: Reward, finite: list[float]) -> Recommendation:
    """z-score for a score without a promised range, min-max for one that uses a narrow part of
    its range, nothing otherwise."""
    a = np.asarray(finite)
    std = float(a.std(ddof=1))
    known = score.value_range()
    if std == 0:
        rec = Recommendation(method="none", reason="constant: nothing to rescale")
    elif known is None:
        rec = Recommendation(method="zscore", mean=float(a.mean()), std=std,
                             reason="no promised range: z-score puts it on a common scale")
    elif std < 0.1 * (known[1] - known[0]) and a.max() > a.min():
        rec = Recommendation(method="minmax", min=float(a.min()), max=float(a.max()),
                             reason=f"uses a narrow part of {list(known)} (std {std:.3f})")
    else:
        rec = Recommendation(method="none", reason=f"already spread over {list(known)} (std {std:.3f})")
    rec.scale, rec.spread = [float(a.min()), float(a.max())], std
    return rec


def check_normalization(pop: Population) -> NormalizationCheck:
    if not pop.has_outputs:
        return NormalizationCheck(status="skip", summary="no outputs to fit on: pass --predictions or --generate")
    recommended: dict[str, Recommendation] = {}
    spreads: dict[str, float] = {}
    for score in pop.scores:
        finite = pop.finite(score.name)
        if len(finite) < 2:
            continue
        recommended[score.name] = rec = recommend(score, finite)
        if score.name in pop.reward_names:
            spreads[score.name] = rec.spread
    status: Status = "pass"
    summary = "rewards are on comparable scales"
    positive = {k: v for k, v in spreads.items() if v > 0}
    if len(positive) >= 2 and max(positive.values()) / min(positive.values()) > 3:
        status = "warn"
        summary = ("rewards combined in the total are on different scales (std " +
                   ", ".join(f"{k} {v:.3f}" for k, v in positive.items()) +
                   "): the widest dominates; normalize them (recommended below, --write-spec stores it)")
    return NormalizationCheck(status=status, summary=summary, evidence=NormalizationEvidence(recommended=recommended))


# --- 5. agreement --------------------------------------------------------------------------------

def finite_rows(pop: Population, a: str, b: str) -> list[int]:
    """The rows where both scores have a finite value."""
    return [i for i, (x, y) in enumerate(zip(pop.values[a], pop.values[b], strict=True))
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]


def correlations(pop: Population, names: list[str], ev: AgreementEvidence) -> tuple[float, str, str] | None:
    """Fill in both correlation matrices; return the least agreeing pair (Spearman), if any."""
    ev.spearman = {a: {} for a in names}
    ev.kendall = {a: {} for a in names}
    worst: tuple[float, str, str] | None = None
    for i, a in enumerate(names):
        for b in names[i:]:
            idx = finite_rows(pop, a, b)
            xs, ys = [pop.values[a][k] for k in idx], [pop.values[b][k] for k in idx]
            rho = 1.0 if a == b else spearman(xs, ys)
            tau = 1.0 if a == b else kendall(xs, ys)
            ev.spearman[a][b] = ev.spearman[b][a] = rho
            ev.kendall[a][b] = ev.kendall[b][a] = tau
            if a != b and rho is not None and (worst is None or rho < worst[0]):
                worst = (rho, a, b)
    return worst


def disagreements(pop: Population, a: str, b: str) -> list[dict[str, str | float | None]]:
    """The three rows the two scores rank furthest apart."""
    from scipy.stats import rankdata  # scipy takes a second to import: only when a check runs

    idx = finite_rows(pop, a, b)
    ra = rankdata([pop.values[a][i] for i in idx]) / len(idx)
    rb = rankdata([pop.values[b][i] for i in idx]) / len(idx)
    gaps = sorted(range(len(idx)), key=lambda k: -abs(ra[k] - rb[k]))[:3]
    return [{"inputs": short(pop.items[idx[k]].inputs), "y_pred": short(pop.items[idx[k]].y_pred),
             a: pop.values[a][idx[k]], b: pop.values[b][idx[k]]} for k in gaps]


def check_agreement(pop: Population) -> AgreementCheck:
    if not pop.has_outputs:
        return AgreementCheck(status="skip", summary=NO_OUTPUTS)
    names = [s.name for s in pop.scores if len(set(pop.finite(s.name))) > 1]
    if len(names) < 2:
        return AgreementCheck(status="skip", summary="needs two scores that vary")
    ev = AgreementEvidence(scores=names)
    worst = correlations(pop, names, ev)
    if worst is None:
        return AgreementCheck(status="skip", summary="not enough varying rows", evidence=ev)
    rho, a, b = worst
    ev.most_disagreeing_pair = [a, b]
    ev.disagreements = disagreements(pop, a, b)
    if rho <= -0.3:
        return AgreementCheck(status="fail", summary=f"'{a}' and '{b}' disagree (Spearman {rho:.2f})", evidence=ev)
    if rho < 0.2:
        return AgreementCheck(status="warn", summary=f"'{a}' and '{b}' barely agree (Spearman {rho:.2f})",
                              evidence=ev)
    return AgreementCheck(status="pass", summary=f"lowest Spearman {rho:.2f} ('{a}' vs '{b}')", evidence=ev)


# --- 6. length bias ------------------------------------------------------------------------------

def check_length_bias(pop: Population, score: Reward) -> LengthBiasCheck:
    name = score.name
    if not pop.has_outputs:
        return LengthBiasCheck(score=name, status="skip", summary=NO_OUTPUTS)
    pairs = [(v, text_length(it.y_pred)) for v, it in zip(pop.values[name], pop.items, strict=True)
             if v is not None and math.isfinite(v) and it.y_pred is not None]
    rho = spearman([p[0] for p in pairs], [float(p[1]) for p in pairs])
    ev = LengthBiasEvidence(spearman_with_length=rho, rows=len(pairs))
    status: Status
    if rho is None:
        status, summary = "skip", "score or output length does not vary"
    elif score.measures_length:
        status, summary = "pass", f"a length reward: correlation {rho:.2f} by design"
    elif rho >= 0.5:
        status, summary = "fail", f"pays for length: Spearman {rho:.2f} with output length"
    elif rho >= 0.3:
        status, summary = "warn", f"leans toward longer outputs: Spearman {rho:.2f}"
    else:
        # Only a reward that longer outputs win can be gamed by writing more.
        note = " (shorter outputs score higher)" if rho <= -0.3 else ""
        status, summary = "pass", f"Spearman {rho:.2f} with output length{note}"
    return LengthBiasCheck(score=name, status=status, summary=summary, evidence=ev)


# --- 7. hacking probes ---------------------------------------------------------------------------

async def probe_result(score: Reward, kind: str, sample: list[Item], bases: list[Any],
                       base_values: list[float | None], width: float) -> tuple[ProbeResult, bool] | None:
    """How the edit ``kind`` moves the score, and whether it raises it (flagged); None when no
    row has a value before and after."""
    y_trues, inputs = [it.y_true for it in sample], [it.inputs for it in sample]
    perturbed = [probe(kind, b, i) for b, i in zip(bases, inputs, strict=True)]
    values = await raw_values(score, y_trues, perturbed, inputs)
    gains = [(p - b, k) for k, (b, p) in enumerate(zip(base_values, values, strict=True))
             if b is not None and p is not None and math.isfinite(b) and math.isfinite(p)]
    if not gains:
        return None
    result = ProbeResult(mean_gain=float(np.mean([g for g, _ in gains])),
                         share_raised=sum(1 for g, _ in gains if g > 1e-9) / len(gains))
    flagged = result.mean_gain > 0.02 * width and result.share_raised >= 0.2
    if flagged:
        top = sorted(gains, key=lambda g: -g[0])[:2]
        result.examples = [ProbeExample(before=short(bases[k]), after=short(perturbed[k]),
                                        value_before=base_values[k], value_after=values[k]) for _, k in top]
    return result, flagged


async def check_probes(pop: Population, score: Reward) -> HackingCheck:
    name = score.name
    base_items = [it for it in pop.items if (it.y_pred if pop.has_outputs else it.y_true) is not None]
    sample = base_items[: pop.options.probe_rows]
    if not sample:
        return HackingCheck(score=name, status="skip", summary="no outputs to perturb")
    bases = [it.y_pred if pop.has_outputs else it.y_true for it in sample]
    base_values = await raw_values(score, [it.y_true for it in sample], bases, [it.inputs for it in sample])
    finite_base = [v for v in base_values if v is not None and math.isfinite(v)]
    lo, hi, _ = pop.span(score, finite_base + pop.finite(name))
    results: dict[str, ProbeResult] = {}
    flagged = []
    for kind in PROBES:
        found = await probe_result(score, kind, sample, bases, base_values, hi - lo)
        if found is None:
            continue
        results[kind], raised = found
        if raised:
            flagged.append(f"{kind} +{results[kind].mean_gain:.3f} ({results[kind].share_raised:.0%} of rows)")
    ev = HackingEvidence(probes=results)
    if flagged:
        return HackingCheck(score=name, status="fail", evidence=ev,
                            summary="rises under meaningless edits: " + ", ".join(flagged))
    return HackingCheck(score=name, status="pass", evidence=ev,
                        summary=f"no probe raises it ({len(sample)} rows, {len(results)} probes)")


# --- 8. preference pairs -------------------------------------------------------------------------

@dataclass
class PreferencePair:
    prompt: dict[str, Any]
    chosen: dict[str, Any]
    rejected: dict[str, Any]
    reference: dict[str, Any] | None


def pairwise_accuracy(rows: list[tuple[float, float, bool]]) -> float | None:
    if not rows:
        return None
    return float(np.mean([1.0 if c > r else 0.5 if c == r else 0.0 for c, r, _ in rows]))


def pairs_evidence(rows: list[tuple[float, float, bool]]) -> PairsEvidence:
    longer = [x for x in rows if x[2]]
    not_longer = [x for x in rows if not x[2]]
    return PairsEvidence(pairs=len(rows), accuracy=pairwise_accuracy(rows),
                         margin=float(np.mean([c - r for c, r, _ in rows])),
                         chosen_longer=PairsSubset(pairs=len(longer), accuracy=pairwise_accuracy(longer)),
                         chosen_not_longer=PairsSubset(pairs=len(not_longer), accuracy=pairwise_accuracy(not_longer)))


async def check_pair_score(pop: Population, score: Reward, pairs: list[PreferencePair]) -> PairsCheck:
    needs = score.fields_read(pop.spec.outputs)
    unreferenced = any(p.reference is None or not all(f in p.reference for f in needs) for p in pairs)
    if unreferenced and score.needs_reference():
        return PairsCheck(score=score.name, status="skip",
                          summary="compares against a reference, and the pairs have none")
    refs = [p.reference or {} for p in pairs]
    inputs = [p.prompt for p in pairs]
    chosen = await raw_values(score, refs, [p.chosen for p in pairs], inputs)
    rejected = await raw_values(score, refs, [p.rejected for p in pairs], inputs)
    rows = [(c, r, text_length(p.chosen) > text_length(p.rejected))
            for c, r, p in zip(chosen, rejected, pairs, strict=True) if c is not None and r is not None]
    if not rows:
        return PairsCheck(score=score.name, status="skip", summary="no scored pairs")
    ev = pairs_evidence(rows)
    status: Status = "fail" if ev.accuracy < 0.5 else "warn" if ev.accuracy < 0.7 else "pass"
    return PairsCheck(score=score.name, status=status, evidence=ev,
                      summary=f"pairwise accuracy {ev.accuracy:.2f} on {len(rows)} pairs, margin {ev.margin:+.3f}")


async def check_pairs(pop: Population, pairs: list[PreferencePair]) -> list[PairsCheck]:
    if not pairs:
        return [PairsCheck(status="skip", summary="the pairs file is empty")]
    return [await check_pair_score(pop, score, pairs) for score in pop.scores]
