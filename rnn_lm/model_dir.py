"""The model directory: what it holds, who owns it, and checking a run against it before anything is written.

    config.json         the resolved Config of the run (its latest settings)
    config_history.jsonl one JSON line per start and per resume that changed a setting: when, at which
                        step, what changed (old and new values)
    vocab.txt           the vocabulary, one token per line, in id order (its SHA-256 is in every checkpoint)
    train.lock          held (flock) by the rnn-lm-train that owns the directory; says who (pid, host, since)
    checkpoints/        tf.train.CheckpointManager checkpoints: model, optimizer, step, epoch, data
                        position, the carried state and the vocabulary's hash; best/ the best-validation one
                        (best.json: its step, epoch and validation perplexity);
                        damaged/ checkpoints found truncated or corrupt, kept aside (never deleted)
    logs/               TensorBoard events (train/ and valid/)
    saved_model/        the exported SavedModel (written at the end)
    tflite/             with rnn-lm-export --format=tflite: model.tflite, one step for LiteRT, and vocab.txt
    data/               with --stream_train: train.ids, the training split's token ids
                        (int32), and train.ids.json, what they were encoded from

One truth: the directory alone says what the run is.  A resume takes the stored
config; it may change the schedule (``config.RESUMABLE_FIELDS``), never the model,
the data, the batch or the window.  Nothing is written until every check has passed.

Nothing here imports TensorFlow, so bad input is reported before it loads.
"""

import dataclasses
import datetime
import errno
import fcntl
import json
import os
import socket

from absl import logging

from rnn_lm.config import CONFIG_FILE, Config, is_resumable
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.data.layout import check_trainable
from rnn_lm.data.vocab import Vocabulary
from rnn_lm.errors import RnnLmError, field_ref, reason

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"  # in checkpoints/: the checkpoint of the best validation perplexity so far
BEST_RECORD = "best.json"  # beside it: its step, epoch and validation perplexity
CHECKPOINT_NAMES = "latest, best or ckpt-N"  # how eval, generate and export name a checkpoint
LOG_DIR = "logs"
SAVED_MODEL_DIR = "saved_model"
TFLITE_DIR = "tflite"
LOCK_FILE = "train.lock"
HISTORY_FILE = "config_history.jsonl"

# A vocabulary under which more than this fraction of the validation split is <unk> cannot be
# evaluated meaningfully (its perplexity mostly measures how often <unk> comes): refused.
MAX_VALID_UNK_RATE = 0.5
WARN_VALID_UNK_RATE = 0.05


def stored_config(model_dir):
    """The Config of the run in ``model_dir``, or None for a directory that holds none yet."""
    return Config.load(model_dir) if os.path.isfile(os.path.join(model_dir, CONFIG_FILE)) else None


def prepare(config, model_dir):
    """Reads the corpus and checks ``config`` against ``model_dir`` before anything is written.

    A model directory that already holds a run must be resumed with the same
    model, data, batch and window (``resume_changes``); the schedule may change.
    A directory that holds checkpoints but no config.json is refused.
    Returns (config with the vocabulary size filled in, corpus).
    """
    config.validate()
    config = config.replace(train=config.train.resolved())
    stored = stored_config(model_dir)
    vocab = None
    if stored is not None:
        resume_changes(stored, config, model_dir)
        vocab = Vocabulary.load(model_dir)
    else:
        _refuse_orphan_checkpoints(model_dir)
    corpus = corpus_lib.load(config.data, vocab, model_dir)
    config = config.replace(model=dataclasses.replace(config.model, vocab_size=len(corpus.vocab)))
    config.model.validate()  # what depends on the vocabulary's size (the adaptive softmax's cutoffs)
    if stored is not None and stored.model != config.model:
        raise RnnLmError(f"--model_dir {model_dir} holds a {stored.model.describe()} model; "
                         f"the flags ask for {config.model.describe()}")
    check_trainable(len(corpus.train), config.train.batch_size, config.train.num_steps)
    check_vocabulary(corpus, config.data)
    return config, corpus


