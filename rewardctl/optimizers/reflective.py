"""reflective: LM-proposed instructions, in the spirit of GEPA (Agrawal et al., arXiv 2507.19457).

Each step (the loop in rewardctl.optimize drives it):

1. **Parent from the Pareto front** (`teacher`). Every candidate scored so far has a score on each
   validation row it ran on (`evaluate` records them: the initial program on the whole validation
   set, each proposal on its validation minibatch, the epoch's shortlist on the whole set). A
   row's front is the set of candidates with the best score on that row; candidates whose every
   front also holds another surviving candidate are dominated and leave (lowest mean first, as
   GEPA's `remove_dominated_programs`); the parent is drawn with probability proportional to the
   number of rows' fronts it is on. So a candidate that is the best on some row stays eligible
   even when its mean is low. The parent runs on the training batch; its rows are the feedback.
2. **Reflection** (`propose_with_model`). The reflection model (`reflection_model`, or the
   program's own) reads the current instruction, the task's input and output fields with their
   descriptions, and up to `reflection_rows` rows of the batch, lowest reward first (ties in a
   seeded order): each row's inputs, the program's output (or its error and its unparseable
   reply), the reference, each reward's and metric's value, and per-field feedback ("field `x`:
   expected 7, got 9", "missing", "unparseable reply: ..."). A chat model (prompt format json)
   gets chat messages and answers between ``` fences; a completion-format model (prompt format
   fields: the embedded base model, a served base model) gets a completion prompt that opens
   with one worked rewrite of a made-up task (base models follow patterns), ends in "New
   instruction:" and is answered by one line. The reply is parsed leniently (a fenced block,
   else the text after an "instruction:" label, else its first paragraph, or for a completion
   its first line; quotes stripped); an empty reply, one over `max_instruction_chars`, the
   parent's own instruction, a code block (small chat models answer "improve the instruction"
   with a Python function) or a copy of the worked rewrite is no proposal. The child is the new
   instruction with the parent's demos. When every row of the batch already
   scores 1.0 there is nothing to reflect on and no call is made (GEPA skips perfect batches).
3. The loop scores the child on a validation minibatch; the end of each epoch scores the
   shortlist on the whole validation set; the population and the best follow the loop's rules.

Choices made here:

- **Demos.** Children keep their parent's demos (the spec's, unless `--zero-shot`), so the
  optimizer combines with demos written in the spec. With `max_examples` > 0, each proposal
  instead, with probability 1/2, keeps the parent's instruction and draws 1 to `max_examples`
  labeled training rows as its demos (uniformly, seeded): the front then holds instruction and
  demo variants side by side; no call is made for such a proposal.
- **Scores are memoized.** A state's reward on a row is computed once (its reply is in the
  response cache anyway): rescoring the shortlist on the whole validation set only runs the rows
  its minibatch did not cover, which keeps the budget for proposals. With `kl_beta` > 0 nothing
  is memoized (each evaluation samples afresh with the loop's seed).
- **KL penalty.** With `kl_beta` > 0 candidates are scored by the kl optimizer's objective,
  mean of (reward - kl_beta * KL(candidate || reference)) over sampled outputs (KLPenalized's
  own evaluate, with its default samples_per_row, max_sample_tokens and k1 estimator); the front
  then uses each row's mean objective. It needs a local/ model with a fields prompt: any other
  model is an InputError naming `optimizer.kl_beta`, raised when the baseline is scored, before
  any model call (the loop's `check_model` sees only the model, not the options).
- **Budget, seed, cache, resume.** Every reflection reply counts one call in `runner.calls`
  (cached ones too, as the runner counts), so `max_calls` (default 300 here) covers reflection.
  The reflection call's sampling seed comes from the loop's generator and its reply goes through
  the run's response cache (`LMClient.complete`), so a rerun replays it. `state_dict` holds the
  per-row scores of every candidate, the proposals history, the warnings and the failure count:
  `--resume` ends where an uninterrupted run ends.
- **Failures are not silent.** A reflection call that fails counts in `failures`, adds a
  warning to the optimizer's state and is no proposal for that step; a fatal provider error
  (bad key, unknown model) or a server that stopped answering (as many connection failures in a
  row as make the runner give up) stops the run with a RunError, as the runner does.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from rewardctl.datamodel import DataModel, FieldSpec
from rewardctl.errors import InputError, RunError, one_line
from rewardctl.kl import sequence_kl
from rewardctl.lm.client import GIVE_UP_CONNECTIONS, LMClient, ProviderError
from rewardctl.lm.request import Request
from rewardctl.modelconfig import ModelConfig
from rewardctl.optimizers.base import (
    OPTIMIZERS,
    CandidateRunner,
    Observation,
    Optimizer,
    OptimizerConfig,
    step_score,
)
from rewardctl.optimizers.kl_penalized import KLConfig, KLPenalized
from rewardctl.prompting import json_one_line
from rewardctl.state import Example, ProgramState

if TYPE_CHECKING:
    from rewardctl.records.optimize import StepScore

PERFECT = 1.0  # a batch whose every row scores this much has nothing to reflect on
VALUE_SHOWN = 300  # characters of one value shown to the reflection model
RAW_SHOWN = 300  # characters of an unparseable reply shown
TIE = 1e-9  # scores this close are equal on a row's front


class ReflectiveConfig(OptimizerConfig):
    type: Literal["reflective"] = "reflective"
    batch_size: int = Field(
        4, ge=1, description="Training rows per step: the parent runs on them and the reflection "
        "model reads up to reflection_rows of them.")
    val_batch_size: int = Field(
        8, ge=0, description="Validation rows (sampled per step) that score a new candidate; 0: all.")
    max_calls: int | None = Field(
        300, ge=1, description="Budget in model calls, reflection calls included (cached replies "
        "count, so a rerun stops where the run stopped); null: no budget.")
    reflection_model: ModelConfig | None = Field(
        None, description="The model that reads the feedback and proposes instructions, given as "
        "the spec's `model:` entry is (any litellm model); null: the program's own model.")
    reflection_rows: int = Field(
        4, ge=1, description="Rows of the training batch the reflection model reads, lowest reward first.")
    reflection_temperature: float = Field(
        0.7, ge=0, description="Sampling temperature of the reflection call (seeded from --seed).")
    reflection_max_tokens: int = Field(256, ge=1, description="Most tokens in the reflection model's reply.")
    max_instruction_chars: int = Field(
        1000, ge=1, description="The longest instruction accepted; a longer proposal is dropped.")
    max_examples: int = Field(
        0, ge=0, description="0: children keep their parent's demos. N > 0: half the proposals "
        "(seeded) keep the parent's instruction and draw 1 to N labeled training rows as demos.")
    kl_beta: float = Field(
        0.0, ge=0, description="0: candidates are scored by their mean reward. > 0: by the kl "
        "optimizer's objective, reward - kl_beta * KL to the reference (local/ models with a "
        "fields prompt only).")


@OPTIMIZERS.register
class Reflective(Optimizer):
    config_model = ReflectiveConfig

    def __init__(self, config: ReflectiveConfig, outputs):
        super().__init__(config, outputs)
        self.scores: dict[str, dict[str, float]] = {}  # state key -> row key -> reward (or objective)
        self.proposals: list[dict[str, Any]] = []  # every step's proposal, made or not, and why
        self.warnings: list[str] = []
        self.failures = 0  # reflection calls that failed
        self.batch: list[Observation] = []
        self.labeled: list[Example] = []
        self._parent: ProgramState | None = None  # chosen by teacher for this step's proposal
        self._client: LMClient | None = None
        if config.reflection_model is not None:  # a missing API key variable is an error up front
            self._client = LMClient(config.reflection_model)
        self._kl: KLPenalized | None = None
        if config.kl_beta > 0:
            self._kl = KLPenalized(KLConfig(beta=config.kl_beta, seed=config.seed), outputs)

    @classmethod
    def config_problem(cls, config: ReflectiveConfig, model: ModelConfig) -> tuple[str, str] | None:
        """(option, why) when these options cannot run ``model``, else None: optimize's
        check_model asks before any data is read; evaluate checks again (a direct caller)."""
        if config.kl_beta > 0:
            problem = KLPenalized.model_problem(model)
            if problem is not None:
                return "kl_beta", f"kl_beta > 0 {problem}; set kl_beta to 0"
        return None

    # --- the loop's hooks ---
    def set_labeled(self, examples: list[Example]) -> None:
        self.labeled = list(examples)

    def set_reference(self, state: ProgramState) -> None:
        if self._kl is not None:
            self._kl.set_reference(state)

    def observe(self, observations: list[Observation]) -> None:
        self.batch = list(observations)

    def teacher(self, parent: ProgramState, rng: random.Random) -> ProgramState:
        """The parent of this step's proposal: a candidate drawn from the Pareto front."""
        self._parent = pick_from_front(self.scores, rng) or parent
        return self._parent

    def propose(self, parent: ProgramState, rng: random.Random) -> ProgramState | None:
        raise TypeError("reflective proposes with a model: the loop calls propose_with_model")

    async def propose_with_model(self, runner: CandidateRunner, parent: ProgramState,
                                 rng: random.Random) -> ProgramState | None:
        cfg = self.config
        parent, self._parent = self._parent or parent, None
        if cfg.max_examples and self.labeled and rng.random() < 0.5:
            demos = rng.sample(self.labeled, rng.randint(1, min(cfg.max_examples, len(self.labeled))))
            self._record(parent, parent.instructions, "demos", 0)
            return ProgramState(parent.instructions, [Example(input=d.input, output=d.output) for d in demos])
        shown = shown_rows(self.batch, cfg.reflection_rows, rng)
        seed = rng.getrandbits(31)
        if not shown or all(o.reward is not None and o.reward >= PERFECT for o in self.batch):
            self._record(parent, None, "skipped: every row of the batch scored 1", 0)
            return None
        client = self._client_for(runner)
        model = cfg.reflection_model or runner.spec.model
        request = reflection_request(runner.spec, parent.instructions, shown,
                                     completion=model.resolved_format == "fields")
        runner.calls += 1
        try:
            reply = await client.complete(request, overrides={
                "temperature": cfg.reflection_temperature, "max_tokens": cfg.reflection_max_tokens,
                "seed": seed})
        except ProviderError as exc:
            self._failed(exc, client, parent, len(shown))
            return None
        instruction, status = parse_instruction(reply.text, parent.instructions, cfg.max_instruction_chars,
                                                one_line=request.completion)
        self._record(parent, instruction, status, len(shown))
        return None if instruction is None else ProgramState(instruction, list(parent.examples))

    async def evaluate(self, runner: CandidateRunner, state: ProgramState, rows: list[Any], seed: int) -> StepScore:
        """The mean reward on rows (each state's reward on a row computed once), or with kl_beta
        the KL-penalized objective; every row's value is kept for the Pareto front."""
        if self._kl is not None:
            return await self._evaluate_kl(runner, state, rows, seed)
        known = self.scores.setdefault(state.key(), {})
        todo = [row for row in rows if row_key(row) not in known]
        if todo:
            for row, (_, scores) in zip(todo, await runner.run(state, todo), strict=True):
                if scores.reward is not None:  # a row the provider failed is not a score
                    known[row_key(row)] = scores.reward
        values = [known[k] for k in map(row_key, rows) if k in known]
        return step_score(objective=sum(values) / len(values) if values else 0.0)

    async def _evaluate_kl(self, runner: CandidateRunner, state: ProgramState, rows: list[Any],
                           seed: int) -> StepScore:
        assert self._kl is not None
        problem = self.config_problem(self.config, runner.spec.model)
        if problem is not None:
            raise InputError(problem[1], field=f"optimizer.{problem[0]}")
        recorder = _SampleRecorder(runner)
        stats = await self._kl.evaluate(recorder, state, rows, seed)
        samples, beta = recorder.samples, stats.beta or 0.0
        per_row = len(samples) // len(rows) if rows else 0
        known = self.scores.setdefault(state.key(), {})
        for i, row in enumerate(rows):
            chunk = samples[i * per_row:(i + 1) * per_row]
            if chunk:
                known[row_key(row)] = sum(
                    (s.reward if s.reward is not None else 0.0)
                    - beta * sequence_kl(s.logprobs, s.ref_logprobs, self._kl.config.estimator)
                    for s in chunk) / len(chunk)
        return stats

    def after_step(self, stats: StepScore) -> None:
        if self._kl is not None:
            self._kl.after_step(stats)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "candidates": [{"state": json.loads(key), "scores": rows} for key, rows in self.scores.items()],
            "proposals": self.proposals, "warnings": self.warnings, "failures": self.failures}
        if self._kl is not None:
            state["beta"] = self._kl.controller.value
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores = {ProgramState.from_json(c["state"]).key(): {k: float(v) for k, v in c["scores"].items()}
                       for c in state.get("candidates", [])}
        self.proposals = list(state.get("proposals", []))
        self.warnings = list(state.get("warnings", []))
        self.failures = int(state.get("failures", 0))
        if self._kl is not None and "beta" in state:
            self._kl.controller.value = float(state["beta"])

    def run_warnings(self) -> list[str]:
        return list(self.warnings)

    def own_clients(self) -> list[Any]:
        return [self._client] if self._client is not None else []

    # --- helpers ---
    def _client_for(self, runner: CandidateRunner) -> LMClient:
        if self._client is None:
            return runner.client
        if self._client.cache is None:
            self._client.cache = runner.client.cache  # the run's response cache: a rerun replays
        return self._client

    def _record(self, parent: ProgramState, instruction: str | None, status: str, rows: int) -> None:
        self.proposals.append({"parent": parent.instructions, "instruction": instruction, "status": status,
                               "rows": rows})

    def _failed(self, exc: ProviderError, client: LMClient, parent: ProgramState, rows: int) -> None:
        """Count a failed reflection call and warn; stop the run where the runner would."""
        self.failures += 1
        message = one_line(str(exc), 200)
        self.warnings.append(f"proposal {len(self.proposals) + 1}: the reflection model failed: {message}")
        self._record(parent, None, f"failed: {message}", rows)
        if exc.fatal:
            raise RunError(f"stopped: the reflection model failed: {message}") from None
        if exc.kind == "connection" and client.connection_failures >= GIVE_UP_CONNECTIONS:
            raise RunError(f"stopped: {message}; the reflection model's server could not be reached") from None


