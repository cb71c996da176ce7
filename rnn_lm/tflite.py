"""The TFLite (LiteRT) model: one step of the language model, for phones and small devices.

    model.tflite   step: ids int32 [B], state float32 [B, S, H] -> log_probs float32 [B, V],
                   state [B, S, H]; B is 1 as converted (an interpreter may resize it)
    vocab.txt      the vocabulary beside it: token i on line i (0 <unk>, 1 <eos>)

It is the SavedModel's ``step`` signature converted, with TFLite's built-in ops only:
no string ops, so the app tokenizes with vocab.txt and runs the loop itself, from the state
``start``: zeros, or (as the SavedModel's ``score`` does) its variable ``sentence_start`` [S, H]::

    state = start [1, S, H]; previous = <eos>        # every sentence starts from the context <eos>
    for token in sentence + [<eos>]:
        log_probs, state = step(ids=[previous], state=state)
        log p(sentence) += log_probs[0, token]; previous = token
"""

import os
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf

from rnn_lm.data import subword
from rnn_lm.data.tokenizers import get_tokenizer
from rnn_lm.data.vocab import VOCAB_FILE, Vocabulary
from rnn_lm.errors import RnnLmError, reason
from rnn_lm.export import ServingModule
from rnn_lm.files import write_atomically

TFLITE_FILE = "model.tflite"
LATENCY_STEPS = 200  # steps timed by step_latency


def export_tflite(model, vocab, config, directory, model_dir=None):
    """Writes ``directory``/model.tflite and vocab.txt beside it (and a subword model's subword.model,
    from ``model_dir``); returns the model's path.

    A disk that refuses them is an RnnLmError.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryDirectory() as staging:  # the SavedModel's vocabulary asset, unused by step
            vocab.save(staging)
            tokenizer = get_tokenizer(config.data.level, model_dir)
            module = ServingModule(model, os.path.join(staging, VOCAB_FILE), tokenizer)
            step = module.step.get_concrete_function()
            converter = tf.lite.TFLiteConverter.from_concrete_functions([step], module)
            # Built-in ops only: an app needs the LiteRT runtime alone, not TensorFlow's own ops.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            flatbuffer = converter.convert()
        path = os.path.join(directory, TFLITE_FILE)
        write_atomically(path, flatbuffer)
        vocab.save(directory)
        if tokenizer.level == "subword":  # the app cuts text with it
            write_atomically(os.path.join(directory, subword.MODEL_FILE), tokenizer.model_proto)
        return path
    except (OSError, tf.errors.OpError) as e:
        raise RnnLmError(f"cannot write the TFLite model to {directory} ({reason(e)})") from None


def interpreter(path):
    """The LiteRT interpreter (package ai-edge-litert) of ``path``; TensorFlow's own where it is absent."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=path)


class Stepper:
    """One token at a time through a model.tflite: ``log_probs, state = stepper(ids, state)``."""

    def __init__(self, path):
        self.runner = interpreter(path).get_signature_runner()
        self.state_shape = tuple(self.runner.get_input_details()["state"]["shape"])  # [1, S, H]

    def zero_state(self):
        return np.zeros(self.state_shape, np.float32)

    def __call__(self, ids, state):
        out = self.runner(ids=np.asarray(ids, np.int32), state=state)
        return out["log_probs"], out["state"]


def step_latency(path, steps=LATENCY_STEPS):
    """Median milliseconds of one step (batch 1, the state fed back) over ``steps`` steps, after 10
    untimed ones; the ids cycle through the vocabulary's first tokens."""
    stepper = Stepper(path)
    state, times = stepper.zero_state(), []
    for i in range(steps + 10):
        ids = np.array([Vocabulary.EOS_ID + i % 10], np.int32)
        start = time.perf_counter()
        _, state = stepper(ids, state)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[10:])
