"""Serving: the SavedModel as TF Serving calls it, and the TFLite model in the LiteRT interpreter.

TF Serving sends only what a signature needs, batches row-format requests ({"instances": [...]})
along a new first axis of every input, and may send a scalar string; the client below does the
same in a Python where rnn_lm cannot be imported.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import checkpoints, export, tflite, training
from rnn_lm.config import GENERATION_DEFAULTS, Config, DataConfig, ModelConfig, TrainConfig
from rnn_lm.errors import RnnLmError
from tests.helpers import ENV, run, write_corpus

SENTENCE = "the cake which the children like was eaten by two small dogs"

# Runs in a fresh interpreter with rnn_lm made unimportable; prints one JSON line.
CLIENT = r"""
import json, sys
sys.modules["rnn_lm"] = None
import numpy as np
import tensorflow as tf

m = tf.saved_model.load(sys.argv[1])
defaults = json.loads(sys.argv[2])
sig = m.signatures


def plain(x):
    # Strings as TF Serving's JSON has them.
    return x.decode() if isinstance(x, bytes) else [plain(v) for v in x] if isinstance(x, list) else x


def predict(signature, body):
    # TF Serving's REST predict of a row-format body: each input's values over the instances
    # stacked along a new first axis (a bare value per instance when the signature has one input);
    # every output must then have that batch first, and is cut back into one prediction per instance.
    fn, rows = sig[signature], json.loads(body)["instances"]
    specs = fn.structured_input_signature[1]
    rows = [r if isinstance(r, dict) else {next(iter(specs)): r} for r in rows]
    out = fn(**{name: tf.constant([r[name] for r in rows], spec.dtype) for name, spec in specs.items()})
    assert all(v.shape[0] == len(rows) for v in out.values()), {k: v.shape for k, v in out.items()}
    return [{k: plain(np.asarray(v[i]).tolist()) for k, v in out.items()} for i in range(len(rows))]


def lists(out):
    return {k: plain(v.numpy().tolist()) for k, v in out.items()}


prompts = tf.constant(["the cake", "dogs"])
result = {
    "inputs": {name: sorted(sig[name].structured_input_signature[1]) for name in sig},
    "default": lists(sig["serving_default"](prompts=prompts)),
    "explicit": lists(sig["generate"](
        prompts=prompts, max_tokens=tf.constant(defaults["max_tokens"]),
        temperature=tf.constant(defaults["temperature"], tf.float32), top_k=tf.constant(defaults["top_k"]),
        top_p=tf.constant(defaults["top_p"], tf.float32), seed=tf.constant(defaults["seed"], tf.int64))),
    "scalar_prompt": lists(sig["serving_default"](prompts=tf.constant("the cake"))),
    "one_prompt": lists(sig["serving_default"](prompts=tf.constant(["the cake"]))),
    "scalar_sentence": lists(sig["score"](sentences=tf.constant("the cake zebra"))),
    "scalar_text": lists(sig["tokenize"](text=tf.constant("the cake"))),
    "score": lists(sig["score"](sentences=tf.constant(["the cake which", "dogs zebra zebra", ""]))),
}
try:
    sig["score"](sentences=tf.constant([["the cake"]]))
except tf.errors.InvalidArgumentError as e:
    result["rank_2"] = str(e)

# The state is batch-major: row b of a batch steps exactly as that row alone.
zero = sig["zero_state"](batch_size=tf.constant(3))["state"]
result["zero_state_shape"] = zero.shape.as_list()
streams = [[1, 2, 3, 4], [1, 5, 6, 7]]
state, alone = zero[:2], [zero[:1], zero[:1]]
batched_lp, alone_lp = [], []
for t in range(4):
    out = sig["step"](ids=tf.constant([s[t] for s in streams]), state=state)
    state = out["state"]
    batched_lp.append(out["log_probs"].numpy())
    row = []
    for b in range(2):
        one = sig["step"](ids=tf.constant([streams[b][t]]), state=alone[b])
        alone[b] = one["state"]
        row.append(one["log_probs"].numpy()[0])
    alone_lp.append(np.stack(row))
result["batch_vs_alone"] = float(np.abs(np.array(batched_lp) - np.array(alone_lp)).max())

