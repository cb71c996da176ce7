"""Diagnostics (rnn_lm.diagnostics): parameter counts against the built models' trainable values and a
hand computation, equal-parameter hidden sizes, ``diagnose`` reporting rnn_lm.analysis's quantities of
the model, and the exploding-gradient runs sharing a start and parting at the first clipped step.  The
binary, rnn-lm-diagnose, is in test_bin_diagnose.py."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from rnn_lm import analysis, diagnostics
from rnn_lm.config import ModelConfig
from rnn_lm.model import RNNLanguageModel


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("embedding_size,tied", [(6, False), (0, False), (7, True)])
def test_parameter_count_is_the_models(cell, embedding_size, tied):
    """The count from the shapes equals the number of trainable values of the built model."""
    config = ModelConfig(vocab_size=11, cell=cell, num_layers=2, hidden_size=7, embedding_size=embedding_size,
                         tie_embeddings=tied)
    model = RNNLanguageModel(config)
    assert diagnostics.parameter_count(config) == sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_equal_parameter_configs_pick_the_closest_hidden_size():
    reference = ModelConfig(vocab_size=169, cell="lstm", num_layers=2, hidden_size=200, embedding_size=200)
    target = diagnostics.parameter_count(reference)
    configs = diagnostics.equal_parameter_configs(reference, ["elman", "lstm", "gru"])
    assert configs["lstm"] == reference
    # By hand: the LSTM has 4*80,200*2 + 169*200 + 200*169 + 169 = 709,369 parameters; Elman
    # 3H^2 + 371H + 33,969 = 709,369 at H = 416.6, GRU 9H^2 + 775H + 33,969 = 709,369 at H = 234.2.
    assert configs["elman"].hidden_size == 417 and configs["gru"].hidden_size == 234
    for cell, config in configs.items():
        count = lambda h: diagnostics.parameter_count(dataclasses.replace(config, hidden_size=h))  # noqa: E731
        h = config.hidden_size
        assert abs(count(h) - target) <= min(abs(count(h - 1) - target), abs(count(h + 1) - target))
        assert abs(count(h) - target) / target < 0.01


def test_diagnose_reports_the_analysis_of_the_model():
    keras.utils.set_random_seed(1)
    model = RNNLanguageModel(ModelConfig(vocab_size=12, cell="lstm", num_layers=2, hidden_size=5,
                                         embedding_size=4))
    ids = np.random.default_rng(0).integers(0, 12, 200)
    result = diagnostics.diagnose(model, ids, num_steps=6, batch_size=3)
    rows = ids[:198].reshape(3, 66)[:, :7]  # the contiguous-stream layout: 3 rows, the first 7 tokens each
    expected = analysis.gradient_flow(model, rows[:, :-1], rows[:, 1:])
    for layer in range(2):
        np.testing.assert_allclose(result["gradient_flow"][layer], expected[layer], rtol=1e-5)
        assert sum(result["keep_histogram"][layer]) == 6 * 3 * 5  # every (step, row, unit)
        assert sum(result["change_histogram"][layer]) == 5 * 3  # every (step > 0, row)
    assert result["parameters"] == diagnostics.parameter_count(model.config)
    assert json.loads(json.dumps(result)) == result  # plain JSON
    assert diagnostics.lag_ratio(result, 4) == pytest.approx(result["gradient_flow"][0][4] /
                                                             result["gradient_flow"][0][1])
    with pytest.raises(ValueError, match="too few"):
        diagnostics.diagnose(model, ids[:20], num_steps=6, batch_size=3)


def test_exploding_experiment_same_start_then_clipping_differs():
    curves = diagnostics.exploding_experiment(steps=4, hidden_size=16, init_scale=0.6, batch_size=4, num_steps=8,
                                              train_tokens=3000)
    free, clipped = curves["no clipping"], curves["clipped at 0.25"]
    assert free["loss"][0] == clipped["loss"][0] and free["grad_norm"][0] == clipped["grad_norm"][0]
    assert clipped["grad_norm"][0] > 0.25  # so the first update was clipped, and the runs part
    assert free["loss"][1] != clipped["loss"][1]
    assert all(np.isfinite(clipped["loss"]))
    assert free["non_finite_steps"] == sum(not np.isfinite(v) for v in free["loss"])
