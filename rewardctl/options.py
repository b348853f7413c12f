"""Every command's options and their defaults, declared once: the command line takes its
defaults from here, and each class checks its options once (``__post_init__``), before any work
starts. Core layer, and light to import, so that `rewardctl --help` stays fast."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from rewardctl.errors import InputError
from rewardctl.shards import Shard, parse_shard

# A dataset's format (--data-format, the spec's data.format); None: by the file's extension.
DataFormat = Literal["jsonl", "csv", "tsv", "parquet", "arrow"]
DATA_FORMATS: tuple[str, ...] = get_args(DataFormat)


def parse_field_map(values: Sequence[str], data_format: str | None) -> dict[str, str]:
    """``--field FIELD=COLUMN`` (repeatable) as {field: column}; and ``--data-format`` checked."""
    if data_format is not None and data_format not in DATA_FORMATS:
        raise InputError(f"expected {', '.join(DATA_FORMATS[:-1])} or {DATA_FORMATS[-1]}", field="--data-format")
    columns: dict[str, str] = {}
    for value in values:
        name, sep, column = value.partition("=")
        if not sep or not name.strip() or not column:
            raise InputError(f"expected FIELD=COLUMN (a spec field and the dataset column it is read "
                             f"from), got '{value}'", field="--field")
        if name.strip() in columns:
            raise InputError(f"'{name.strip()}' is given twice", field="--field")
        columns[name.strip()] = column
    return columns


@dataclass(frozen=True)
class ErrorBudget:
    """``--max-errors``: a number of failed rows, or a share of the rows."""

    kind: str  # "count" or "share"
    limit: float

    @classmethod
    def parse(cls, value: str | None) -> ErrorBudget | None:
        """'25' -> 25 rows; '10%' -> a share of 0.10."""
        if value is None:
            return None
        text = str(value).strip()
        try:
            if text.endswith("%"):
                share = float(text[:-1]) / 100
                if not 0 <= share <= 1:
                    raise ValueError
                return cls("share", share)
            count = int(text)
            if count < 0:
                raise ValueError
            return cls("count", float(count))
        except ValueError:
            raise InputError("expected a number of rows (25) or a percentage (10%)", field="--max-errors") from None

    def exceeded(self, failures: int, rows: int, total: int | None) -> bool:
        if self.kind == "count":
            return failures > self.limit
        if total:  # a share of the whole dataset, when its size is known
            return failures > self.limit * total
        return rows >= 20 and failures / rows > self.limit


@dataclass
class EvalOptions:
    data: str
    out_dir: str | None = None
    limit: int | None = None
    concurrency: int = 8
    use_cache: bool = True
    cache_dir: str | None = None
    skip_invalid: bool = False
    fail_under: float | None = None
    repeat: int = 1  # samples per row (pass@k); each is a separate prediction line
    max_errors: str | None = None  # "N" failed rows, or "P%" of the rows; past it the run stops
    resume: bool = False  # finish an interrupted run in out_dir (its transient failures asked again)
    retry_errors: bool = False  # ask a finished (or interrupted) run's failed rows again
    shard: Shard | str | None = None  # (K, N) or "K/N": evaluate the K-th of N round-robin shards
    max_cost: float | None = None  # USD; once spent, no further call starts
    workers: int | None = None  # LM worker processes for remote models; None: auto (evaluate.lm_workers)
    row_pass: str = "mean"  # --repeat: a row passes when its mean sample does ('mean'), all do, or any does
    log_requests: str | None = None  # a JSONL file: every model call, its request and reply (keys redacted)
    fields: Sequence[str] = ()  # --field FIELD=COLUMN: the dataset column a spec field is read from
    data_format: str | None = None  # --data-format; None: by the extension (a folder: what it holds)
    budget: ErrorBudget | None = field(init=False, default=None)  # max_errors, parsed
    columns: dict[str, str] = field(init=False, default_factory=dict)  # fields, parsed

    def __post_init__(self) -> None:
        self.columns = parse_field_map(self.fields, self.data_format)
        if isinstance(self.shard, str):
            self.shard = parse_shard(self.shard)
        self.budget = ErrorBudget.parse(self.max_errors)
        if self.row_pass not in ("mean", "all", "any"):
            raise InputError("expected mean, all or any", field="--row-pass")
        if self.max_cost is not None and self.max_cost < 0:
            raise InputError("expected a budget in USD, 0 or more", field="--max-cost")
        if self.resume and self.out_dir is None:
            raise InputError("--resume needs --out DIR (the interrupted run's folder)")
        if self.retry_errors and self.out_dir is None:
            raise InputError("--retry-errors needs --out DIR (the earlier run's folder)")


@dataclass
class RenderOptions:
    data: str
    limit: int | None = None
    skip_invalid: bool = False
    attempt: int = 1  # which attempt's request: 1 the first; later ones (local models) decode under a grammar
    fields: Sequence[str] = ()  # --field FIELD=COLUMN, as for eval
    data_format: str | None = None  # --data-format; None: by the extension
    columns: dict[str, str] = field(init=False, default_factory=dict)  # fields, parsed

    def __post_init__(self) -> None:
        self.columns = parse_field_map(self.fields, self.data_format)
        if self.attempt < 1:
            raise InputError("expected 1 or more (1: the first request)", field="--attempt")


@dataclass
class ScoreOptions:
    predictions: str
    out_dir: str | None = None
    limit: int | None = None
    skip_invalid: bool = False
    fail_under: float | None = None
    use_cache: bool = True
    cache_dir: str | None = None


@dataclass
class OptimizeOptions:
    train: str
    val: str | None = None
    val_split: float = 0.3
    test: str | None = None
    out_dir: str | None = None
    optimizer: str | None = None  # None: the spec's, else optimize.DEFAULT_OPTIMIZER
    epochs: int | None = None
    seed: int | None = None
    zero_shot: bool = False
    reference: str | None = None  # a checkpoint whose state is the KL reference
    resume: bool = False
    concurrency: int = 8
    use_cache: bool = True
    cache_dir: str | None = None
    # The final KL(best || reference) (local models): on a seeded sample of at most this many
    # validation rows, 2 sampled outputs each; 0: not computed.
    final_kl_rows: int = 32
    fields: Sequence[str] = ()  # --field FIELD=COLUMN, for --train, --val and --test
    data_format: str | None = None  # --data-format; None: by the extension
    columns: dict[str, str] = field(init=False, default_factory=dict)  # fields, parsed

    def __post_init__(self) -> None:
        self.columns = parse_field_map(self.fields, self.data_format)
        if self.val is None and not 0 < self.val_split < 1:
            raise InputError("expected a share between 0 and 1", field="--val-split")
        if self.final_kl_rows < 0:
            raise InputError("expected a number of rows, 0 or more (0: no final KL)", field="--final-kl-rows")
        if self.resume and self.out_dir is None:
            raise InputError("--resume needs --out DIR (the interrupted run's folder)")


@dataclass
class InspectOptions:
    data: str
    predictions: str | None = None
    generate: bool = False
    pairs: str | None = None
    limit: int = 500
    probe_rows: int = 40
    seed: int = 0
    concurrency: int = 8
    use_cache: bool = True
    cache_dir: str | None = None
    fields: Sequence[str] = ()  # --field FIELD=COLUMN
    data_format: str | None = None  # --data-format; None: by the extension
    columns: dict[str, str] = field(init=False, default_factory=dict)  # fields, parsed

    def __post_init__(self) -> None:
        self.columns = parse_field_map(self.fields, self.data_format)
        if self.predictions and self.generate:
            raise InputError("give --predictions or --generate, not both")


@dataclass
class TrainOptions:
    pairs: str
    out: str
    val_split: float = 0.2
    epochs: int | None = None  # default: 40 for the head, 2 for fine-tuning
    seed: int = 0
    base_model: str | None = None
    embedding_model: str = "all-MiniLM-L6-v2"
    hidden: int = 256
    learning_rate: float | None = None  # default: 1e-3 for the head, 2e-5 for fine-tuning
    batch_size: int | None = None  # default: 32 for the head, 8 for fine-tuning
    centering: float = 0.0
    split_by: str = "prompt"
    max_length: int = 256
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.split_by not in ("prompt", "pair"):
            raise InputError("expected 'prompt' or 'pair'", field="--split-by")


@dataclass
class CompareOptions:
    base: str
    new: str
    key: str | None = None  # None: a hash of the input fields
    seed: int = 0
    alpha: float = 0.05  # a test is significant below it
    margin: float | None = None  # --fail-on-regression's margin; None: no gate
    max_flips: int = 50  # flipped rows listed in the report (all are counted)
    out_dir: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InputError("expected a number between 0 and 1", field="--alpha")
        if self.margin is not None and self.margin < 0:
            raise InputError("expected a margin of 0 or more (a drop the gate tolerates)", field="--fail-on-regression")
        if self.max_flips < 0:
            raise InputError("expected 0 or more", field="--max-flips")
        if self.out_dir is not None:
            out = Path(self.out_dir).resolve()
            for side, folder in (("base", self.base), ("new", self.new)):
                if out == Path(folder).resolve():
                    raise InputError(f"the {side} run's folder: its report.json would be replaced "
                                     "(write the comparison elsewhere)", field="--out")
