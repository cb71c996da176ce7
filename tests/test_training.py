"""The trainer: learning, exact evaluation, resume, and the model directory's guards."""

import dataclasses
import re
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import schedules
from rnn_lm import checkpoints
from rnn_lm import evaluation
from rnn_lm import train_step
from rnn_lm import training
from rnn_lm.config import Config, DataConfig, ModelConfig, TrainConfig
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.errors import RnnLmError

# A fixed order of 12 words, repeated: after one pass a model can predict every
# next word, so its perplexity can approach 1.
WORDS = "the cake which the children like was eaten by two small dogs".split()


def write_corpus(folder, lines_per_split=(60, 6, 6), words=WORDS):
    os.makedirs(folder, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), lines_per_split):
        with open(os.path.join(folder, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write(" ".join(words) + "\n" if n else "")
            for _ in range(n - 1):
                f.write(" ".join(words) + "\n")
    return str(folder)


def tiny_config(data_dir, **train):
    base = dict(batch_size=4, num_steps=6, epochs=1, optimizer="adam", learning_rate=0.01,
                log_every_steps=1000, sample_tokens=5, eval_batch_size=3)
    base.update(train)
    return Config(model=ModelConfig(cell="lstm", num_layers=1, hidden_size=24, embedding_size=16),
                  data=DataConfig(data_dir=data_dir), train=TrainConfig(**base))


def test_overfits_a_tiny_corpus_to_perplexity_near_one(tmp_path):
    data = write_corpus(tmp_path / "data")
    # One evaluation stream: several would each start from h_(0) = 0 mid-sentence.
    result = training.train(tiny_config(data, epochs=8, eval_batch_size=1), str(tmp_path / "run"), export=False)
    # 13 types: a unigram model is far from 1; a model that learned the cycle is near it.
    assert result.unigram_valid_perplexity > 10
    assert result.valid_perplexity < 1.15
    assert result.test_perplexity < 1.15
    losses = list(result.step_losses.values())
    assert losses[-1] < 0.1 * losses[0]


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    """Stopped at step 3 and resumed, the run's steps 4..8 (across an epoch edge) are unchanged."""
    data = write_corpus(tmp_path / "data", (16, 4, 4))
    cfg = tiny_config(data, epochs=3, max_steps=8, deterministic=True)
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, dropout=0.3))  # RNG state must resume too
    # 16 lines x 13 tokens = 208 tokens; 4 streams of 52, windows of 6 -> 8 per epoch... keep it
    # smaller so that step 8 lies in epoch 2:
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, num_steps=10))
    whole = training.train(cfg, str(tmp_path / "a"), export=False)
    first = training.train(cfg.replace(train=dataclasses.replace(cfg.train, max_steps=3)),
                           str(tmp_path / "b"), export=False)
    rest = training.train(cfg, str(tmp_path / "b"), export=False)
    assert sorted(first.step_losses) == [1, 2, 3]
    assert sorted(rest.step_losses) == [4, 5, 6, 7, 8]
    assert 1 in whole.valid_perplexities  # the run crossed an epoch boundary
    for step in range(1, 9):
        resumed = first.step_losses.get(step, rest.step_losses.get(step))
        assert resumed == whole.step_losses[step], f"step {step}"  # bit for bit on CPU
    assert rest.test_perplexity == whole.test_perplexity


def test_evaluator_scores_every_token_exactly(tmp_path):
    """One stream: perplexity equals one pass over the whole text, however it is windowed.

    With several streams each row starts from h_(0) = 0, so the reference is
    each row's own pass.
    """
    data = write_corpus(tmp_path / "data", (30, 5, 5))
    training.train(tiny_config(data, max_steps=5), str(tmp_path / "run"), export=False)
    config, vocab, model = checkpoints.load_model(str(tmp_path / "run"))
    ids = corpus_lib.load_corpus(config.data, vocab).valid
    stream = np.concatenate([[vocab.eos_id], ids])

    def nll(row):  # -log p of row[1:] given row[:-1], from h_(0) = 0, in one call
        logits, _ = model(tf.constant(row[None, :-1]))
        log_p = tf.nn.log_softmax(tf.cast(logits[0], tf.float64)).numpy()
        return -log_p[np.arange(len(row) - 1), row[1:]]

    reference = math.exp(nll(stream).mean())
    for num_steps in (7, 64):
        got = evaluation.Evaluator(model, 1, num_steps, vocab.eos_id).perplexity(ids)
        np.testing.assert_allclose(got, reference, rtol=1e-5)
    rows = np.array_split(np.arange(len(ids)), 3)  # 65 targets -> rows of 22, 22, 21
    per_row = np.concatenate([nll(stream[r[0]:r[-1] + 2]) for r in rows])
    got = evaluation.Evaluator(model, 3, 5, vocab.eos_id).perplexity(ids)
    np.testing.assert_allclose(got, math.exp(per_row.mean()), rtol=1e-5)


