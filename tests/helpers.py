"""Helpers shared by the test modules: corpora written to disk, tiny configs, a model with distinct
random weights, a sentence's log-probability by hand, and running the binaries.

Import them one way everywhere: ``from tests.helpers import ...`` (``python -m pytest`` puts the
repository root on sys.path).  Shared pytest fixtures live in ``tests/conftest.py``.  Nothing here
imports TensorFlow until a helper that needs it is called.
"""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from rnn_lm.config import Config, DataConfig, ModelConfig, TrainConfig

# ---------------------------------------------------------------------------
# Corpora on disk.

# A fixed order of 12 words, repeated: after one pass a model can predict every
# next word, so its perplexity can approach 1.
WORDS = "the cake which the children like was eaten by two small dogs".split()

# The shared corpora (PTB, Tiny Shakespeare) beside the checkout, when present; tests that need
# them skip without them.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_corpus(folder, lines_per_split=(60, 6, 6), words=WORDS):
    """train/valid/test.txt of ``words`` repeated, one sentence a line; returns the folder as str."""
    os.makedirs(folder, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), lines_per_split):
        with open(os.path.join(folder, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write(" ".join(words) + "\n" if n else "")
            for _ in range(n - 1):
                f.write(" ".join(words) + "\n")
    return str(folder)


def write_texts(folder, **texts):
    """``<split>.txt`` for each keyword, its text as given (str as UTF-8, bytes as they are); returns
    the folder as str."""
    os.makedirs(folder, exist_ok=True)
    for split, content in texts.items():
        with open(os.path.join(folder, f"{split}.txt"), "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(folder)


def write_splits(folder, train, held_out="a b\n"):
    """A corpus folder of ``train`` and the same small valid and test text."""
    return write_texts(folder, train=train, valid=held_out, test=held_out)


# ---------------------------------------------------------------------------
# Configs and runs.

def tiny_config(data_dir, **train):
    """A one-layer LSTM of 24 units on ``data_dir``; ``train`` overrides TrainConfig fields."""
    base = dict(batch_size=4, num_steps=6, epochs=1, optimizer="adam", learning_rate=0.01,
                log_every_steps=1000, sample_tokens=5, eval_batch_size=3)
    base.update(train)
    return Config(model=ModelConfig(cell="lstm", num_layers=1, hidden_size=24, embedding_size=16),
                  data=DataConfig(data_dir=data_dir), train=TrainConfig(**base))


def resume_config(data_dir):
    """A deterministic run of 6 steps with checkpoints at 2, 4, 6 (the ``reference_run`` fixture's)."""
    return tiny_config(data_dir, max_steps=6, save_every_steps=2, keep_checkpoints=5, deterministic=True)


def plus_config(data, **train):
    """ptb_small_plus's regularisers at toy size: SGD, plateau schedule, weight decay, averaging from
    epoch 2, tied embeddings, locked, input and embedding dropout."""
    # A threshold of 50 %: the rate halves after epoch 2, from the best validation perplexity kept
    # in the checkpoint.
    cfg = tiny_config(data, optimizer="sgd", learning_rate=1.0, lr_schedule="plateau", lr_decay=0.5,
                      plateau_threshold=0.5, decay_start_epoch=2, weight_decay=1e-4, average_start_epoch=2,
                      deterministic=True, num_steps=10, **train)
    return cfg.replace(model=dataclasses.replace(cfg.model, hidden_size=16, tie_embeddings=True, dropout=0.2,
                                                 input_dropout=0.3, locked_dropout=True, embedding_dropout=0.1))


def train_run(cfg, model_dir, **train_overrides):
    """``training.train`` without the SavedModel; keywords override TrainConfig fields."""
    from rnn_lm import training
    if train_overrides:
        cfg = cfg.replace(train=dataclasses.replace(cfg.train, **train_overrides))
    return training.train(cfg, str(model_dir), export=False)


def run_to_step_4(cfg, model_dir):
    """Trains ``resume_config``'s run to step 4 (checkpoints 2 and 4); returns the checkpoint folder."""
    first = train_run(cfg, model_dir, max_steps=4)
    assert sorted(first.step_losses) == [1, 2, 3, 4]
    return os.path.join(model_dir, "checkpoints")


def assert_resumed_from(result, step, reference_losses):
    """A resumed run of ``resume_config`` took steps step+1..6, each loss bit for bit the reference's."""
    assert sorted(result.step_losses) == list(range(step + 1, 7))
    for s, loss in result.step_losses.items():
        assert loss == reference_losses[s], f"step {s}"  # bit for bit: the same state was restored


# ---------------------------------------------------------------------------
# Streamed (--stream_train) corpora.

def streamed(data_dir, model_dir, vocab=None, **data):
    """The StreamedCorpus of ``data_dir`` (ids file under ``model_dir``), not yet encoded."""
    from rnn_lm.data import corpus as corpus_lib
    config = DataConfig(data_dir=data_dir, stream_train=True, **data)
    config.validate()
    return corpus_lib.load_streamed_corpus(config, str(model_dir), vocab)


def encode(corpus, **data):
    """Writes the ids file of a streamed corpus; returns the corpus."""
    from rnn_lm.data.tokenizers import get_tokenizer
    config = DataConfig(**data)
    corpus.train.ensure_encoded(corpus.vocab, get_tokenizer(config.level), config.encoding_errors)
    return corpus


# ---------------------------------------------------------------------------
# Models.

def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def make_model(seed=0, backward="auto", **overrides):
    """A tiny model (|V| 7, 2-layer LSTM of 4 units, embedding 3 unless overridden) whose every variable,
    biases included, holds distinct random values."""
    from rnn_lm.model import RNNLanguageModel
    config = ModelConfig(**{**dict(vocab_size=7, cell="lstm", num_layers=2, hidden_size=4,
                                   embedding_size=3), **overrides})
    config.validate()
    model = RNNLanguageModel(config, backward=backward)
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(rng.uniform(-0.7, 0.7, v.shape))
    return model


def mixed_twins(cell, compute_dtype):
    """A float32 model and a twin computing in ``compute_dtype`` (bfloat16, float16) with the same weights:
    |V| 40, two layers of 16 units, embedding 12."""
    import keras
    from rnn_lm.model import RNNLanguageModel
    config = ModelConfig(cell=cell, vocab_size=40, num_layers=2, hidden_size=16, embedding_size=12)
    keras.utils.set_random_seed(1)
    full = RNNLanguageModel(config)
    mixed = RNNLanguageModel(config, compute_dtype=compute_dtype)
    for a, b in zip(full.variables, mixed.variables, strict=True):
        b.assign(a)
    return full, mixed


def sentence_log_prob(model, vocab, sentence, start=None):
    """(log p(sentence <eos>), its number of tokens) from one full-sequence call of the model, in float64,
    starting from the context <eos> and the state ``start`` (one row's, per layer; None: zero): the
    reference for every sentence scorer."""
    import tensorflow as tf
    from rnn_lm.data.tokenizers import WordTokenizer
    ids = vocab.encode(WordTokenizer().tokenize(sentence))
    inputs = np.concatenate([[vocab.eos_id], ids[:-1]])
    state = None if start is None else tf.nest.map_structure(lambda s: s[None], start)
    logits, _ = model(tf.constant(inputs[None]), state)
    log_p = tf.nn.log_softmax(tf.cast(logits[0], tf.float64)).numpy()
    return log_p[np.arange(len(ids)), ids].sum(), len(ids)


# ---------------------------------------------------------------------------
# The binaries, in processes of their own.

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY = ["--num_layers=1", "--hidden_size=16", "--embedding_size=8", "--batch_size=4", "--num_steps=5",
        "--optimizer=adam", "--learning_rate=0.01", "--sample_tokens=6"]
ROOT = str(Path(__file__).resolve().parents[1])


def run(binary, *args, input=None, timeout=300):
    """``python -m rnn_lm.bin.<binary> ARGS``, or of the module ``binary`` when it is a dotted name, in
    a process of its own forked from one that has imported TensorFlow already (tests/launcher.py says
    what that changes); ``input``: text for its stdin (else it reads an empty one).  Returns a
    ``subprocess.CompletedProcess`` with the text of stdout and stderr."""
    module = binary if "." in binary else f"rnn_lm.bin.{binary}"
    return _LAUNCHER.run("module", module, args, input, timeout)


def run_script(name, *args, input=None, timeout=300, memory_limit=None):
    """The installed console script ``rnn-lm-<name> ARGS``, as ``run`` runs a module; ``memory_limit``
    (bytes) caps its address space."""
    script = os.path.join(os.path.dirname(sys.executable), f"rnn-lm-{name}")
    return _LAUNCHER.run("script", script, args, input, timeout, memory_limit)


def run_fresh(binary, *args, input=None, env=ENV, timeout=300):
    """``python -m rnn_lm.bin.<binary> ARGS`` in a fresh interpreter, for what ``run`` cannot show: what
    TensorFlow's import writes, or an environment it reads."""
    module = binary if "." in binary else f"rnn_lm.bin.{binary}"
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, input=input or "")


class _Launcher:
    """The test process's tests/launcher.py, started at the first run and kept for the rest."""

    def __init__(self):
        self.proc = None

    def run(self, kind, target, args, input, timeout, memory_limit=None):
        import json
        import tempfile
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.launcher"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
        with tempfile.TemporaryDirectory() as folder:
            files = {name: os.path.join(folder, name) for name in ("stdin", "stdout", "stderr")}
            for name, text in (("stdin", input or ""), ("stdout", ""), ("stderr", "")):
                with open(files[name], "w", encoding="utf-8") as f:
                    f.write(text)
            args = [str(a) for a in args]
            request = dict(kind=kind, target=target, args=args, env=ENV, cwd=os.getcwd(), timeout=timeout,
                           memory_limit=memory_limit, **files)
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
            if not reply:
                raise RuntimeError(f"the test launcher ended (status {self.proc.wait()}) running {target}")
            status = json.loads(reply)["status"]
            out = {}
            for name in ("stdout", "stderr"):
                with open(files[name], encoding="utf-8", errors="replace") as f:
                    out[name] = f.read()
        if status == -9:
            raise subprocess.TimeoutExpired([target, *args], timeout, out["stdout"], out["stderr"])
        return subprocess.CompletedProcess([target, *args], status, out["stdout"], out["stderr"])


_LAUNCHER = _Launcher()


def assert_one_line_error(proc, *needles):
    """A non-zero exit, no traceback, and the last error line names every needle."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if "error" in l.lower()]
    assert errors, proc.stderr
    for needle in needles:
        assert needle in errors[-1], errors[-1]
