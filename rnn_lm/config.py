"""Frozen configuration dataclasses, validated, and stored as JSON beside the model.

Library code takes these; only the binaries in ``rnn_lm/bin`` read flags.
"""

import dataclasses
import json
import math
import os
from typing import ClassVar

from rnn_lm.data.corpora import CORPORA
from rnn_lm.data.grammar import DEFAULT_GRAMMAR, GRAMMARS
from rnn_lm.data.tokenizers import TOKENIZERS
from rnn_lm.errors import RnnLmError, field_ref
from rnn_lm.files import write_json

CELL_TYPES = ("elman", "lstm", "gru")
ACTIVATIONS = ("tanh", "relu", "sigmoid")
BACKWARDS = ("auto", "autodiff", "written")
LEVELS = tuple(TOKENIZERS)
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("epoch", "plateau")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16", "auto")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
NAN_POLICIES = ("skip", "stop")
FINAL_WEIGHTS = ("best", "last")
RESET_STATES = ("never", "eos")
SOFTMAXES = ("full", "adaptive")
SUBWORD_TYPES = ("unigram", "bpe")
# The adaptive softmax's cutoffs where --adaptive_cutoffs names none: those below the vocabulary's size
# (a head of the 2,000 most frequent words, as Grave et al.'s, then clusters up to 10k and 50k).
DEFAULT_ADAPTIVE_CUTOFFS = (2000, 10000, 50000)
ENCODING_ERRORS = ("strict", "replace")
CORPUS_NAMES = ("", "grammar") + tuple(CORPORA)
CONFIG_FILE = "config.json"
# The most tokens one continuation may have (rnn-lm-generate's --max_tokens, the SavedModel's generate):
# a model that never emits <eos> still stops.  Generation's memory grows with the tokens produced.
MAX_GENERATED_TOKENS = 10_000
# Generation's settings where a caller names none: rnn-lm-generate's flag defaults and the SavedModel's
# serving_default, which takes only the prompts.  Temperature 1, top-k 0 and top-p 1 sample from the
# model's own distribution; seed 0 makes a prompt's continuation the same on every call.
GENERATION_DEFAULTS = {"max_tokens": 50, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 0}