def test_model_dir_refuses_a_different_model(tmp_path):
    data = write_corpus(tmp_path / "data", (20, 3, 3))
    cfg = tiny_config(data, max_steps=2)
    training.train(cfg, str(tmp_path / "run"), export=False)
    before = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
    other = cfg.replace(model=dataclasses.replace(cfg.model, cell="gru"))
    with pytest.raises(RnnLmError, match="cell"):
        training.train(other, str(tmp_path / "run"), export=False)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == before


def test_bad_corpus_leaves_no_model_dir(tmp_path):
    data = write_corpus(tmp_path / "data", (1, 1, 1))  # 13 tokens: less than one batch
    with pytest.raises(RnnLmError, match="fewer than one batch"):
        training.train(tiny_config(data), str(tmp_path / "run"), export=False)
    assert not os.path.exists(tmp_path / "run")


def test_learning_rate_schedule():
    t = TrainConfig(learning_rate=20.0, lr_decay=0.5, decay_start_epoch=5)
    assert [schedules.learning_rate_at(t, e) for e in range(6)] == [20.0, 20.0, 20.0, 20.0, 10.0, 5.0]


def test_checkpoint_holds_every_variable(tmp_path):
    """Every layer's cell weights are saved and restored, not only the top-level ones."""
    data = write_corpus(tmp_path / "data", (20, 3, 3))
    run = str(tmp_path / "run")
    training.train(tiny_config(data, max_steps=2), run, export=False)
    path = tf.train.latest_checkpoint(os.path.join(run, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    _, _, model = checkpoints.load_model(run)
    names = [f"model/{v.path.split('/', 1)[1].replace('lstm_1', 'layer_1')}/.ATTRIBUTES/VARIABLE_VALUE"
             for v in model.variables]
    assert len(names) == len([n for n, _ in tf.train.list_variables(path) if n.startswith("model/")])
    for name, var in zip(names, model.variables):
        np.testing.assert_array_equal(reader.get_tensor(name), var.numpy(), err_msg=name)


def test_gradient_norm_counts_a_repeated_token_once(tmp_path):
    """The logged (and clipped) norm is that of the dense gradient, with repeated tokens summed."""
    import keras
    from rnn_lm.model import RNNLanguageModel
    model = RNNLanguageModel(ModelConfig(vocab_size=7, num_layers=1, hidden_size=5, embedding_size=4))
    ids = tf.constant([[3, 3, 3, 3], [3, 1, 3, 2]])
    step = train_step.TrainStep(model, keras.optimizers.SGD(0.0), batch_size=2, max_grad_norm=0)
    with tf.GradientTape() as tape:
        logits, _ = model(ids, model.zero_state(2), training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits))
    dense = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
    expected = np.sqrt(sum(np.sum(np.square(g.numpy().astype(np.float64))) for g in dense))
    np.testing.assert_allclose(float(step(ids, ids)["grad_norm"]), expected, rtol=1e-5)


@pytest.mark.parametrize("policy, expected", [("stop", "at step 1 (1 in a row)"), ("skip", "at step 3 (3 in a row)")])
def test_non_finite_updates_are_skipped_then_stop(tmp_path, policy, expected):
    """Weights near the float32 limit overflow: every loss is non-finite and no update is applied."""
    data = write_corpus(tmp_path / "data", (30, 3, 3))
    cfg = tiny_config(data, nan_policy=policy, max_nonfinite_steps=3)
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, init_scale=3e38))
    with pytest.raises(RnnLmError, match=re.escape(expected)):
        training.train(cfg, str(tmp_path / "run"), export=False)


