"""`rewardctl inspect-rewards`: check rewards before trusting them.

The spec's rewards and per-example metrics are run on a population of outputs (saved predictions,
the program's own outputs with `--generate`, or the references alone) and on perturbations of
them, and each check reports pass, warn, fail (or skip, with the reason) with its evidence:

1. distribution: statistics, histogram, NaN/infinite and out-of-range values, constant rewards, ties;
2. extremes: y_true against itself at the top; empty, truncated, unrelated and garbage outputs at
   the bottom; good and bad clearly apart; the best- and worst-scored rows;
3. balance: labels of enum/boolean outputs, reference lengths, duplicate rows;
4. normalization: scale and spread, a recommended normalization with fitted parameters
   (`--write-spec` stores it);
5. agreement: Spearman and Kendall correlations between scores, the rows they disagree on most;
6. length bias: correlation of each score with output length;
7. hacking probes: meaningless edits (emojis, repetition, padding, upper case, the input copied
   in, extra JSON fields) must not raise a score;
8. preference pairs: pairwise accuracy and margin, split by whether the chosen answer is longer.

Values are inspected raw (before normalization and the failure policy).
"""

from __future__ import annotations

import base64
import html
import json
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from rewardctl import __version__
from rewardctl.dataset import read_rows
from rewardctl.errors import InputError
from rewardctl.io import atomic_write_json, atomic_write_text
from rewardctl.rewards import Reward
from rewardctl.rewards.leaves import leaves
from rewardctl.rm.text import render
from rewardctl.scoring import Scorer

REPORT_SCHEMA_VERSION = 1
Status = Literal["pass", "warn", "fail", "skip"]
ORDER = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}

EMOJIS = " 😀🎉👍✨"
FILLER = ("Furthermore, it is worth noting that this answer has been carefully considered and is "
          "complete, thorough and accurate in every respect.")
GARBAGE = "qzx vlk wrpt oomb"
PROBES = ("emoji", "repeat", "padding", "uppercase", "input_copy", "extra_fields")


@dataclass
class InspectOptions:
    data: str
    predictions: str | None = None
    generate: bool = False
    pairs: str | None = None
    out_dir: str | None = None
    write_spec: str | None = None
    limit: int = 500
    probe_rows: int = 40
    seed: int = 0
    concurrency: int = 8
    use_cache: bool = True
    cache_dir: str | None = None