def check_vocabulary(corpus, data_config):
    """Refuses a vocabulary that leaves nothing to learn or most of the validation split unknown."""
    if len(corpus.vocab) <= 2:
        raise RnnLmError(f"the vocabulary holds only <unk> and <eos> ({field_ref('data', 'min_count')}="
                         f"{data_config.min_count}, {field_ref('data', 'vocab_size')}={data_config.vocab_size}): "
                         "no word of train.txt is kept")
    unk = corpus.unk_rate["valid"]
    min_count, vocab_size = field_ref("data", "min_count"), field_ref("data", "vocab_size")
    if unk > MAX_VALID_UNK_RATE:
        raise RnnLmError(f"{100 * unk:.1f}% of the validation split is <unk> with this vocabulary of "
                         f"{len(corpus.vocab)} tokens ({min_count}={data_config.min_count}, {vocab_size}="
                         f"{data_config.vocab_size}); lower {min_count} or raise {vocab_size}")
    if unk > WARN_VALID_UNK_RATE:
        logging.warning("%.1f%% of the validation split is <unk> with this vocabulary of %d tokens: its "
                        "perplexity partly measures how often <unk> comes", 100 * unk, len(corpus.vocab))


def resume_changes(stored, config, model_dir):
    """The settings a resume changes, as [(section, field, old, new)]; refuses any that may not change.

    The model's vocab_size comes from the data and is not compared here.
    """
    changes = _changes(stored, config)
    fixed = [f"{field_ref(section, field)}={old!r} (now {new!r})" for section, field, old, new in changes
             if not is_resumable(section, field)]
    if fixed:
        raise RnnLmError(f"--model_dir {model_dir} was trained with {', '.join(fixed)}; these cannot change "
                         "when a run resumes: give the same values (or none) to resume, or a new --model_dir")
    return changes


def record_start(model_dir, config, stored, step):
    """Writes config.json and appends to the history what this start or resume is (call once every
    check has passed). Returns the changes a resume made, [(section, field, old, new)]."""
    changes = [] if stored is None else _changes(stored, config)
    if stored is None or changes:
        entry = {"time": _now(), "pid": os.getpid(), "host": socket.gethostname(), "step": step,
                 "event": "start" if stored is None else "resume"}
        if changes:
            entry["changed"] = {f"{section}.{field}": [old, new] for section, field, old, new in changes}
        with open(os.path.join(model_dir, HISTORY_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
    if stored != config:
        config.save(model_dir)
    return changes


def _changes(stored, config):
    return [c for c in stored.changes(config) if (c[0], c[1]) != ("model", "vocab_size")]


def _refuse_orphan_checkpoints(model_dir):
    folder = os.path.join(model_dir, CHECKPOINT_DIR)
    if os.path.isdir(folder) and any(name.endswith(".index") for name in os.listdir(folder)):
        raise RnnLmError(f"--model_dir {model_dir} holds checkpoints but no {CONFIG_FILE}: they cannot be "
                         "resumed without the settings they were trained with; restore it, or use a new --model_dir")


class Lock:
    """The exclusive lock of a training run on its model directory (``flock`` on train.lock).

    The kernel releases it when the process ends, however it ends, so a killed
    run never blocks the next one.  Readers (eval, generate, export) take no lock:
    every file a trainer writes is written under a temporary name and renamed.
    """

    def __init__(self, model_dir):
        self.path = os.path.join(model_dir, LOCK_FILE)
        self._fd = None

    def acquire(self):
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RnnLmError(f"cannot write to --model_dir {os.path.dirname(self.path)} ({reason(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RnnLmError(f"cannot lock {self.path} ({reason(e)})") from None
            raise RnnLmError(f"--model_dir {os.path.dirname(self.path)} is in use by another rnn-lm-train "
                             f"({holder}); wait for it to end, or stop it") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd):
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
