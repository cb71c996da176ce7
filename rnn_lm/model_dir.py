"""The model directory: what it holds, and checking a run against it before anything is written.

    config.json     the resolved Config (what was trained)
    vocab.txt       the vocabulary, one token per line, in id order
    checkpoints/    tf.train.CheckpointManager checkpoints: model, optimizer,
                    step, epoch, data position and the carried state
    logs/           TensorBoard events (train/ and valid/)
    saved_model/    the exported SavedModel (written at the end)
    data/           with --stream_train: train.ids, the training split's token ids
                    (int32), and train.ids.json, what they were encoded from

Nothing here imports TensorFlow, so bad input is reported before it loads.
"""

import dataclasses
import os

from rnn_lm.config import CONFIG_FILE, Config
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.data.layout import check_trainable
from rnn_lm.data.vocab import Vocabulary
from rnn_lm.errors import RnnLmError

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
SAVED_MODEL_DIR = "saved_model"


def prepare(config, model_dir):
    """Reads the corpus and checks ``config`` against ``model_dir`` before anything is written.

    A model directory that already holds a run must have been trained on the
    same data with the same model; the training schedule may change (to
    continue a run with more epochs, for example).  Returns (config with the
    vocabulary size filled in, corpus).
    """
    config.validate()
    stored = Config.load(model_dir) if os.path.isfile(os.path.join(model_dir, CONFIG_FILE)) else None
    vocab = None
    if stored is not None:
        _check_same_run(stored, config, model_dir)
        vocab = Vocabulary.load(model_dir)
    if config.data.stream_train:
        corpus = corpus_lib.load_streamed_corpus(config.data, model_dir, vocab)
    else:
        corpus = corpus_lib.load_corpus(config.data, vocab)
    config = config.replace(model=dataclasses.replace(config.model, vocab_size=len(corpus.vocab)))
    if stored is not None and stored.model != config.model:
        raise RnnLmError(f"--model_dir {model_dir} holds a {stored.model.describe()} model; "
                         f"the flags ask for {config.model.describe()}")
    check_trainable(len(corpus.train), config.train.batch_size, config.train.num_steps)
    return config, corpus


def _check_same_run(stored, config, model_dir):
    """The model and data settings must be the stored run's; the model's vocab_size comes from the data."""
    old = {**dataclasses.asdict(stored.model), **dataclasses.asdict(stored.data)}
    new = {**dataclasses.asdict(config.model), **dataclasses.asdict(config.data)}
    # The data's vocab_size (the cap) overwrites the model's (the result) in both dicts.
    diff = [f"--{k}={old[k]!r} (flags say {new[k]!r})" for k in sorted(old) if old[k] != new.get(k)]
    if diff:
        raise RnnLmError(f"--model_dir {model_dir} was trained with {', '.join(diff)}; "
                         "use the same settings to resume, or a new --model_dir")