def test_skipped_update_leaves_weights_and_state_unchanged():
    import keras
    from rnn_lm.model import RNNLanguageModel
    model = RNNLanguageModel(ModelConfig(vocab_size=7, num_layers=1, hidden_size=5, embedding_size=4))
    step = train_step.TrainStep(model, keras.optimizers.SGD(1.0), batch_size=2, max_grad_norm=0)
    ids = tf.constant([[1, 2, 3], [4, 5, 6]])
    step(ids, ids)  # a finite step: the state moves away from zero
    before = [v.numpy() for v in model.variables + step.carried_state]
    model.b_y.assign(tf.fill([7], np.nan))  # the next loss is NaN ...
    nan_b_y = model.b_y.numpy()
    metrics = step(ids, ids)
    assert not bool(metrics["applied"])
    after = [v.numpy() for v in model.variables + step.carried_state]
    for b, a, v in zip(before, after, model.variables + step.carried_state):
        if v is not model.b_y:  # ... and nothing else changed
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.b_y.numpy(), nan_b_y)


@pytest.mark.parametrize("error", [
    tf.errors.ResourceExhaustedError(None, None, "ckpt-3.data-00000-of-00001: No space left on device"),
    PermissionError(13, "Permission denied"),  # a read-only model directory
])
def test_a_disk_that_refuses_a_checkpoint_stops_cleanly(tmp_path, monkeypatch, error):
    """The third checkpoint write fails: a one-line error naming it, and ckpt-2 still resumes exactly."""
    data = write_corpus(tmp_path / "data", (30, 3, 3))
    cfg = tiny_config(data, epochs=5, max_steps=4, save_every_steps=1, deterministic=True)
    whole = training.train(cfg, str(tmp_path / "whole"), export=False)
    real_save, calls = tf.train.CheckpointManager.save, []

    def failing_save(manager, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise error
        return real_save(manager, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", failing_save)
    run = str(tmp_path / "run")
    with pytest.raises(RnnLmError, match=r"cannot write a checkpoint in .*checkpoints at step 3 \(.*(space|denied).*\); "
                                         r"the last complete one, ckpt-2, is intact"):
        training.train(cfg, run, export=False)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith("ckpt-2")
    rest = training.train(cfg, run, export=False)
    assert sorted(rest.step_losses) == [3, 4]
    assert [rest.step_losses[s] for s in (3, 4)] == [whole.step_losses[s] for s in (3, 4)]


def test_a_checkpoint_that_does_not_fit_config_json_is_refused(tmp_path):
    data = write_corpus(tmp_path / "data", (30, 3, 3))
    run = tmp_path / "run"
    training.train(tiny_config(data, max_steps=2), str(run), export=False)
    config = (run / "config.json").read_text()
    (run / "config.json").write_text(config.replace('"hidden_size": 24', '"hidden_size": 25'))
    with pytest.raises(RnnLmError, match=r"ckpt-2 does not fit the model of .*config.json \(lstm 1x25"):
        checkpoints.load_model(str(run))


def test_a_disk_that_refuses_the_model_dir_or_the_saved_model(tmp_path, monkeypatch):
    """Read-only at the start: nothing written, one line. Full at export: one line, the checkpoints kept."""
    data = write_corpus(tmp_path / "data", (30, 3, 3))
    cfg = tiny_config(data, max_steps=2)

    def read_only(self, model_dir):
        raise OSError(30, "Read-only file system", os.path.join(model_dir, "config.json.tmp"))

    with monkeypatch.context() as m:
        m.setattr(Config, "save", read_only)
        with pytest.raises(RnnLmError, match=r"cannot write to --model_dir .* \(Read-only file system\)"):
            training.train(cfg, str(tmp_path / "ro"))

    def disk_full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "variables.index; No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", disk_full)
    run = tmp_path / "full"
    with pytest.raises(RnnLmError, match=r"cannot write the SavedModel to .*saved_model \(variables.index; No space"):
        training.train(cfg, str(run))
    assert not (run / "saved_model").exists() and not [p for p in os.listdir(run) if p.startswith("tmp")]
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-2")