# Row-format request bodies, as curl would send them.
result["rows_default"] = predict("serving_default", '{"instances": [{"prompts": "the cake"}, {"prompts": "dogs"}]}')
result["rows_score"] = predict("score", '{"instances": ["the cake which", "dogs zebra zebra", ""]}')
zero_row = json.dumps(sig["zero_state"](batch_size=tf.constant(1))["state"][0].numpy().tolist())
result["rows_step"] = predict("step", '{"instances": [{"ids": 1, "state": %s}, {"ids": 5, "state": %s}]}'
                              % (zero_row, zero_row))
result["columns_step"] = lists(sig["step"](ids=tf.constant([1, 5]), state=zero[:2]))
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    config = Config(model=ModelConfig(cell="lstm", num_layers=2, hidden_size=16, embedding_size=8),
                    data=DataConfig(data_dir=write_corpus(root / "data", (30, 3, 3))),
                    train=TrainConfig(batch_size=4, num_steps=6, epochs=1, max_steps=30, optimizer="adam",
                                      learning_rate=0.01, log_every_steps=1000, sample_tokens=5,
                                      eval_batch_size=3))
    training.train(config, str(root / "run"))  # ends by writing run/saved_model
    return str(root / "run")


@pytest.fixture(scope="module")
def served(model_dir):
    proc = subprocess.run([sys.executable, "-c", CLIENT, os.path.join(model_dir, "saved_model"),
                           json.dumps(GENERATION_DEFAULTS)], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_serving_default_needs_only_the_prompts_and_uses_the_generation_defaults(served):
    assert served["inputs"]["serving_default"] == ["prompts"]
    assert served["inputs"]["generate"] == ["max_tokens", "prompts", "seed", "temperature", "top_k", "top_p"]
    assert served["default"] == served["explicit"]
    assert len(served["default"]["continuations"]) == 2


def test_a_scalar_string_is_a_batch_of_one_and_a_matrix_is_refused(served):
    assert served["scalar_prompt"] == served["one_prompt"]
    assert len(served["scalar_prompt"]["continuations"]) == 1
    assert served["scalar_sentence"]["num_tokens"] == [4] and served["scalar_sentence"]["num_unknown"] == [1]
    assert served["scalar_text"]["lengths"] == [2]
    assert "sentences must be a string or a vector of strings [B]" in served["rank_2"]


def test_score_counts_the_unknown_words(served):
    score = served["score"]
    assert score["num_tokens"] == [4, 4, 1]  # <eos> included
    assert score["num_unknown"] == [0, 2, 0]
    assert set(served["inputs"]["score"]) == {"sentences"}


def test_the_state_is_batch_major(served, model_dir):
    config, _, _ = checkpoints.load_model(model_dir)
    layers = config.model.num_layers * 2  # h and c of each LSTM layer
    assert served["zero_state_shape"] == [3, layers, config.model.hidden_size]
    assert served["batch_vs_alone"] < 1e-5


def test_row_format_requests_equal_the_columnar_calls(served):
    columns = served["default"]
    for i, row in enumerate(served["rows_default"]):
        assert row["continuations"] == columns["continuations"][i]
        assert row["lengths"] == columns["lengths"][i]
    for i, row in enumerate(served["rows_score"]):
        assert {k: row[k] for k in ("num_tokens", "num_unknown")} == \
            {k: served["score"][k][i] for k in ("num_tokens", "num_unknown")}
        assert row["log_prob"] == pytest.approx(served["score"]["log_prob"][i], rel=1e-6)
    for i, row in enumerate(served["rows_step"]):
        np.testing.assert_allclose(row["log_probs"], served["columns_step"]["log_probs"][i], atol=1e-6)
        np.testing.assert_allclose(row["state"], served["columns_step"]["state"][i], atol=1e-6)


def test_saved_model_cli_runs_serving_default_with_the_prompts_alone(model_dir):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed beside this interpreter")
    outputs = []
    for prompts in ('["the"]', '"the"'):  # a vector, and a scalar: a batch of one
        proc = subprocess.run([cli, "run", "--dir", os.path.join(model_dir, "saved_model"), "--tag_set", "serve",
                               "--signature_def", "serving_default", "--input_exprs", f"prompts={prompts}"],
                              capture_output=True, text=True, env=ENV, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert re.search(r"continuations:\n\[b'[^']*'\]\n", proc.stdout), proc.stdout  # one continuation
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]


def test_a_saved_model_with_the_old_state_layout_is_refused(tmp_path):
    class OldLayout(tf.Module):  # the signatures rnn_lm wrote before the state was [B, S, H]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def tokenize(self, text):
            return {"ids": tf.zeros([1, 1], tf.int32), "lengths": tf.ones([1], tf.int32)}

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="batch_size")])
        def zero_state(self, batch_size):
            return {"state": tf.zeros([2, batch_size, 4])}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids"),
                                      tf.TensorSpec([None, None, None], tf.float32, name="state")])
        def step(self, ids, state):
            return {"log_probs": tf.zeros([tf.shape(ids)[0], 3]), "state": state}

    old = OldLayout()
    path = str(tmp_path / "old")
    tf.saved_model.save(old, path, signatures={"tokenize": old.tokenize, "zero_state": old.zero_state,
                                               "step": old.step})
    with pytest.raises(RnnLmError, match=r"written by an older rnn_lm \(its step state is \[S, B, H\].*rnn-lm-export"):
        export.saved_model_cross_entropy(path, ["the cake"])


