"""The regularisers of ptb_small_plus: locked and embedding dropout, weight decay, the plateau
schedule and averaged SGD, each against a hand computation or a NumPy reference."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import schedules
from rnn_lm import checkpoints
from rnn_lm import evaluation
from rnn_lm import train_step
from rnn_lm import training
from rnn_lm.config import ModelConfig
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.errors import RnnLmError
from rnn_lm.model import RNNLanguageModel
from rnn_lm.model_dir import prepare

from test_model import make_model, np_lstm_lm, params
from test_training import tiny_config, write_corpus

SEED = tf.constant([3, 4], tf.int64)


@pytest.mark.parametrize("locked", [True, False])
def test_locked_dropout_keeps_one_mask_for_the_window(locked):
    model = make_model(dropout=0.5, locked_dropout=locked)
    x = tf.ones([4, 9, 300])
    y = model._dropout(x, 0.5, 1, SEED).numpy()
    assert set(np.unique(y)) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    assert abs(np.mean(y == 0) - 0.5) < 0.03
    same_over_time = all(np.array_equal(y[:, t], y[:, 0]) for t in range(9))
    assert same_over_time == locked  # per-step masks differ from step to step
    # Each stream draws its own mask.
    assert not np.array_equal(y[0, 0], y[1, 0])


def test_embedding_dropout_drops_word_types():
    p = 0.3
    model = make_model(vocab_size=1000, embedding_size=5, embedding_dropout=p)
    ids = tf.constant(np.random.default_rng(0).integers(0, 1000, (8, 50)), tf.int32)
    x = model.embed(ids)
    y = model._embedding_dropout(ids, x, SEED).numpy()
    x, ids = x.numpy(), ids.numpy()
    kept = np.all(np.isclose(y, x / (1 - p), rtol=1e-6), axis=-1)
    dropped = np.all(y == 0, axis=-1)
    assert np.all(kept ^ dropped)  # each position: the whole vector kept (scaled) or zero
    # A word is dropped everywhere in the step or nowhere.
    for word in np.unique(ids):
        assert len(set(dropped[ids == word])) == 1, word
    rate = np.mean([dropped[ids == w][0] for w in np.unique(ids)])
    assert abs(rate - p) < 0.07  # about 990 types drawn


def test_dropout_variants_only_in_training():
    model = make_model(dropout=0.4, input_dropout=0.6, locked_dropout=True, embedding_dropout=0.2,
                       embedding_size=4, hidden_size=4, tie_embeddings=True)
    ids = tf.constant(np.random.default_rng(1).integers(0, 7, (2, 5)), tf.int32)
    want, _ = np_lstm_lm(params(model), ids.numpy(), 2, tied=True)
    np.testing.assert_allclose(model(ids, training=False)[0].numpy(), want, rtol=1e-5, atol=1e-5)
    a = model(ids, training=True, dropout_seed=SEED)[0].numpy()
    np.testing.assert_array_equal(a, model(ids, training=True, dropout_seed=SEED)[0].numpy())
    assert np.max(np.abs(a - want)) > 1e-2


def test_input_dropout_defaults_to_dropout():
    assert ModelConfig(dropout=0.3).input_dropout_rate == 0.3
    assert ModelConfig(dropout=0.3, input_dropout=0.5).input_dropout_rate == 0.5
    assert ModelConfig(dropout=0.3, input_dropout=0.0).input_dropout_rate == 0.0


@pytest.mark.parametrize("bad, needle", [
    (dict(embedding_dropout=1.0), "model.embedding_dropout"), (dict(input_dropout=1.0), "model.input_dropout"),
    (dict(embedding_dropout=0.1, embedding_size=0), "needs an embedding")])
def test_bad_dropout_settings(bad, needle):
    with pytest.raises(RnnLmError, match=needle):
        ModelConfig(vocab_size=7, **bad).validate()


def test_weight_decay_adds_lambda_w_to_every_gradient():
    """One SGD step with decay lambda moves every weight by lr * lambda * w further than without."""
    lr, lam = 0.5, 0.1
    config = ModelConfig(vocab_size=7, num_layers=1, hidden_size=5, embedding_size=4)
    ids = tf.constant([[1, 2, 3, 1], [4, 5, 6, 4]])
    updated = []
    for decay in (0.0, lam):
        keras.utils.set_random_seed(0)
        model = RNNLanguageModel(config)
        start = [v.numpy().astype(np.float64) for v in model.trainable_variables]
        step = train_step.TrainStep(model, keras.optimizers.SGD(lr), batch_size=2, max_grad_norm=0,
                                  weight_decay=decay)
        step(ids[:, :-1], ids[:, 1:])
        updated.append([v.numpy().astype(np.float64) for v in model.trainable_variables])
    for w0, plain, decayed in zip(start, *updated):
        np.testing.assert_allclose(plain - decayed, lr * lam * w0, rtol=1e-4, atol=1e-7)


def test_plateau_schedule_by_hand(tmp_path):
    """lr 20, x0.25 after an epoch that improves valid perplexity by less than 1 %, from epoch 4 on."""
    cfg = tiny_config(write_corpus(tmp_path / "data", (4, 1, 1)), learning_rate=20.0, lr_schedule="plateau",
                      lr_decay=0.25, plateau_threshold=0.01, decay_start_epoch=4)
    cfg, corpus = prepare(cfg, str(tmp_path / "run"))
    trainer = training.Trainer(cfg, str(tmp_path / "run"), corpus.vocab)
    rates = []
    # After epoch 1: the first best. 2: 0.5 % better, but epoch 3 keeps the rate. 3: 0.5 % better:
    # decay. 4: 10 % better. 5: worse than the best: decay. 6: 2 % better than the best (89.1).
    for epoch, ppl in enumerate([100.0, 99.5, 99.0, 89.1, 95.0, 87.3]):
        trainer.learning_rate.after_epoch(epoch, ppl)
        rates.append(trainer.learning_rate.at(epoch + 1))
    assert rates == [20.0, 20.0, 5.0, 5.0, 1.25, 1.25]
    assert float(trainer.learning_rate.plateau.best) == 87.3


def test_weight_average_is_the_mean_of_the_updates():
    v = tf.Variable([1.0, -2.0])
    average = schedules.WeightAverage([v])
    seen = []
    for value in ([3.0, 1.0], [5.0, 0.0], [-1.0, 2.0], [0.5, 0.25]):
        v.assign(value)
        average.update()
        seen.append(value)
    np.testing.assert_allclose(average.averages[0].numpy(), np.mean(seen, axis=0), rtol=1e-6)
    with average.applied():
        np.testing.assert_allclose(v.numpy(), np.mean(seen, axis=0), rtol=1e-6)
    np.testing.assert_array_equal(v.numpy(), [0.5, 0.25])  # the raw weights are back


def plus_config(data, **train):
    # A threshold of 50 %: the rate halves after epoch 2, from the best validation perplexity kept
    # in the checkpoint.
    cfg = tiny_config(data, optimizer="sgd", learning_rate=1.0, lr_schedule="plateau", lr_decay=0.5,
                      plateau_threshold=0.5, decay_start_epoch=2, weight_decay=1e-4, average_start_epoch=2, deterministic=True,
                      num_steps=10, **train)
    return cfg.replace(model=dataclasses.replace(cfg.model, hidden_size=16, tie_embeddings=True, dropout=0.2,
                                                 input_dropout=0.3, locked_dropout=True, embedding_dropout=0.1))


def test_every_regulariser_resumes_exactly(tmp_path):
    """Stopped inside epoch 2 (averaging running) and resumed: the same losses, the same model."""
    data = write_corpus(tmp_path / "data", (16, 4, 4))
    cfg = plus_config(data, epochs=3, max_steps=14)
    whole = training.train(cfg, str(tmp_path / "a"), export=False)
    first = training.train(cfg.replace(train=dataclasses.replace(cfg.train, max_steps=7)),
                           str(tmp_path / "b"), export=False)
    rest = training.train(cfg, str(tmp_path / "b"), export=False)
    assert sorted(whole.valid_perplexities) == [1, 2] and min(rest.step_losses) == 8  # epochs of 5 steps
    for step in range(1, 15):
        assert first.step_losses.get(step, rest.step_losses.get(step)) == whole.step_losses[step], step
    assert rest.test_perplexity == whole.test_perplexity


def test_averaged_weights_are_what_eval_reads(tmp_path):
    data = write_corpus(tmp_path / "data", (16, 4, 4))
    result = training.train(plus_config(data, epochs=3), str(tmp_path / "run"), export=False)
    config, vocab, model = checkpoints.load_model(str(tmp_path / "run"))
    path = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert tf.train.load_variable(path, "averaged_steps/.ATTRIBUTES/VARIABLE_VALUE") > 0
    for i, v in enumerate(model.trainable_variables):
        np.testing.assert_array_equal(v.numpy(), tf.train.load_variable(path, f"averages/{i}/.ATTRIBUTES/VARIABLE_VALUE"))
    ids = corpus_lib.load_corpus(config.data, vocab).test
    evaluator = evaluation.Evaluator(model, config.train.eval_batch_size, config.train.num_steps, vocab.eos_id)
    assert math.isclose(evaluator.perplexity(ids), result.test_perplexity, rel_tol=1e-6)
    # The raw weights of the same checkpoint are a different model (rnn-lm-eval --noaveraged).
    _, _, raw = checkpoints.load_model(str(tmp_path / "run"), averaged=False)
    np.testing.assert_array_equal(raw.embedding.numpy(),
                                  tf.train.load_variable(path, "model/embedding/.ATTRIBUTES/VARIABLE_VALUE"))
    assert np.max(np.abs(raw.embedding.numpy() - model.embedding.numpy())) > 1e-4