def _field(default, help, choices=None, flag=None):
    """A config field with what a binary needs to offer it as a flag: its help text, its choices,
    and the flag's name where it is not the field's (``flag_name``)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The language model. ``vocab_size`` is filled in from the built vocabulary."""
    SECTION: ClassVar[str] = "model"
    vocab_size: int = _field(0, "Filled in from the vocabulary built from the training split.")
    cell: str = _field("lstm", "Recurrent cell.", CELL_TYPES)
    activation: str = _field("tanh", "Elman cell activation f.", ACTIVATIONS)
    num_layers: int = _field(2, "Stacked recurrent layers.")
    hidden_size: int = _field(200, "H, units per layer.")
    embedding_size: int = _field(200, "Word embedding size; 0: one-hot input.")
    dropout: float = _field(0.0, "Dropout rate on the non-recurrent connections (between layers, before the "
                            "softmax, and on the first layer's input unless --input_dropout says otherwise).")
    input_dropout: float = _field(-1.0, "Dropout rate on the first layer's input; negative: --dropout.")
    locked_dropout: bool = _field(False, "Variational dropout: one mask per stream for the whole window "
                                  "instead of a new one per time step.")
    embedding_dropout: float = _field(0.0, "Drop whole word types from the input embedding (every occurrence "
                                      "of a dropped word in the step reads zeros).")
    tie_embeddings: bool = _field(False, "Share the embedding with the softmax weights (needs --embedding_size "
                                  "== --hidden_size).")
    init_scale: float = _field(0.1, "Weights start uniform in [-s, s]; 0: Keras' initialisers.")
    reset_state: str = _field("never", "Where the recurrent state starts again from h_(0) = 0: never (the "
                              "state carried across sentences, one stream) or eos (sentence mode: at every "
                              "<eos> input, so that each line is an independent sequence, in training, "
                              "evaluation and scoring alike).", RESET_STATES)
    softmax: str = _field("full", "The output layer: full (one softmax over the vocabulary) or adaptive (Grave "
                          "et al., 2017: a head of frequent words and clusters of rarer ones behind smaller "
                          "projections; exact probabilities, faster for large vocabularies).", SOFTMAXES)
    adaptive_cutoffs: str = _field("", "--softmax=adaptive: increasing ids where the head and each cluster end "
                                   "(ids are in frequency order), comma-separated, e.g. 2000,10000. Empty: those "
                                   "of 2000,10000,50000 below the vocabulary size.")
    adaptive_factor: float = _field(4.0, "--softmax=adaptive: cluster i reads the top layer through a "
                                    "projection to H / factor^i units.")

    def validate(self):
        _check_fields(self)
        _positive(self, "num_layers")
        _positive(self, "hidden_size")
        if self.embedding_size < 0:
            raise _error(self, "embedding_size", "must be >= 0 (0 means one-hot input)")
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise _error(self, name, "must be in [0, 1)")
        if self.input_dropout >= 1.0:
            raise _error(self, "input_dropout", "must be below 1 (negative: as dropout)")
        if self.embedding_dropout and not self.embedding_size:
            raise RnnLmError(f"{_ref(self, 'embedding_dropout')} needs an embedding ({_ref(self, 'embedding_size')} > 0)")
        if self.init_scale < 0:
            raise _error(self, "init_scale", "must be >= 0")
        if self.tie_embeddings and self.embedding_size != self.hidden_size:
            raise RnnLmError(
                f"{_ref(self, 'tie_embeddings')} needs {_ref(self, 'embedding_size')} equal to "
                f"{_ref(self, 'hidden_size')}, got {self.embedding_size} and {self.hidden_size}")
        self._validate_adaptive()

    def _validate_adaptive(self):
        if self.softmax != "adaptive":
            if self.adaptive_cutoffs:
                raise RnnLmError(f"{_ref(self, 'adaptive_cutoffs')} is for {_ref(self, 'softmax')}=adaptive")
            return
        if self.tie_embeddings:
            raise RnnLmError(f"{_ref(self, 'tie_embeddings')} needs {_ref(self, 'softmax')}=full (the adaptive "
                             "softmax has no |V| x H matrix to share)")
        if not self.adaptive_factor >= 1.0:
            raise _error(self, "adaptive_factor", "must be >= 1")
        cutoffs = self.cutoffs
        if self.vocab_size and not cutoffs:
            raise RnnLmError(f"a vocabulary of {self.vocab_size} tokens is too small for the default "
                             f"{_ref(self, 'adaptive_cutoffs')} ({','.join(map(str, DEFAULT_ADAPTIVE_CUTOFFS))}); "
                             f"name cutoffs below it, or use {_ref(self, 'softmax')}=full")

    @property
    def cutoffs(self):
        """The adaptive softmax's cutoffs, a tuple of ints (empty flag: the defaults below the vocabulary
        size; before the vocabulary is known, all of them)."""
        if not self.adaptive_cutoffs:
            return tuple(c for c in DEFAULT_ADAPTIVE_CUTOFFS if not self.vocab_size or c < self.vocab_size)
        try:
            cutoffs = tuple(int(c) for c in self.adaptive_cutoffs.split(","))
        except ValueError:
            raise _error(self, "adaptive_cutoffs", "must be comma-separated integers") from None
        if cutoffs[0] < 1 or any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
            raise _error(self, "adaptive_cutoffs", "must be positive and increasing")
        if self.vocab_size and cutoffs[-1] >= self.vocab_size:
            raise RnnLmError(f"{_ref(self, 'adaptive_cutoffs')} must lie below the vocabulary size "
                             f"{self.vocab_size}, got {self.adaptive_cutoffs!r}")
        return cutoffs

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
        softmax = f", adaptive softmax {','.join(map(str, self.cutoffs))}" if self.softmax == "adaptive" else ""
        return f"{cell} {self.num_layers}x{self.hidden_size}, {embed}, vocabulary {self.vocab_size}{softmax}"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the text comes from and how it becomes tokens."""
    SECTION: ClassVar[str] = "data"
    corpus: str = _field("", "A named corpus, found in --data_dir or in $RNN_LM_DATA/NAME (downloaded there, "
                         "checksum-verified, when missing); grammar: the built-in corpus. Empty: --data_dir, "
                         "else the built-in corpus.", CORPUS_NAMES)
    data_dir: str = _field("", "Folder with train.txt, valid.txt, test.txt (UTF-8), or with the files of "
                           "--corpus. Empty: the built-in grammar corpus, or the --corpus cache.")
    level: str = _field("word", "Tokens are words (split on whitespace), characters, or subwords (SentencePiece "
                        "pieces of a model trained on the training split, kept in the model directory).", LEVELS)
    subword_vocab_size: int = _field(8000, "--level=subword: pieces of the SentencePiece model.")
    subword_type: str = _field("unigram", "--level=subword: SentencePiece's unigram language model (Kudo, "
                               "2018) or byte-pair encoding (Sennrich et al., 2016).", SUBWORD_TYPES)
    vocab_size: int = _field(0, "Cap on the vocabulary size, <unk> and <eos> included; 0: no cap.")
    min_count: int = _field(1, "Training-split words seen fewer times become <unk>.")
    encoding_errors: str = _field("strict", "Bytes that are not UTF-8: an error naming the file and offset, or "
                                  "replaced by U+FFFD.", ENCODING_ERRORS)
    grammar: str = _field(DEFAULT_GRAMMAR, "Built-in corpus: which grammar of the family (data/README.md): cakes, "
                          "the first; pilots, another lexicon with subjects modified more often and more "
                          "deeply, relative clauses more frequent than prepositional phrases.", tuple(GRAMMARS))
    grammar_seed: int = _field(0, "Built-in corpus: generator seed.")
    grammar_train_tokens: int = _field(1_000_000, "Built-in corpus: training tokens.")
    grammar_max_depth: int = _field(2, "Built-in corpus: how deep subject modifiers nest (the distance of "
                                    "subject-verb agreement).")
    stream_train: bool = _field(False, "For a --data_dir larger than memory: build the vocabulary in one "
                                "streaming pass, encode train.txt once into MODEL_DIR/data/train.ids and read "
                                "training windows from that file (valid and test are read into memory).")

    def validate(self):
        _check_fields(self)
        if self.corpus == "grammar" and self.data_dir:
            raise RnnLmError(f"{_ref(self, 'corpus')}=grammar is generated; it takes no {_ref(self, 'data_dir')}")
        if self.vocab_size < 0 or self.vocab_size in (1, 2):
            raise _error(self, "vocab_size", "must be 0 (no cap) or at least 3")
        _positive(self, "min_count")
        if self.subword_vocab_size < 4:
            raise _error(self, "subword_vocab_size", "must be at least 4")
        if self.stream_train and (self.corpus or not self.data_dir):
            raise RnnLmError(f"{_ref(self, 'stream_train')} reads a {_ref(self, 'data_dir')} folder of "
                             f"train/valid/test.txt; it takes no {_ref(self, 'corpus')}")
        _positive(self, "grammar_train_tokens")
        if self.grammar_max_depth < 0:
            raise _error(self, "grammar_max_depth", "must be >= 0")

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
        return self.data_dir or f"built-in grammar ({self.grammar})"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimisation. Learning rates are for the lecture's cost, averaged over time."""
    SECTION: ClassVar[str] = "train"
    batch_size: int = _field(20, "Contiguous streams per batch.")
    num_steps: int = _field(20, "BPTT window: time steps per training step.")
    epochs: int = _field(1, "Passes over the training split.")
    max_steps: int = _field(0, "Stop after this many training steps in all; 0: no limit.")
    optimizer: str = _field("sgd", "SGD (the lecture's) or Adam.", OPTIMIZERS)
    learning_rate: float = _field(20.0, "Learning rate, for the cost averaged over time steps (a tutorial's "
                                  "rate for the summed cost times --num_steps: 1.0 x 20).")
    lr_decay: float = _field(1.0, "Learning rate factor per epoch from --decay_start_epoch.")
    decay_start_epoch: int = _field(2, "First epoch (1-based) trained with a decayed rate.")
    lr_schedule: str = _field("epoch", "epoch: times --lr_decay every epoch from --decay_start_epoch; plateau: "
                              "times --lr_decay after an epoch whose validation perplexity did not improve on "
                              "the best by more than --plateau_threshold.", LR_SCHEDULES)
    plateau_threshold: float = _field(0.0, "Relative improvement of the validation perplexity below which the "
                                      "plateau schedule decays the rate (0.01: less than 1 percent).")
    patience: int = _field(0, "Early stopping: stop after this many epochs in a row with no better validation "
                           "perplexity than the best (whose weights are then the final ones, --final_weights=best); "
                           "0: train all --epochs.")
    weight_decay: float = _field(0.0, "L2 regularisation: weight_decay * w is added to every weight's gradient "
                                 "(that of (weight_decay / 2) |w|^2), before clipping.")
    average_start_epoch: int = _field(0, "Averaged SGD: from this epoch (1-based) on, keep the mean of the "
                                      "weights after every update; validation, test, samples and the export "
                                      "use it. 0: off.")
    max_grad_norm: float = _field(0.25, "Clip gradients to this global norm (of the time-averaged cost's "
                                  "gradient; a tutorial's 5 / --num_steps); 0: no clipping.")
    seed: int = _field(0, "Seed of initialisation, dropout and samples.")
    eval_batch_size: int = _field(20, "Streams when computing valid/test perplexity: 1 is exact, more are faster "
                                  "(each stream but the first reads --eval_warmup tokens before its part).")
    eval_warmup: int = _field(200, "Tokens each evaluation stream but the first reads, unscored, before its part, "
                              "so that it scores from a state that has seen context (docs/evaluation.md measures the "
                              "difference from batch 1).")
    log_every_steps: int = _field(100, "Progress line and TensorBoard scalars every N steps.")
    save_every_steps: int = _field(0, "Checkpoint every N steps as well as after each epoch.")
    save_every_secs: float = _field(0.0, "Checkpoint every N seconds as well; 0: not by time.")
    nan_policy: str = _field("skip", "A non-finite loss or gradient norm: skip that update (and stop after "
                             "--max_nonfinite_steps in a row), or stop at once.", NAN_POLICIES)
    max_nonfinite_steps: int = _field(10, "Skipped updates in a row that stop training.")
    keep_checkpoints: int = _field(3, "Checkpoints kept (the best-validation one is kept apart, in "
                                   "checkpoints/best).")
    final_weights: str = _field("best", "The weights of the final validation and test figures, the closing "
                                "sample and the SavedModel: best, those of the best validation perplexity "
                                "(checkpoints/best), unless the last weights were validated and are as good; "
                                "last: the weights training ended with.", FINAL_WEIGHTS)
    sample_tokens: int = _field(30, "Length of the sample printed after each epoch.")
    sample_temperature: float = _field(0.8, "Temperature of those samples; 0: greedy.")
    deterministic: bool = _field(False, "TensorFlow's op determinism: with the same --seed, an interrupted and "
                                 "resumed run repeats the uninterrupted run's losses (slower on GPUs).")
    jit_compile: bool = _field(False, "Compile the train step and the decoding step with XLA (measure: it "
                               "does not always pay).")
    backward: str = _field("auto", "How the recurrent layers' gradients are computed: autodiff (TensorFlow "
                           "differentiates the unrolled loop), written (backpropagation through time written out, "
                           "rnn_lm/bptt.py: the same gradients, the recurrent weights' in one product over the "
                           "window), or auto (the faster of the two for the cell and size, as measured).", BACKWARDS)
    compute_dtype: str = _field("auto", "Mixed precision (Keras' mixed_bfloat16 / mixed_float16): cells and "
                                "softmax product in 16 bits; variables, state, softmax and loss in float32; "
                                "float16 with dynamic loss scaling. Pays only on GPUs and CPUs with native "
                                "bfloat16 (AVX512_BF16, AMX). auto: bfloat16 on such a CPU, float32 elsewhere, "
                                "decided when the run starts (config.json records which).", COMPUTE_DTYPES,
                                flag="mixed_precision")

    def resolved(self):
        """This config with ``compute_dtype="auto"`` decided for this machine (``rnn_lm.cpu``)."""
        if self.compute_dtype != "auto":
            return self
        from rnn_lm.cpu import native_bfloat16
        return dataclasses.replace(self, compute_dtype="bfloat16" if native_bfloat16() else "float32")

    def validate(self):
        _check_fields(self)
        for name in ("batch_size", "num_steps", "epochs", "eval_batch_size",
                     "log_every_steps", "keep_checkpoints", "decay_start_epoch", "max_nonfinite_steps"):
            _positive(self, name)
        for name in ("max_steps", "save_every_steps", "sample_tokens", "average_start_epoch", "weight_decay",
                     "patience", "save_every_secs", "sample_temperature", "max_grad_norm", "eval_warmup"):
            if getattr(self, name) < 0:
                raise _error(self, name, "must be >= 0")
        if not self.learning_rate > 0:
            raise _error(self, "learning_rate", "must be positive")
        if not 0.0 < self.lr_decay <= 1.0:
            raise _error(self, "lr_decay", "must be in (0, 1]")
        if not 0.0 <= self.plateau_threshold < 1.0:
            raise _error(self, "plateau_threshold", "must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    """Where the train step runs (``rnn_lm.distribute``). Any run may resume under another strategy."""
    SECTION: ClassVar[str] = "distribute"
    strategy: str = _field("default", "tf.distribute strategy: one device; mirrored (all local GPUs, or "
                           "--num_cpu_devices); multi_worker (the cluster in TF_CONFIG); tpu (--tpu). --batch_size "
                           "is the global batch, split over the replicas.", STRATEGIES)
    num_cpu_devices: int = _field(0, "--strategy=mirrored over this many logical CPU devices (for testing); "
                                  "0: the local GPUs.")
    tpu: str = _field("", "--strategy=tpu: the TPU's name or grpc:// address.")

    def validate(self):
        _check_fields(self)
        if self.num_cpu_devices < 0:
            raise _error(self, "num_cpu_devices", "must be >= 0")
        if self.num_cpu_devices and self.strategy != "mirrored":
            raise RnnLmError(f"{_ref(self, 'num_cpu_devices')} is for {_ref(self, 'strategy')}=mirrored")
        if self.tpu and self.strategy != "tpu":
            raise RnnLmError(f"{_ref(self, 'tpu')} is for {_ref(self, 'strategy')}=tpu")


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
            raise RnnLmError(f"{field_ref('data', 'stream_train')} with {field_ref('distribute', 'strategy')}="
                             "multi_worker is not supported yet (every worker would encode train.ids into the "
                             "same folder)")
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
        write_json(os.path.join(model_dir, CONFIG_FILE), self.to_dict())

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
    "train": ("epochs", "max_steps", "patience", "learning_rate", "lr_decay", "decay_start_epoch", "plateau_threshold",
              "weight_decay", "max_grad_norm", "eval_batch_size", "eval_warmup", "log_every_steps", "save_every_steps",
              "save_every_secs", "nan_policy", "max_nonfinite_steps", "keep_checkpoints", "sample_tokens",
              "sample_temperature", "deterministic", "jit_compile", "backward", "final_weights"),
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


def flag_name(section, field):
    """The flag of config field ``section.field`` in rnn-lm-train (its name, unless the field says otherwise)."""
    f = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == field)
    return f.metadata.get("flag") or field


def _ref(config, field):
    return field_ref(config.SECTION, field)


def _error(config, field, problem):
    return RnnLmError(f"{_ref(config, field)} {problem}, got {getattr(config, field)!r}")


def _check_fields(config):
    """Every float finite, every field with choices one of them."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise RnnLmError(f"{_ref(config, f.name)} must be a finite number, got {value}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise RnnLmError(f"{_ref(config, f.name)} must be one of {', '.join(choices)}, got {value!r}")


def _positive(config, field):
    if getattr(config, field) <= 0:
        raise _error(config, field, "must be positive")