@pytest.fixture(scope="module")
def tflite_export(model_dir):
    proc = run("export", f"--model_dir={model_dir}", "--format=tflite", "--measure")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return os.path.join(model_dir, "tflite"), proc


def test_tflite_export_writes_the_model_and_the_vocabulary_and_measures_it(tflite_export, model_dir):
    folder, proc = tflite_export
    stdout = proc.stdout
    assert "XNNPACK" not in proc.stderr  # LiteRT's notice, held back without --verbosity
    assert sorted(os.listdir(folder)) == ["model.tflite", "vocab.txt"]
    with open(os.path.join(folder, "vocab.txt"), "rb") as a, open(os.path.join(model_dir, "vocab.txt"), "rb") as b:
        assert a.read() == b.read()
    size = os.path.getsize(os.path.join(folder, "model.tflite"))
    assert f"{size:,} bytes" in stdout and "ms per token (median of 200 steps, batch 1)" in stdout, stdout


def test_tflite_model_matches_the_saved_model_over_a_sentence(tflite_export, model_dir):
    """The LiteRT interpreter, token by token over a whole sentence, against the SavedModel's step."""
    folder, _ = tflite_export
    vocab = [line.rstrip("\n") for line in open(os.path.join(folder, "vocab.txt"), encoding="utf-8")]
    words = (SENTENCE + " small zebra").split()  # zebra is not in the vocabulary: <unk>, id 0
    ids = [vocab.index(w) if w in vocab else 0 for w in words] + [1]  # <eos> ends the sentence
    stepper = tflite.Stepper(os.path.join(folder, "model.tflite"))
    served = tf.saved_model.load(os.path.join(model_dir, "saved_model"))
    signatures = served.signatures
    assert stepper.zero_state().shape == tuple(signatures["zero_state"](batch_size=tf.constant(1))["state"].shape)
    # A sentence scored on its own starts from the SavedModel's sentence start, as score's do.
    saved_state = served.sentence_start[None]
    lite_state = saved_state.numpy()
    previous, total = 1, 0.0
    for token in ids:
        lite, lite_state = stepper([previous], lite_state)
        saved = signatures["step"](ids=tf.constant([previous]), state=saved_state)
        saved_state = saved["state"]
        np.testing.assert_allclose(lite, saved["log_probs"].numpy(), atol=1e-4)
        np.testing.assert_allclose(lite_state, saved_state.numpy(), atol=1e-4)
        total += float(lite[0, token])
        previous = token
    score = signatures["score"](sentences=tf.constant([" ".join(words)]))
    assert score["num_unknown"].numpy().tolist() == [1]
    assert total == pytest.approx(float(score["log_prob"][0]), abs=1e-4)


def test_export_format_and_measure_errors_are_one_line(model_dir):
    for args, needle in [(["--format=onnx"], "onnx"), (["--measure"], "--measure needs --format=tflite")]:
        proc = run("export", f"--model_dir={model_dir}", *args)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
        assert errors and needle in errors[-1], proc.stderr
