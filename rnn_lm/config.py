"""Frozen configuration dataclasses, validated, and stored as JSON beside the model.

Library code takes these; only the binaries in ``rnn_lm/bin`` read flags.
"""

import dataclasses
import json
import math
import os

from rnn_lm.errors import RnnLmError
from rnn_lm.files import write_atomically

CELL_TYPES = ("elman", "lstm", "gru")
ACTIVATIONS = ("tanh", "relu", "sigmoid")
LEVELS = ("word", "char")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("epoch", "plateau")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
NAN_POLICIES = ("skip", "stop")
CORPUS_NAMES = ("", "grammar", "ptb", "wikitext2", "wikitext103", "tinyshakespeare")
CONFIG_FILE = "config.json"
# The most tokens one continuation may have (rnn-lm-generate's --max_tokens, the SavedModel's generate):
# a model that never emits <eos> still stops.  Generation's memory grows with the tokens produced.
MAX_GENERATED_TOKENS = 10_000


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The language model. ``vocab_size`` is filled in from the built vocabulary."""
    vocab_size: int = 0
    cell: str = "lstm"
    activation: str = "tanh"  # Elman only
    num_layers: int = 2
    hidden_size: int = 200
    embedding_size: int = 200  # 0: one-hot input
    dropout: float = 0.0  # on the non-recurrent connections: between layers and before the softmax
    input_dropout: float = -1.0  # on the first layer's input; < 0: the same as dropout
    locked_dropout: bool = False  # one mask per stream for the whole window (variational), not per step
    embedding_dropout: float = 0.0  # drops whole word types from the input embedding for a step
    tie_embeddings: bool = False
    init_scale: float = 0.1  # uniform(-s, s) initialisation; 0: Keras defaults

    def validate(self):
        _finite_floats(self)
        _choice("cell", self.cell, CELL_TYPES)
        _choice("activation", self.activation, ACTIVATIONS)
        _positive("num_layers", self.num_layers)
        _positive("hidden_size", self.hidden_size)
        if self.embedding_size < 0:
            raise RnnLmError(f"--embedding_size must be >= 0 (0 means one-hot input), got {self.embedding_size}")
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise RnnLmError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        if self.input_dropout >= 1.0:
            raise RnnLmError(f"--input_dropout must be below 1 (negative: as --dropout), got {self.input_dropout}")
        if self.embedding_dropout and not self.embedding_size:
            raise RnnLmError("--embedding_dropout needs an embedding (--embedding_size > 0)")
        if self.init_scale < 0:
            raise RnnLmError(f"--init_scale must be >= 0, got {self.init_scale}")
        if self.tie_embeddings and self.embedding_size != self.hidden_size:
            raise RnnLmError(
                "--tie_embeddings needs --embedding_size equal to --hidden_size, got "
                f"{self.embedding_size} and {self.hidden_size}")

    @property
    def input_dropout_rate(self):
        """The dropout rate on the first layer's input."""
        return self.dropout if self.input_dropout < 0 else self.input_dropout

    @property
    def uses_dropout(self):
        return bool(self.dropout or self.input_dropout_rate or self.embedding_dropout)

    def describe(self):
        embed = f"embedding {self.embedding_size}" if self.embedding_size else "one-hot input"
        cell = f"elman/{self.activation}" if self.cell == "elman" else self.cell
        return f"{cell} {self.num_layers}x{self.hidden_size}, {embed}, vocabulary {self.vocab_size}"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the text comes from and how it becomes tokens."""
    corpus: str = ""  # a named corpus (rnn_lm.data.corpora), "grammar", or "" (data_dir, else grammar)
    data_dir: str = ""  # a folder of train/valid/test.txt, or of the named corpus' files
    level: str = "word"
    vocab_size: int = 0  # cap on the vocabulary, specials included; 0: no cap
    min_count: int = 1
    encoding_errors: str = "strict"  # bytes that are not UTF-8: an error, or "replace" them by U+FFFD
    grammar_seed: int = 0
    grammar_train_tokens: int = 1_000_000
    grammar_max_depth: int = 2
    stream_train: bool = False  # train.txt encoded once into MODEL_DIR/data/train.ids and read from there

    def validate(self):
        _choice("corpus", self.corpus, CORPUS_NAMES)
        if self.corpus == "grammar" and self.data_dir:
            raise RnnLmError("--corpus=grammar is generated; it takes no --data_dir")
        _choice("level", self.level, LEVELS)
        _choice("encoding_errors", self.encoding_errors, ("strict", "replace"))
        if self.vocab_size < 0 or self.vocab_size in (1, 2):
            raise RnnLmError(f"--vocab_size must be 0 (no cap) or at least 3, got {self.vocab_size}")
        _positive("min_count", self.min_count)
        if self.stream_train and (self.corpus or not self.data_dir):
            raise RnnLmError("--stream_train reads a --data_dir folder of train/valid/test.txt; "
                             "it takes no --corpus")
        _positive("grammar_train_tokens", self.grammar_train_tokens)
        if self.grammar_max_depth < 0:
            raise RnnLmError(f"--grammar_max_depth must be >= 0, got {self.grammar_max_depth}")

    @property
    def is_grammar(self):
        """Whether the text is the built-in grammar corpus."""
        return self.corpus in ("", "grammar") and not self.data_dir

    @property
    def agreement_ready(self):
        """Whether the agreement probe applies: the built-in corpus at word level."""
        return self.is_grammar and self.level == "word"

    @property
    def corpus_name(self):
        if self.corpus not in ("", "grammar"):
            return f"{self.corpus} ({self.data_dir or 'cache'})"
        return self.data_dir or "built-in grammar"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimisation. Learning rates are for the lecture's cost, averaged over time."""
    batch_size: int = 20
    num_steps: int = 20
    epochs: int = 1
    max_steps: int = 0  # 0: no limit
    optimizer: str = "sgd"
    learning_rate: float = 20.0  # the tutorial's 1.0 for the summed cost, times num_steps
    lr_decay: float = 1.0
    decay_start_epoch: int = 2
    lr_schedule: str = "epoch"  # decay every epoch from decay_start_epoch, or when validation stops improving
    plateau_threshold: float = 0.0  # "plateau": decay unless valid perplexity falls by more than this fraction
    weight_decay: float = 0.0  # L2: the gradient of (weight_decay / 2) * |w|^2 added for every weight
    average_start_epoch: int = 0  # averaged SGD: evaluate and export the mean of the weights since this epoch
    max_grad_norm: float = 0.25  # the tutorial's 5 / num_steps; 0: no clipping
    seed: int = 0
    eval_batch_size: int = 1  # one stream: exact perplexity
    log_every_steps: int = 100
    save_every_steps: int = 0  # 0: at the end of each epoch only
    save_every_secs: float = 0.0  # 0: no time-based checkpoints
    nan_policy: str = "skip"  # a non-finite loss or gradient: skip the update, or stop
    max_nonfinite_steps: int = 10  # stop after this many skipped updates in a row
    keep_checkpoints: int = 3
    sample_tokens: int = 30
    sample_temperature: float = 0.8
    deterministic: bool = False  # TensorFlow's op determinism (same losses run after run)
    jit_compile: bool = False  # XLA for the train step and the decoding step
    compute_dtype: str = "float32"  # --mixed_precision: bfloat16 or float16 (loss-scaled); loss and variables float32

    def validate(self):
        _finite_floats(self)
        for name in ("batch_size", "num_steps", "epochs", "eval_batch_size",
                     "log_every_steps", "keep_checkpoints", "decay_start_epoch"):
            _positive(name, getattr(self, name))
        for name in ("max_steps", "save_every_steps", "sample_tokens", "average_start_epoch"):
            if getattr(self, name) < 0:
                raise RnnLmError(f"--{name} must be >= 0, got {getattr(self, name)}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if not self.learning_rate > 0:
            raise RnnLmError(f"--learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise RnnLmError(f"--lr_decay must be in (0, 1], got {self.lr_decay}")
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not 0.0 <= self.plateau_threshold < 1.0:
            raise RnnLmError(f"--plateau_threshold must be in [0, 1), got {self.plateau_threshold}")
        if self.weight_decay < 0:
            raise RnnLmError(f"--weight_decay must be >= 0, got {self.weight_decay}")
        _choice("mixed_precision", self.compute_dtype, COMPUTE_DTYPES)
        _choice("nan_policy", self.nan_policy, NAN_POLICIES)
        _positive("max_nonfinite_steps", self.max_nonfinite_steps)
        if self.save_every_secs < 0:
            raise RnnLmError(f"--save_every_secs must be >= 0, got {self.save_every_secs}")
        if self.sample_temperature < 0:
            raise RnnLmError(f"--sample_temperature must be >= 0, got {self.sample_temperature}")
        if self.max_grad_norm < 0:
            raise RnnLmError(f"--max_grad_norm must be >= 0, got {self.max_grad_norm}")

    def learning_rate_at(self, epoch):
        """lr of 0-based ``epoch`` for the "epoch" schedule: times lr_decay per epoch, from 1-based
        decay_start_epoch on.  (The "plateau" schedule's rate depends on validation; the trainer keeps it.)"""
        return self.learning_rate * self.lr_decay ** max(epoch + 2 - self.decay_start_epoch, 0)


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    """Where the train step runs (``rnn_lm.distribute``). Any run may resume under another strategy."""
    strategy: str = "default"  # default (one device), mirrored, multi_worker (TF_CONFIG), tpu
    num_cpu_devices: int = 0  # mirrored: split the CPU into this many logical devices (testing); 0: the GPUs
    tpu: str = ""  # tpu: the TPU's name or grpc:// address; empty: the TPU cluster resolver's default

    def validate(self):
        _choice("strategy", self.strategy, STRATEGIES)
        if self.num_cpu_devices < 0:
            raise RnnLmError(f"--num_cpu_devices must be >= 0, got {self.num_cpu_devices}")
        if self.num_cpu_devices and self.strategy != "mirrored":
            raise RnnLmError("--num_cpu_devices is for --strategy=mirrored")
        if self.tpu and self.strategy != "tpu":
            raise RnnLmError("--tpu is for --strategy=tpu")


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    distribute: DistributeConfig = DistributeConfig()

    def validate(self):
        self.model.validate()
        self.data.validate()
        self.train.validate()
        self.distribute.validate()
        if self.distribute.strategy == "multi_worker" and self.data.stream_train:
            raise RnnLmError("--stream_train with --strategy=multi_worker is not supported yet "
                             "(every worker would encode train.ids into the same folder)")
        return self

    def replace(self, **parts):
        return dataclasses.replace(self, **parts)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """From ``to_dict``'s form; every value must have its field's type (an int for a float is fine)."""
        if not isinstance(d, dict):
            raise RnnLmError(f"config is not an rnn_lm config (a JSON {type(d).__name__}, not an object)")
        parts = {}
        for section in SECTIONS:
            values = d.get(section, {} if section == "distribute" else None)  # absent before strategies
            if not isinstance(values, dict):
                raise RnnLmError(f"config is not an rnn_lm config (no {section!r} object)")
            parts[section] = _typed(section, values)
        return cls(**parts)

    def changes(self, other):
        """[(section, field, mine, other's)] for every field that differs, in field order."""
        return [(section, f.name, getattr(getattr(self, section), f.name), getattr(getattr(other, section), f.name))
                for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
                if getattr(getattr(self, section), f.name) != getattr(getattr(other, section), f.name)]

    def save(self, model_dir):
        write_atomically(os.path.join(model_dir, CONFIG_FILE),
                         json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, model_dir):
        path = os.path.join(model_dir, CONFIG_FILE)
        if not os.path.isfile(path):
            raise RnnLmError(f"{model_dir} is not an rnn_lm model directory (no {CONFIG_FILE})")
        try:
            with open(path, encoding="utf-8") as f:
                config = cls.from_dict(json.load(f))
            return config.validate()
        except RnnLmError as e:
            raise RnnLmError(f"{path}: {e}") from None
        except (OSError, ValueError) as e:
            raise RnnLmError(f"cannot read {path}: {e}") from None


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "distribute": DistributeConfig}

# What a resumed run may change: the schedule, the cadence of logs and checkpoints, evaluation and
# samples, and where the step runs.  Every other field (the model, the data, the batch and window,
# the optimizer and its checkpointed state, the seed) is what the run *is*: a resume that changes
# one is refused.
RESUMABLE_FIELDS = {
    "train": ("epochs", "max_steps", "learning_rate", "lr_decay", "decay_start_epoch", "plateau_threshold",
              "weight_decay", "max_grad_norm", "eval_batch_size", "log_every_steps", "save_every_steps",
              "save_every_secs", "nan_policy", "max_nonfinite_steps", "keep_checkpoints", "sample_tokens",
              "sample_temperature", "deterministic", "jit_compile"),
    "distribute": ("strategy", "num_cpu_devices", "tpu"),
}


def is_resumable(section, field):
    """Whether a resumed run may change ``section.field`` (``RESUMABLE_FIELDS``)."""
    return field in RESUMABLE_FIELDS.get(section, ())


def _typed(section, values):
    """``SECTIONS[section](**values)``, each value checked against its field's type."""
    cls = SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RnnLmError(f"config is not an rnn_lm config ({section} has no field {unknown[0]!r})")
    out = {}
    for name, value in values.items():
        kind = type(fields[name].default)
        ok = (isinstance(value, kind) and not (kind is int and isinstance(value, bool))
              or kind is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise RnnLmError(f"{section}.{name} must be {kind.__name__}, got {json.dumps(value)}")
        out[name] = float(value) if kind is float else value
    return cls(**out)


def _finite_floats(section):
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise RnnLmError(f"--{f.name} must be a finite number, got {value}")


def _positive(name, value):
    if value <= 0:
        raise RnnLmError(f"--{name} must be positive, got {value}")


def _choice(name, value, choices):
    if value not in choices:
        raise RnnLmError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
