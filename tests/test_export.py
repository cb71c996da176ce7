"""The SavedModel (rnn_lm.export): strings in and out, served in a fresh process where rnn_lm cannot be
imported, against the in-process model: sentence scores against one full-sequence call in float64, greedy
generation against rnn_lm.decoding, tokenize/detokenize/step against the vocabulary and ``model.step``, the
corpus perplexity token by token through ``step`` against the Evaluator; ``saved_model_cli show`` lists the
signatures; a killed export's staging folder goes.  The binaries that use it are in test_bin_export.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import checkpoints
from rnn_lm import adaptation, decoding, evaluation, export, training
from rnn_lm.data import corpus as corpus_lib
from tests.helpers import ENV, resume_config, sentence_log_prob, tiny_config, train_run, write_corpus

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
documents = tf.constant([open(sys.argv[3], encoding="utf-8").read(), "the cake\r\nwhich\n"])
cached = m.signatures["score_document"](documents=documents, cache_size=tf.constant(4),
                                        cache_theta=tf.constant(0.5), cache_lambda=tf.constant(0.25))
plain = m.signatures["score_document"](documents=documents, cache_size=tf.constant(0),
                                       cache_theta=tf.constant(0.5), cache_lambda=tf.constant(0.25))
print(json.dumps({"stream_log_prob": log_prob,
    "document_log_prob": [cached["log_prob"].numpy().tolist(), plain["log_prob"].numpy().tolist()],
    "document_tokens": cached["num_tokens"].numpy().tolist(),
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
    start = evaluation.sentence_start(config, vocab, model, model_dir)
    stream = corpus_lib.load_corpus(config.data, vocab).test
    proc = subprocess.run([sys.executable, "-c", CLIENT, os.path.join(model_dir, "saved_model"),
                           json.dumps(stream.tolist()), os.path.join(data, "test.txt")],
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return vocab, model, {**json.loads(proc.stdout.splitlines()[-1]), "stream": stream, "start": start}


def test_score_matches_the_model(exported):
    """Each sentence from the boundary state training computed (``evaluation.sentence_start``)."""
    vocab, model, served = exported
    for i, sentence in enumerate(["the cake which", "dogs zebra"]):
        expected, n = sentence_log_prob(model, vocab, sentence, served["start"])
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
                          timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("serving_default", "generate", "score", "score_document", "step", "tokenize", "detokenize"):
        assert f"signature_def['{name}']" in proc.stdout


def test_corpus_perplexity_through_the_saved_model_equals_the_evaluator(exported):
    """Exported-model parity: the test split's perplexity, token by token through `step`."""
    vocab, model, served = exported
    stream = served["stream"]
    served_ppl = np.exp(-served["stream_log_prob"] / len(stream))
    expected = evaluation.Evaluator(model, 1, 7, vocab.eos_id).perplexity(stream)
    np.testing.assert_allclose(served_ppl, expected, rtol=1e-4)


def test_score_document_is_the_cache_evaluator_of_each_document(exported):
    """``score_document``: each document a stream from the zero state with its own cache; with no
    cache, ``Evaluator``'s perplexity (a second document of two lines, one ending in \\r\\n)."""
    vocab, model, served = exported
    short = np.array(vocab.encode(["the", "cake", "<eos>", "which", "<eos>"]), np.int32)
    assert served["document_tokens"] == [len(served["stream"]), len(short)]
    for i, ids in enumerate((served["stream"], short)):
        cached = adaptation.CacheEvaluator(model, 1, 7, vocab.eos_id, size=4, theta=0.5, lam=0.25)
        np.testing.assert_allclose(-served["document_log_prob"][0][i], cached.token_nll(ids).sum(), rtol=1e-5)
        plain = evaluation.Evaluator(model, 1, 7, vocab.eos_id).mean_cross_entropy(ids) * len(ids)
        np.testing.assert_allclose(-served["document_log_prob"][1][i], plain, rtol=1e-5)


def test_export_cleans_up_after_a_killed_export(tmp_path):
    """A staging folder left by a killed export goes; a leftover saved_model.old blocks nothing."""
    train_run(resume_config(write_corpus(tmp_path / "data", (40, 3, 3))), tmp_path / "run", max_steps=2)
    config, vocab, model = checkpoints.load_model(str(tmp_path / "run"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "run" / f"{export.STAGING_PREFIX}{dead.pid}-abc"
    os.makedirs(stale / "saved_model")
    os.makedirs(tmp_path / "run" / "saved_model.old" / "variables")
    target = str(tmp_path / "run" / "saved_model")
    for _ in range(2):  # the second replaces the first
        assert export.export_saved_model(model, vocab, config, target) == target
    assert not stale.exists()
    assert sorted(n for n in os.listdir(tmp_path / "run") if "saved_model" in n) == ["saved_model", "saved_model.old"]
    assert os.path.isfile(os.path.join(target, "saved_model.pb"))