class _SampleRecorder:
    """The runner as KLPenalized.evaluate sees it, keeping the samples it drew (per-row values)."""

    def __init__(self, runner: CandidateRunner):
        self._runner = runner
        self.samples: list[Any] = []

    async def sample(self, *args: Any, **kwargs: Any) -> list[Any]:
        self.samples = await self._runner.sample(*args, **kwargs)
        return self.samples

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)


def row_key(row: Any) -> str:
    """A validation row's stable identity: its inputs and reference."""
    payload = json.dumps([row.inputs, row.y_true], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- the Pareto front ---

def pareto_front(scores: dict[str, dict[str, float]]) -> dict[str, int]:
    """Each candidate left on the front -> on how many rows' fronts it is (GEPA's rule).

    A row's front is the set of candidates (scored on that row) with its best score. Then, lowest
    mean first, a candidate is dominated, and leaves, when each front it is on also holds another
    candidate still on the front."""
    rows = sorted({row for values in scores.values() for row in values})
    fronts: list[set[str]] = []
    for row in rows:
        scored = {key: values[row] for key, values in scores.items() if row in values}
        best = max(scored.values())
        fronts.append({key for key, value in scored.items() if value >= best - TIE})
    means = {key: sum(values.values()) / len(values) for key, values in scores.items() if values}
    programs = sorted({key for front in fronts for key in front}, key=lambda k: (means[k], k))
    dominated: set[str] = set()
    removed = True
    while removed:
        removed = False
        for key in programs:
            if key in dominated:
                continue
            others = set(programs) - dominated - {key}
            if all(front & others for front in fronts if key in front):
                dominated.add(key)
                removed = True
                break
    counts: dict[str, int] = {}
    for front in fronts:
        for key in front - dominated:
            counts[key] = counts.get(key, 0) + 1
    return counts


def pick_from_front(scores: dict[str, dict[str, float]], rng: random.Random) -> ProgramState | None:
    """A candidate from the front, with probability proportional to its number of rows."""
    counts = pareto_front(scores)
    if not counts:
        return None
    keys = sorted(counts)
    pick = rng.random() * sum(counts.values())
    chosen = keys[-1]
    for key in keys:
        pick -= counts[key]
        if pick < 0:
            chosen = key
            break
    return ProgramState.from_json(json.loads(chosen))


# --- the reflection request ---

def shown_rows(batch: list[Observation], limit: int, rng: random.Random) -> list[Observation]:
    """Up to ``limit`` rows, lowest reward first (an unscored row counts as 0), ties in a seeded order."""
    order = list(range(len(batch)))
    rng.shuffle(order)
    order.sort(key=lambda i: batch[i].reward if batch[i].reward is not None else 0.0)
    return [batch[i] for i in order[:limit]]


def show(value: Any, limit: int = VALUE_SHOWN) -> str:
    text = json_one_line(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_feedback(obs: Observation, outputs: DataModel) -> list[str]:
    """What was wrong with one row, field by field."""
    if obs.y_pred is None:
        if obs.raw is not None:
            why = one_line(obs.error or "", 200).removeprefix("unparseable reply: ")
            return [f"unparseable reply: {show(obs.raw, RAW_SHOWN)}" + (f" ({why})" if why else "")]
        return [f"no output: {one_line(obs.error or 'the program failed', 200)}"]
    notes = []
    for name in outputs:
        if name not in obs.y_true:
            continue
        expected = obs.y_true[name]
        if name not in obs.y_pred:
            notes.append(f"field `{name}`: missing (expected {show(expected)})")
        elif obs.y_pred[name] == expected:
            notes.append(f"field `{name}`: correct")
        elif isinstance(expected, str) and isinstance(obs.y_pred[name], str) and \
                " ".join(expected.split()).casefold() == " ".join(obs.y_pred[name].split()).casefold():
            notes.append(f"field `{name}`: expected {show(expected)}, got {show(obs.y_pred[name])} "
                         "(differs in case or spacing only)")
        else:
            notes.append(f"field `{name}`: expected {show(expected)}, got {show(obs.y_pred[name])}")
    return notes


def describe_fields(model: DataModel) -> list[str]:
    lines = []
    for name, spec in model.items():
        kind = spec.type + (f" (one of {', '.join(spec.values)})" if spec.type == "enum" and spec.values else "")
        lines.append(f"- `{name}` ({kind})" + (f": {spec.description}" if spec.description else ""))
    return lines


def row_lines(i: int, obs: Observation, outputs: DataModel) -> list[str]:
    inputs = ", ".join(f"{k}: {show(v)}" for k, v in obs.inputs.items())
    if obs.y_pred is not None:
        output = ", ".join(f"{k}: {show(v)}" for k, v in obs.y_pred.items())
    else:
        output = "(none)"
    expected = ", ".join(f"{k}: {show(v)}" for k, v in obs.y_true.items()) or "(no reference)"
    scores = ", ".join(f"{k}={'-' if v is None else f'{v:.2f}'}" for k, v in obs.scores.items())
    reward = "not scored" if obs.reward is None else f"{obs.reward:.2f}"
    return [f"Example {i}", f"Inputs: {inputs}", f"Output: {output}", f"Expected: {expected}",
            f"Reward: {reward}" + (f" ({scores})" if scores else ""),
            "Feedback: " + "; ".join(field_feedback(obs, outputs))]


# A base model continues a pattern: the completion prompt shows one rewrite first (a made-up task).
COMPLETION_DEMO = [
    "Task: Translate an English word into French.", "Inputs:", "- `word` (string)", "Outputs:",
    "- `french` (string)", "Current instruction: Translate the word.", "",
    "Results with the current instruction:", "",
    *row_lines(1, Observation({"word": "cat"}, {"french": "chat"}, {"french": "Chat"}, 0.0),
               {"french": FieldSpec()}), "",
    *row_lines(2, Observation({"word": "dog"}, {"french": "chien"}, {"french": "dog"}, 0.0),
               {"french": FieldSpec()}), "",
    "New instruction: Translate the English word into French; answer with the French word only, "
    "in lowercase.", "", "---"]
DEMO_OPENING = "translate the english word"  # a proposal that starts so copied the demo


def reflection_request(spec: Any, instruction: str | None, shown: list[Observation], *,
                       completion: bool) -> Request:
    """What the reflection model reads: chat messages, or one completion prompt (base models)."""
    task = [f"Task: {spec.description}"] if getattr(spec, "description", None) else []
    head = [*task, "Inputs:", *describe_fields(spec.inputs), "Outputs:", *describe_fields(spec.outputs),
            f"Current instruction: {instruction.strip() if instruction else '(none)'}"]
    rows = [line for i, obs in enumerate(shown, start=1)
            for line in ["", *row_lines(i, obs, spec.outputs)]]
    if completion:
        prompt = "\n".join([
            "Instructions of programs, each rewritten so that the program makes none of the mistakes "
            "shown. A new instruction is one line: general rules, not the answers.", "",
            *COMPLETION_DEMO, "", *head, "", "Results with the current instruction:", *rows, "",
            "New instruction:"])
        return Request([{"role": "user", "content": prompt}], stop=["\n\n"], completion=True)
    system = ("You improve the instruction of a language-model program. You read the program's task, "
              "its current instruction and how it did on some examples, with feedback, and write a "
              "better instruction.")
    user = "\n".join([
        *head, "", "Results with the current instruction (reward 1.00 is best):", *rows, "",
        "Write an improved instruction for this program. Keep what works; say precisely what the "
        "output must look like and fix the mistakes above with general rules (do not list the "
        "answers to these examples). Reply with only the new instruction, in plain words (not "
        "code), between ``` fences."])
    return Request([{"role": "system", "content": system}, {"role": "user", "content": user}])


# --- reading the reply ---

# A fenced block (or a fence the reply never closed: it hit max_tokens), its language tag first.
_FENCED = re.compile(r"```([A-Za-z0-9_+#.-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_PLAIN = {"", "text", "txt", "plain", "plaintext", "markdown", "md", "instruction", "instructions"}
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:new |improved |updated )?instructions?(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
                    re.IGNORECASE)
_QUOTES = "\"'`“”‘’"


def parse_instruction(text: str, parent: str | None, max_chars: int,
                      one_line: bool = False) -> tuple[str | None, str]:
    """The proposed instruction in a reply and "proposed", or None and why there is none.
    ``one_line``: the reply to a completion prompt, whose first non-empty line is the answer."""
    body = text.strip()
    fenced = [(m.group(1).casefold(), m.group(2).strip()) for m in _FENCED.finditer(body)]
    if fenced:
        language, body = next(((lang, block) for lang, block in fenced if block), fenced[0])
        if language not in _PLAIN:  # small models answer "improve the instruction" with a program
            return None, f"code ({language}), not an instruction"
    elif one_line:  # a base model may open with a newline
        body = next((line for line in body.split("\n") if line.strip()), "")
    else:
        labeled = list(re.finditer(r"(?im)^.*\binstructions?\b[^\n:]{0,20}:[ \t]*", body))
        if labeled and body[labeled[-1].end():].strip():
            body = body[labeled[-1].end():]
        body = re.split(r"\n\s*\n", body.strip(), maxsplit=1)[0]
    body = _LABEL.sub("", body.strip())
    while len(body) >= 2 and body[0] in _QUOTES and body[-1] in _QUOTES:
        body = body[1:-1].strip()
    body = re.sub(r"\n{3,}", "\n\n", body).strip()
    if not body:
        return None, "empty"
    if len(body) > max_chars:
        return None, f"too long ({len(body)} characters)"
    words = " ".join(body.split()).casefold()
    if parent is not None and words == " ".join(parent.split()).casefold():
        return None, "unchanged"
    if words.startswith(DEMO_OPENING):
        return None, "copied the prompt's example"
    return body, "proposed"