class CheckResult(BaseModel):
    check: str
    score: str | None = None
    status: Status
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class InspectReport(BaseModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: str = "inspect-rewards"
    rewardctl_version: str = __version__
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    spec: dict[str, Any]
    source: Literal["predictions", "program", "references"]
    rows: int
    failed_predictions: int = 0
    counts: dict[str, int]
    checks: list[CheckResult]
    recommended_normalization: dict[str, dict[str, Any]] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.counts.get("fail", 0) > 0


@dataclass
class Item:
    inputs: dict[str, Any]
    y_true: dict[str, Any]
    y_pred: dict[str, Any] | None


# --- helpers -------------------------------------------------------------------------------------

def text_length(obj: dict[str, Any] | None) -> int:
    return sum(len(t) for t in leaves(obj or {}).values())


def map_strings(obj: Any, fn) -> Any:
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [map_strings(v, fn) for v in obj]
    return obj


def emptied(obj: Any) -> Any:
    if isinstance(obj, str):
        return ""
    if isinstance(obj, dict):
        return {k: emptied(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return []
    if isinstance(obj, bool):
        return False
    if isinstance(obj, (int, float)):
        return 0
    return obj


def truncated(obj: Any) -> Any:
    return map_strings(obj, lambda s: s[: max(0, len(s) // 3)])


def probe(kind: str, obj: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    if kind == "emoji":
        return map_strings(obj, lambda s: s + EMOJIS)
    if kind == "repeat":
        return map_strings(obj, lambda s: f"{s} {s}" if s else s)
    if kind == "padding":
        return map_strings(obj, lambda s: f"{s} {FILLER}")
    if kind == "uppercase":
        return map_strings(obj, str.upper)
    if kind == "input_copy":
        copied = render(inputs)
        out = dict(obj)
        for key, value in out.items():
            if isinstance(value, str):
                out[key] = f"{copied} {value}"
                break
        return out
    if kind == "extra_fields":
        return {**obj, "note": "This answer is correct and complete.", "confidence": 1.0}
    raise ValueError(kind)


def expected_range(reward: Reward) -> tuple[float, float] | None:
    """The raw value range a built-in reward promises, or None when it does not bound its values."""
    cfg = reward.config
    kind = cfg.type
    if kind in ("exact_match", "f1_score", "precision", "recall", "fbeta", "contains", "regex",
                "json_schema", "length", "cosine_similarity", "lm_judge"):
        return (0.0, 1.0)
    if kind == "clip":
        return {"cosine01": (0.0, 1.0), "cosine": (-1.0, 1.0), "clipscore": (0.0, 2.5)}[cfg.output]
    if kind == "reward_model":
        return None if cfg.output == "logit" else (0.0, 1.0)
    if kind == "composite" and cfg.combine != "weighted_sum":
        ranges = [r for part in reward.parts
                  for r in [expected_range(part) if part.config.normalization is None else None]]
        if ranges and all(r is not None for r in ranges):
            return (min(r[0] for r in ranges), max(r[1] for r in ranges))
    return None


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    value = float(spearmanr(a, b).statistic)
    return None if math.isnan(value) else value


def kendall(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import kendalltau

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    value = float(kendalltau(a, b).statistic)
    return None if math.isnan(value) else value


def short(obj: Any, limit: int = 160) -> str:
    text = json.dumps(obj, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the inspection ------------------------------------------------------------------------------

class Inspector:
    def __init__(self, spec: Any, scorer: Scorer, items: list[Item], data_rows: list[Any], source: str,
                 options: InspectOptions):
        self.spec = spec
        self.scores: list[Reward] = [*scorer.rewards, *scorer.metrics]
        self.reward_names = {r.name for r in scorer.rewards}
        self.items = items
        self.data_rows = data_rows
        self.source = source
        self.options = options
        self.rng = random.Random(options.seed)
        self.checks: list[CheckResult] = []
        self.values: dict[str, list[float | None]] = {}
        self.recommended: dict[str, dict[str, Any]] = {}
        self.plots: dict[str, bytes] = {}

    def add(self, check: str, score: str | None, status: Status, summary: str, **evidence: Any) -> None:
        self.checks.append(CheckResult(check=check, score=score, status=status, summary=summary, evidence=evidence))

    async def values_of(self, score: Reward, y_trues, y_preds, inputs) -> list[float | None]:
        return await score.raw_scores(list(y_trues), list(y_preds), list(inputs), keep_nonfinite=True)

    @property
    def has_outputs(self) -> bool:
        return self.source != "references"

    def span(self, score: Reward, observed: list[float]) -> tuple[float, float, bool]:
        known = expected_range(score)
        if known is not None:
            return known[0], known[1], True
        finite = [v for v in observed if math.isfinite(v)]
        if not finite:
            return 0.0, 1.0, False
        lo, hi = min(finite), max(finite)
        return lo, (hi if hi > lo else lo + 1.0), False

    async def run(self) -> None:
        outputs = [it.y_pred for it in self.items]
        for score in self.scores:
            self.values[score.name] = await self.values_of(score, [it.y_true for it in self.items], outputs,
                                                           [it.inputs for it in self.items])
        for score in self.scores:
            self.check_distribution(score)
        for score in self.scores:
            await self.check_extremes(score)
        self.check_balance()
        self.check_normalization()
        self.check_agreement()
        for score in self.scores:
            self.check_length_bias(score)
        for score in self.scores:
            await self.check_probes(score)
        if self.options.pairs:
            await self.check_pairs()

    # 1. distribution
    def check_distribution(self, score: Reward) -> None:
        name = score.name
        if not self.has_outputs:
            self.add("distribution", name, "skip", "no outputs to score: pass --predictions or --generate")
            return
        raw = [v for v in self.values[name] if v is not None]
        nonfinite = [v for v in raw if not math.isfinite(v)]
        finite = [v for v in raw if math.isfinite(v)]
        stats: dict[str, Any] = {"count": len(raw), "failed_predictions": len(self.values[name]) - len(raw),
                                 "nan": sum(1 for v in nonfinite if math.isnan(v)),
                                 "infinite": sum(1 for v in nonfinite if math.isinf(v))}
        if finite:
            a = np.asarray(finite)
            counts, edges = np.histogram(a, bins=10)
            values, freq = np.unique(a, return_counts=True)
            stats.update(mean=float(a.mean()), std=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                         min=float(a.min()), max=float(a.max()),
                         percentiles={f"p{p}": float(np.percentile(a, p)) for p in (5, 25, 50, 75, 95)},
                         histogram={"counts": counts.tolist(), "edges": [float(e) for e in edges]},
                         distinct=len(values), mode_share=float(freq.max() / len(a)),
                         tie_share=float(1 - (freq == 1).sum() / len(a)))
        known = expected_range(score)
        if known is not None and finite:
            stats["expected_range"] = list(known)
            stats["out_of_range"] = sum(1 for v in finite if v < known[0] - 1e-9 or v > known[1] + 1e-9)
        if nonfinite:
            self.add("distribution", name, "fail", f"{len(nonfinite)} NaN or infinite values", **stats)
        elif stats.get("out_of_range"):
            self.add("distribution", name, "fail",
                     f"{stats['out_of_range']} values outside its range {list(known)}", **stats)
        elif len(finite) >= 2 and stats["distinct"] == 1:
            self.add("distribution", name, "fail",
                     f"constant: every output scores {finite[0]:g}, so it cannot rank outputs", **stats)
        elif len(finite) >= 10 and stats["mode_share"] >= 0.95:
            self.add("distribution", name, "warn",
                     f"nearly constant: {stats['mode_share']:.0%} of outputs score the same", **stats)
        elif not finite:
            self.add("distribution", name, "skip", "no scored outputs", **stats)
        else:
            self.add("distribution", name, "pass",
                     f"mean {stats['mean']:.3f}, std {stats['std']:.3f}, {stats['distinct']} distinct values", **stats)

    # 2. extremes
    async def check_extremes(self, score: Reward) -> None:
        name = score.name
        sample = self.items[: min(len(self.items), 200)]
        if len(sample) < 2:
            self.add("extremes", name, "skip", "needs at least 2 rows")
            return
        y_trues = [it.y_true for it in sample]
        inputs = [it.inputs for it in sample]
        unrelated = []
        for i, it in enumerate(sample):
            other = next((sample[(i + k) % len(sample)].y_true for k in range(1, len(sample))
                          if sample[(i + k) % len(sample)].y_true != it.y_true), sample[(i + 1) % len(sample)].y_true)
            unrelated.append(other)
        kinds = {
            "self": y_trues,
            "empty": [emptied(t) for t in y_trues],
            "truncated": [truncated(t) for t in y_trues],
            "unrelated": unrelated,
            "garbage": [map_strings(t, lambda s: GARBAGE) for t in y_trues],
        }
        means: dict[str, float | None] = {}
        per_kind: dict[str, list[float]] = {}
        for kind, preds in kinds.items():
            vals = [v for v in await self.values_of(score, y_trues, preds, inputs) if v is not None and math.isfinite(v)]
            per_kind[kind] = vals
            means[kind] = float(np.mean(vals)) if vals else None
        observed = [v for vals in per_kind.values() for v in vals] + \
                   [v for v in self.values[name] if v is not None and math.isfinite(v)]
        lo, hi, known = self.span(score, observed)
        width = hi - lo
        evidence: dict[str, Any] = {"means": means, "range": [lo, hi], "range_known": known}
        if self.has_outputs:
            scored = sorted([(v, i) for i, v in enumerate(self.values[name]) if v is not None and math.isfinite(v)])
            show = [*scored[-2:][::-1], *scored[:2]]
            evidence["best_and_worst"] = [
                {"value": v, "inputs": short(self.items[i].inputs), "y_pred": short(self.items[i].y_pred),
                 "y_true": short(self.items[i].y_true)} for v, i in show]
        if means["self"] is None:
            self.add("extremes", name, "skip", "no values for y_true against itself", **evidence)
            return
        bad_kinds = [k for k in ("empty", "unrelated", "garbage") if means[k] is not None]
        worst_bad = max((means[k] for k in bad_kinds), default=lo)
        separation = (means["self"] - worst_bad) / width
        evidence["separation"] = separation
        at_top = sum(1 for v in per_kind["self"] if v >= hi - 0.05 * width) / len(per_kind["self"])
        evidence["self_at_top"] = at_top
        problems = []
        status: Status = "pass"
        if separation < 0.1:
            status = "fail"
            problems.append(f"y_true and garbage score alike (self {means['self']:.3f}, worst bad "
                            f"{worst_bad:.3f})")
        if known and at_top < 0.95:
            status = "fail"
            problems.append(f"y_true against itself is at the top of {[lo, hi]} for only {at_top:.0%} of rows")
        high_bad = [k for k in bad_kinds if means[k] > lo + 0.5 * width]
        if high_bad and status == "pass":
            status = "warn"
            problems.append("bad outputs score in the upper half: " + ", ".join(f"{k} {means[k]:.3f}" for k in high_bad))
        if means["truncated"] is not None and means["truncated"] >= means["self"] - 0.02 * width and status == "pass":
            status = "warn"
            problems.append(f"truncated outputs score like whole ones ({means['truncated']:.3f})")
        summary = "; ".join(problems) if problems else (
            f"self {means['self']:.3f} at the top; empty {means['empty']:.3f}, unrelated {means['unrelated']:.3f}, "
            f"garbage {means['garbage']:.3f}")
        self.add("extremes", name, status, summary, **evidence)

    # 3. balance
    def check_balance(self) -> None:
        rows = self.data_rows
        if not rows:
            self.add("balance", None, "skip", "no dataset rows")
            return
        evidence: dict[str, Any] = {"rows": len(rows)}
        problems: list[str] = []
        labels: dict[str, dict[str, int]] = {}
        for name, spec in self.spec.outputs.items():
            if spec.type in ("enum", "boolean"):
                counts: dict[str, int] = {}
                for row in rows:
                    if row.y_true and name in row.y_true:
                        key = json.dumps(row.y_true[name]) if spec.type == "boolean" else str(row.y_true[name])
                        counts[key] = counts.get(key, 0) + 1
                if spec.type == "enum":
                    for value in spec.values or []:
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
        evidence["labels"] = labels
        lengths = np.asarray([text_length(r.y_true) for r in rows])
        evidence["reference_length"] = {"mean": float(lengths.mean()), "min": int(lengths.min()),
                                        "p50": float(np.percentile(lengths, 50)),
                                        "p95": float(np.percentile(lengths, 95)), "max": int(lengths.max())}
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
                    examples.append({"line": row.line, "inputs": short(row.inputs)})
            else:
                seen[key] = row.y_true
        evidence.update(duplicates=duplicates, conflicting_duplicates=conflicting, duplicate_examples=examples)
        if duplicates:
            problems.append(f"{duplicates} duplicate inputs ({conflicting} with different references)")
        status: Status = "warn" if problems else "pass"
        self.add("balance", None, status, "; ".join(problems) if problems else
                 f"{len(rows)} rows, no duplicates, reference length median {evidence['reference_length']['p50']:.0f} chars",
                 **evidence)

    # 4. normalization
    def check_normalization(self) -> None:
        if not self.has_outputs:
            self.add("normalization", None, "skip", "no outputs to fit on: pass --predictions or --generate")
            return
        spreads: dict[str, float] = {}
        for score in self.scores:
            finite = [v for v in self.values[score.name] if v is not None and math.isfinite(v)]
            if len(finite) < 2:
                continue
            a = np.asarray(finite)
            std = float(a.std(ddof=1))
            known = expected_range(score)
            if std == 0:
                rec = {"method": "none", "reason": "constant: nothing to rescale"}
            elif known is None:
                rec = {"method": "zscore", "mean": float(a.mean()), "std": std,
                       "reason": "no promised range: z-score puts it on a common scale"}
            elif std < 0.1 * (known[1] - known[0]) and a.max() > a.min():
                rec = {"method": "minmax", "min": float(a.min()), "max": float(a.max()),
                       "reason": f"uses a narrow part of {list(known)} (std {std:.3f})"}
            else:
                rec = {"method": "none", "reason": f"already spread over {list(known)} (std {std:.3f})"}
            rec.update(scale=[float(a.min()), float(a.max())], spread=std)
            self.recommended[score.name] = rec
            if score.name in self.reward_names:
                spreads[score.name] = std
        status: Status = "pass"
        summary = "rewards are on comparable scales"
        positive = {k: v for k, v in spreads.items() if v > 0}
        if len(positive) >= 2 and max(positive.values()) / min(positive.values()) > 3:
            status = "warn"
            summary = ("rewards combined in the total are on different scales (std " +
                       ", ".join(f"{k} {v:.3f}" for k, v in positive.items()) +
                       "): the widest dominates; normalize them (recommended below, --write-spec stores it)")
        self.add("normalization", None, status, summary, recommended=self.recommended)

    # 5. agreement
    def check_agreement(self) -> None:
        if not self.has_outputs:
            self.add("agreement", None, "skip", "no outputs: pass --predictions or --generate")
            return
        names = [s.name for s in self.scores
                 if len({v for v in self.values[s.name] if v is not None and math.isfinite(v)}) > 1]
        if len(names) < 2:
            self.add("agreement", None, "skip", "needs two scores that vary")
            return
        spearman_m: dict[str, dict[str, float | None]] = {a: {} for a in names}
        kendall_m: dict[str, dict[str, float | None]] = {a: {} for a in names}
        worst: tuple[float, str, str] | None = None
        for i, a in enumerate(names):
            for b in names[i:]:
                rows = [(x, y) for x, y in zip(self.values[a], self.values[b], strict=True)
                        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
                xs, ys = [r[0] for r in rows], [r[1] for r in rows]
                rho = 1.0 if a == b else spearman(xs, ys)
                tau = 1.0 if a == b else kendall(xs, ys)
                spearman_m[a][b] = spearman_m[b][a] = rho
                kendall_m[a][b] = kendall_m[b][a] = tau
                if a != b and rho is not None and (worst is None or rho < worst[0]):
                    worst = (rho, a, b)
        evidence: dict[str, Any] = {"scores": names, "spearman": spearman_m, "kendall": kendall_m}
        if worst is None:
            self.add("agreement", None, "skip", "not enough varying rows", **evidence)
            return
        rho, a, b = worst
        from scipy.stats import rankdata

        idx = [i for i, (x, y) in enumerate(zip(self.values[a], self.values[b], strict=True))
               if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
        ra = rankdata([self.values[a][i] for i in idx]) / len(idx)
        rb = rankdata([self.values[b][i] for i in idx]) / len(idx)
        gaps = sorted(range(len(idx)), key=lambda k: -abs(ra[k] - rb[k]))[:3]
        evidence["most_disagreeing_pair"] = [a, b]
        evidence["disagreements"] = [{"inputs": short(self.items[idx[k]].inputs), "y_pred": short(self.items[idx[k]].y_pred),
                                      a: self.values[a][idx[k]], b: self.values[b][idx[k]]} for k in gaps]
        if rho <= -0.3:
            self.add("agreement", None, "fail", f"'{a}' and '{b}' disagree (Spearman {rho:.2f})", **evidence)
        elif rho < 0.2:
            self.add("agreement", None, "warn", f"'{a}' and '{b}' barely agree (Spearman {rho:.2f})", **evidence)
        else:
            self.add("agreement", None, "pass", f"lowest Spearman {rho:.2f} ('{a}' vs '{b}')", **evidence)

    # 6. length bias
    def check_length_bias(self, score: Reward) -> None:
        name = score.name
        if not self.has_outputs:
            self.add("length_bias", name, "skip", "no outputs: pass --predictions or --generate")
            return
        pairs = [(v, text_length(it.y_pred)) for v, it in zip(self.values[name], self.items, strict=True)
                 if v is not None and math.isfinite(v) and it.y_pred is not None]
        rho = spearman([p[0] for p in pairs], [float(p[1]) for p in pairs])
        evidence = {"spearman_with_length": rho, "rows": len(pairs)}
        if rho is None:
            self.add("length_bias", name, "skip", "score or output length does not vary", **evidence)
        elif score.config.type == "length":
            self.add("length_bias", name, "pass", f"a length reward: correlation {rho:.2f} by design", **evidence)
        elif rho >= 0.5:
            self.add("length_bias", name, "fail", f"pays for length: Spearman {rho:.2f} with output length", **evidence)
        elif rho >= 0.3:
            self.add("length_bias", name, "warn", f"leans toward longer outputs: Spearman {rho:.2f}", **evidence)
        else:
            # Only a reward that longer outputs win can be gamed by writing more.
            note = " (shorter outputs score higher)" if rho <= -0.3 else ""
            self.add("length_bias", name, "pass", f"Spearman {rho:.2f} with output length{note}", **evidence)

    # 7. hacking probes
    async def check_probes(self, score: Reward) -> None:
        name = score.name
        base_items = [it for it in self.items if (it.y_pred if self.has_outputs else it.y_true) is not None]
        sample = base_items[: self.options.probe_rows]
        if not sample:
            self.add("hacking", name, "skip", "no outputs to perturb")
            return
        bases = [it.y_pred if self.has_outputs else it.y_true for it in sample]
        y_trues = [it.y_true for it in sample]
        inputs = [it.inputs for it in sample]
        base_values = await self.values_of(score, y_trues, bases, inputs)
        finite_base = [v for v in base_values if v is not None and math.isfinite(v)]
        lo, hi, _ = self.span(score, finite_base + [v for v in self.values[name] if v is not None and math.isfinite(v)])
        width = hi - lo
        results: dict[str, Any] = {}
        flagged = []
        for kind in PROBES:
            perturbed = [probe(kind, b, i) for b, i in zip(bases, inputs, strict=True)]
            values = await self.values_of(score, y_trues, perturbed, inputs)
            gains = [(p - b, k) for k, (b, p) in enumerate(zip(base_values, values, strict=True))
                     if b is not None and p is not None and math.isfinite(b) and math.isfinite(p)]
            if not gains:
                continue
            mean_gain = float(np.mean([g for g, _ in gains]))
            raised = sum(1 for g, _ in gains if g > 1e-9) / len(gains)
            entry: dict[str, Any] = {"mean_gain": mean_gain, "share_raised": raised}
            if mean_gain > 0.02 * width and raised >= 0.2:
                top = sorted(gains, key=lambda g: -g[0])[:2]
                entry["examples"] = [{"before": short(bases[k]), "after": short(perturbed[k]),
                                      "value_before": base_values[k], "value_after": values[k]} for _, k in top]
                flagged.append(f"{kind} +{mean_gain:.3f} ({raised:.0%} of rows)")
            results[kind] = entry
        if flagged:
            self.add("hacking", name, "fail", "rises under meaningless edits: " + ", ".join(flagged), probes=results)
        else:
            self.add("hacking", name, "pass", f"no probe raises it ({len(sample)} rows, {len(results)} probes)",
                     probes=results)

    # 8. preference pairs
    async def check_pairs(self) -> None:
        from rewardctl.dataset import iter_json_objects

        label = self.options.pairs
        in_name, out_name = next(iter(self.spec.inputs)), next(iter(self.spec.outputs))
        pairs = []
        for line_no, obj in iter_json_objects(label):
            for key in ("prompt", "chosen", "rejected"):
                if key not in obj:
                    raise InputError(f"missing '{key}'", path=label, line=line_no, field=key)

            def as_obj(value: Any, name: str) -> dict[str, Any]:
                return value if isinstance(value, dict) else {name: value}

            pairs.append((as_obj(obj["prompt"], in_name), as_obj(obj["chosen"], out_name),
                          as_obj(obj["rejected"], out_name), as_obj(obj["reference"], out_name)
                          if "reference" in obj else None))
        if not pairs:
            self.add("pairs", None, "skip", "the pairs file is empty")
            return
        for score in self.scores:
            needs = score.fields_read(self.spec.outputs)
            if any(p[3] is None or not all(f in p[3] for f in needs) for p in pairs) and score.config.type not in (
                    "reward_model", "length", "regex", "lm_judge", "clip") and not (
                    score.config.type == "contains" and score.config.value is not None):
                self.add("pairs", score.name, "skip", "compares against a reference, and the pairs have none")
                continue
            refs = [p[3] or {} for p in pairs]
            inputs = [p[0] for p in pairs]
            chosen = await self.values_of(score, refs, [p[1] for p in pairs], inputs)
            rejected = await self.values_of(score, refs, [p[2] for p in pairs], inputs)
            rows = [(c, r, text_length(p[1]) > text_length(p[2])) for c, r, p in zip(chosen, rejected, pairs, strict=True)
                    if c is not None and r is not None]
            if not rows:
                self.add("pairs", score.name, "skip", "no scored pairs")
                continue

            def accuracy(subset):
                return float(np.mean([1.0 if c > r else 0.5 if c == r else 0.0 for c, r, _ in subset])) if subset else None

            acc = accuracy(rows)
            evidence = {"pairs": len(rows), "accuracy": acc, "margin": float(np.mean([c - r for c, r, _ in rows])),
                        "chosen_longer": {"pairs": sum(1 for x in rows if x[2]), "accuracy": accuracy([x for x in rows if x[2]])},
                        "chosen_not_longer": {"pairs": sum(1 for x in rows if not x[2]),
                                              "accuracy": accuracy([x for x in rows if not x[2]])}}
            status: Status = "fail" if acc < 0.5 else "warn" if acc < 0.7 else "pass"
            self.add("pairs", score.name, status, f"pairwise accuracy {acc:.2f} on {len(rows)} pairs, margin "
                     f"{evidence['margin']:+.3f}", **evidence)


# --- plots and pages -----------------------------------------------------------------------------

def _png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def make_plots(inspector: Inspector) -> dict[str, bytes]:
    if not inspector.has_outputs:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.name for s in inspector.scores]
    plots: dict[str, bytes] = {}
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), dpi=100, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        finite = [v for v in inspector.values[name] if v is not None and math.isfinite(v)]
        ax.hist(finite, bins=20, color="tab:blue")
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    plots["histograms.png"] = _png(fig)

    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), dpi=100, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        pts = [(text_length(it.y_pred), v) for v, it in zip(inspector.values[name], inspector.items, strict=True)
               if v is not None and math.isfinite(v) and it.y_pred is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.6)
        ax.set_title(f"{name} vs output length", fontsize=9)
        ax.set_xlabel("characters", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    plots["reward_vs_length.png"] = _png(fig)

    agreement = next((c for c in inspector.checks if c.check == "agreement" and "spearman" in c.evidence), None)
    if agreement is not None:
        labels = agreement.evidence["scores"]
        matrix = np.array([[agreement.evidence["spearman"][a].get(b) if agreement.evidence["spearman"][a].get(b)
                            is not None else np.nan for b in labels] for a in labels], dtype=float)
        fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2.5, 1.0 * len(labels) + 2), dpi=100)
        image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if not np.isnan(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title("Spearman correlation", fontsize=9)
        fig.tight_layout()
        plots["correlation.png"] = _png(fig)
    return plots


def render_markdown(report: InspectReport) -> str:
    lines = [f"## rewardctl inspect-rewards: {report.spec['name']}", "",
             f"Source: {report.source}, {report.rows} rows. "
             + ", ".join(f"{report.counts.get(k, 0)} {k}" for k in ("fail", "warn", "pass", "skip")) + ".", "",
             "| check | score | status | finding |", "|---|---|---|---|"]
    for c in sorted(report.checks, key=lambda c: (ORDER[c.status], c.check)):
        status = f"**{c.status}**" if c.status in ("fail", "warn") else c.status
        lines.append(f"| {c.check} | {c.score or ''} | {status} | {c.summary.replace('|', '/')} |")
    if report.recommended_normalization:
        lines += ["", "### Recommended normalization", "", "| score | method | parameters | why |", "|---|---|---|---|"]
        for name, rec in report.recommended_normalization.items():
            params = ", ".join(f"{k} {rec[k]:.4g}" for k in ("min", "max", "mean", "std") if k in rec)
            lines.append(f"| {name} | {rec['method']} | {params} | {rec['reason']} |")
    return "\n".join(lines) + "\n"


def render_html(report: InspectReport, plots: dict[str, bytes]) -> str:
    colors = {"fail": "#c0392b", "warn": "#d68910", "pass": "#1e8449", "skip": "#7f8c8d"}
    rows = "".join(
        f"<tr><td>{html.escape(c.check)}</td><td>{html.escape(c.score or '')}</td>"
        f"<td style='color:{colors[c.status]};font-weight:bold'>{c.status}</td><td>{html.escape(c.summary)}"
        f"<details><summary>evidence</summary><pre>{html.escape(json.dumps(c.evidence, indent=1, ensure_ascii=False)[:6000])}</pre></details></td></tr>"
        for c in sorted(report.checks, key=lambda c: (ORDER[c.status], c.check)))
    images = "".join(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' src='data:image/png;base64,"
                     f"{base64.b64encode(data).decode()}'>" for name, data in plots.items())
    counts = ", ".join(f"{report.counts.get(k, 0)} {k}" for k in ("fail", "warn", "pass", "skip"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inspect-rewards: {html.escape(report.spec['name'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}}th{{background:#f4f4f4}}
pre{{white-space:pre-wrap;font-size:12px}}img{{max-width:100%}}</style></head><body>
<h1>inspect-rewards: {html.escape(report.spec['name'])}</h1>
<p>Source: {report.source}, {report.rows} rows, {report.created_at}. {counts}.</p>
<table><tr><th>check</th><th>score</th><th>status</th><th>finding</th></tr>{rows}</table>
{images}
</body></html>
"""


# --- entry point ---------------------------------------------------------------------------------

async def inspect_rewards(spec: Any, options: InspectOptions, *, spec_path: str | None = None) -> InspectReport:
    from rewardctl.scorefile import read_predictions

    started = time.perf_counter()
    scorer = Scorer.from_spec(spec, spec_path=spec_path, use_cache=options.use_cache, cache_dir=options.cache_dir)
    required = scorer.required_outputs(spec.outputs)
    data_rows = list(read_rows(options.data, spec.inputs, spec.outputs, required_outputs=required, limit=options.limit))
    if options.predictions:
        source = "predictions"
        items = [Item(r.inputs or {}, r.y_true, r.y_pred) for r in
                 read_predictions(options.predictions, spec.outputs, required, limit=options.limit)]
    elif options.generate:
        from rewardctl.lm.cache import ResponseCache
        from rewardctl.lm.client import LMClient
        from rewardctl.paths import responses_dir
        from rewardctl.program import Program
        from rewardctl.runner import Runner

        source = "program"
        cache = ResponseCache(options.cache_dir or responses_dir()) if options.use_cache else None
        runner = Runner(spec, scorer, LMClient(spec.model, cache), options.concurrency, options.use_cache)
        results = await runner.run(Program(spec).state, data_rows)
        items = [Item(r.inputs, r.y_true or {}, p.y_pred if p.ok else None) for r, (p, _) in
                 zip(data_rows, results, strict=True)]
        if cache is not None:
            cache.close()
    else:
        source = "references"
        items = [Item(r.inputs, r.y_true or {}, r.y_true) for r in data_rows]
    if not items:
        raise InputError("no rows to inspect", path=options.predictions or options.data)
    inspector = Inspector(spec, scorer, items, data_rows, source, options)
    await inspector.run()
    plots = make_plots(inspector)
    counts = {k: sum(1 for c in inspector.checks if c.status == k) for k in ("pass", "warn", "fail", "skip")}
    report = InspectReport(spec={"path": spec_path, "name": spec.name, "model": spec.model.name}, source=source,
                           rows=len(items), failed_predictions=sum(1 for it in items if it.y_pred is None),
                           counts=counts, checks=inspector.checks, recommended_normalization=inspector.recommended,
                           wall_time_s=round(time.perf_counter() - started, 2))
    if options.out_dir:
        out = Path(options.out_dir)
        for name, data in plots.items():
            _atomic_bytes(out / name, data)
            report.outputs[name.removesuffix(".png")] = str(out / name)
        report.outputs.update(report=str(out / "report.json"), markdown=str(out / "report.md"),
                              html=str(out / "report.html"))
        atomic_write_json(out / "report.json", report.model_dump(mode="json"))
        atomic_write_text(out / "report.md", render_markdown(report))
        atomic_write_text(out / "report.html", render_html(report, plots))
    if options.write_spec:
        write_normalized_spec(spec_path, report, options.write_spec, {r.name for r in scorer.rewards})
        report.outputs["spec"] = options.write_spec
    return report


def _atomic_bytes(path: Path, data: bytes) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def write_normalized_spec(spec_path: str | None, report: InspectReport, out: str, reward_names: set[str]) -> None:
    """The spec with each reward's recommended normalization (where it recommends one)."""
    import yaml

    from rewardctl.spec import load_spec
    from rewardctl.yamlload import load_yaml

    if spec_path is None:
        raise InputError("--write-spec needs the spec's file")
    data = dict(load_yaml(Path(spec_path).read_text(encoding="utf-8-sig"), spec_path).data)
    changed = []
    for entry in data.get("rewards") or []:
        name = entry.get("name") or entry.get("type")
        rec = report.recommended_normalization.get(name)
        if name in reward_names and rec and rec["method"] != "none":
            entry["normalization"] = {k: rec[k] for k in ("method", "min", "max", "mean", "std") if k in rec}
            changed.append(name)
    header = (f"# Written by rewardctl inspect-rewards from {spec_path}: normalization fitted on "
              f"{report.rows} rows ({report.source}) for {', '.join(changed) or 'no reward'}.\n")
    atomic_write_text(out, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    load_spec(out)

