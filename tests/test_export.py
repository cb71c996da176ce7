"""The SavedModel: strings in and out, served in a process where rnn_lm cannot be imported."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import checkpoints
from rnn_lm import evaluation
from rnn_lm import decoding, training
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.data.tokenizers import WordTokenizer
from test_training import tiny_config, write_corpus

# Runs in a fresh interpreter with rnn_lm made unimportable.
CLIENT = r"""
import json, sys
sys.modules["rnn_lm"] = None
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
score = m.signatures["score"](sentences=tf.constant(["the cake which", "dogs zebra"]))
gen = m.signatures["generate"](prompts=tf.constant(["the cake", ""]), max_tokens=tf.constant(6),
                               temperature=tf.constant(0.0), top_k=tf.constant(0),
                               top_p=tf.constant(1.0), seed=tf.constant(0, tf.int64))
tok = m.signatures["tokenize"](text=tf.constant(["the cake zebra"]))
detok = m.signatures["detokenize"](ids=tok["ids"], lengths=tok["lengths"])
state = m.signatures["zero_state"](batch_size=tf.constant(1))["state"]
step = m.signatures["step"](ids=tf.constant([1]), state=state)
# The corpus perplexity through `step`, state carried, from the start context <eos> (id 1).
stream = json.loads(sys.argv[2])
state, log_prob, previous = m.signatures["zero_state"](batch_size=tf.constant(1))["state"], 0.0, 1
for token in stream:
    out = m.signatures["step"](ids=tf.constant([previous]), state=state)
    log_prob += float(out["log_probs"][0, token])
    state, previous = out["state"], token
print(json.dumps({"stream_log_prob": log_prob,
    "log_prob": score["log_prob"].numpy().tolist(), "num_tokens": score["num_tokens"].numpy().tolist(),
    "perplexity": score["perplexity"].numpy().tolist(),
    "continuations": [s.decode() for s in gen["continuations"].numpy()],
    "ids": gen["ids"].numpy().tolist(), "lengths": gen["lengths"].numpy().tolist(),
    "tokenized": tok["ids"].numpy().tolist(), "detokenized": detok["text"].numpy()[0].decode(),
    "step_log_probs": step["log_probs"].numpy()[0].tolist()}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = write_corpus(root / "data", (30, 3, 3))
    model_dir = str(root / "run")
    training.train(tiny_config(data, max_steps=40), model_dir)
    config, vocab, model = checkpoints.load_model(model_dir)
    stream = corpus_lib.load_corpus(config.data, vocab).test
    proc = subprocess.run([sys.executable, "-c", CLIENT, os.path.join(model_dir, "saved_model"),
                           json.dumps(stream.tolist())],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return vocab, model, {**json.loads(proc.stdout.splitlines()[-1]), "stream": stream}


def log_prob(model, vocab, sentence):
    ids = vocab.encode(WordTokenizer().tokenize(sentence))
    inputs = np.concatenate([[vocab.eos_id], ids[:-1]])
    logits, _ = model(tf.constant(inputs[None]))
    log_p = tf.nn.log_softmax(tf.cast(logits[0], tf.float64)).numpy()
    return log_p[np.arange(len(ids)), ids].sum(), len(ids)


def test_score_matches_the_model(exported):
    vocab, model, served = exported
    for i, sentence in enumerate(["the cake which", "dogs zebra"]):
        expected, n = log_prob(model, vocab, sentence)
        assert served["num_tokens"][i] == n
        np.testing.assert_allclose(served["log_prob"][i], expected, rtol=1e-4)
        np.testing.assert_allclose(served["perplexity"][i], np.exp(-expected / n), rtol=1e-4)


def test_greedy_generation_matches_in_process_decoding(exported):
    vocab, model, served = exported
    prompt = [vocab.eos_id] + list(vocab.encode(["the", "cake"]))
    ids, lengths = decoding.sample(model, tf.constant([prompt]), tf.constant([3]), 6, 0.0, 0, vocab.eos_id)
    n = int(lengths[0])  # a batch's ids are as wide as its longest continuation: compare the tokens produced
    assert served["lengths"][0] == n
    assert served["ids"][0][:n] == ids[0, :n].numpy().tolist()
    words = [w for w in vocab.decode(ids[0, :int(lengths[0])].numpy()) if w != "<eos>"]
    assert served["continuations"][0] == " ".join(words)


def test_tokenize_detokenize_and_step(exported):
    vocab, model, served = exported
    assert served["tokenized"] == [list(vocab.encode(["the", "cake", "zebra"]))]
    assert served["detokenized"] == "the cake <unk>"
    logits, _ = model.step(tf.constant([vocab.eos_id]), model.zero_state(1))
    np.testing.assert_allclose(served["step_log_probs"], tf.nn.log_softmax(logits)[0].numpy(), atol=1e-5)


def test_saved_model_cli_shows_the_signatures(exported, tmp_path_factory):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed beside this interpreter")
    path = next(tmp_path_factory.getbasetemp().glob("export*/run/saved_model"))
    proc = subprocess.run([cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("serving_default", "generate", "score", "step", "tokenize", "detokenize"):
        assert f"signature_def['{name}']" in proc.stdout


def test_corpus_perplexity_through_the_saved_model_equals_the_evaluator(exported):
    """Exported-model parity: the test split's perplexity, token by token through `step`."""
    vocab, model, served = exported
    stream = served["stream"]
    served_ppl = np.exp(-served["stream_log_prob"] / len(stream))
    expected = evaluation.Evaluator(model, 1, 7, vocab.eos_id).perplexity(stream)
    np.testing.assert_allclose(served_ppl, expected, rtol=1e-4)
