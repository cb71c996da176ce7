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
from rnn_lm.errors import RnnLmError
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
    with pytest.raises(RnnLmError, match="too few"):
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


def test_combine_exploding_counts_break_downs_and_averages_the_finite_runs():
    """Three seeds: two unclipped runs break down (steps 2 and 3), one does not; the clipped runs'
    last costs 3, 4, 5 -> mean 4 +- 4.303 / sqrt(3); 2 of 3 -> Wilson [0.208, 0.939]."""
    nan, inf = float("nan"), float("inf")
    runs = [{"no clipping": {"loss": [5.0, nan, nan], "grad_norm": [1.0, 9e9, nan], "non_finite_steps": 2},
             "clipped": {"loss": [5.0, 4.0, 3.0], "grad_norm": [1.0, 2.0, 1.5], "non_finite_steps": 0}},
            {"no clipping": {"loss": [5.0, 6.0, inf], "grad_norm": [1.0, 7.0, 8.0], "non_finite_steps": 1},
             "clipped": {"loss": [5.0, 4.5, 4.0], "grad_norm": [1.0, 3.0, 1.0], "non_finite_steps": 0}},
            {"no clipping": {"loss": [5.0, 4.0, 2.0], "grad_norm": [1.0, 2.0, 3.0], "non_finite_steps": 0},
             "clipped": {"loss": [5.0, 5.0, 5.0], "grad_norm": [1.0, 1.0, 1.0], "non_finite_steps": 0}}]
    combined = diagnostics.combine_exploding(runs)
    free, clipped = combined["no clipping"], combined["clipped"]
    assert (free["broke_down"], free["runs"], free["first_non_finite_step"]) == (2, 3, [2, 3, None])
    assert free["broke_down_interval"] == pytest.approx([0.2077, 0.9385], abs=1e-4)
    assert free["largest_grad_norm"] == [9e9, 8.0, 3.0] and free["last_cost"] == 2.0
    assert free["loss"] is runs[0]["no clipping"]["loss"] and len(free["seeds"]) == 3
    assert clipped["broke_down"] == 0 and clipped["first_non_finite_step"] == [None] * 3
    assert clipped["last_cost"] == 4.0
    assert clipped["last_cost_interval"][1] - 4.0 == pytest.approx(4.303 / 3 ** 0.5)


def test_intervals_against_hand_computed_values():
    """Wilson: 8 of 10 -> [0.490, 0.943] (p +- by the score formula); t: 1, 2, 3 -> 2 +- 4.303 / sqrt(3)."""
    p, low, high = diagnostics.wilson_interval(8, 10)
    assert p == 0.8 and low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert diagnostics.wilson_interval(0, 20)[1] == pytest.approx(0.0, abs=1e-12)
    # All or none right: the bound at p is p itself (rounding once put it below 1 and broke the figure)
    for n in range(1, 1001):
        assert diagnostics.wilson_interval(n, n)[2] == 1.0 and diagnostics.wilson_interval(0, n)[1] == 0.0
    mean, low, high = diagnostics.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.303 / 3 ** 0.5, rel=1e-6) and low == 4.0 - high
    assert diagnostics.t_interval([7.0]) == (7.0, 7.0, 7.0)
    # many values: the normal's 1.96
    values = np.arange(100.0)
    assert diagnostics.t_interval(values)[2] - 49.5 == pytest.approx(1.959964 * values.std(ddof=1) / 10)


def test_combine_seeds_means_and_intervals():
    """Two seeds' results: agreement pooled over their pairs, the gradient's norm a geometric mean,
    gates and perplexities means, each with its interval."""
    def result(scale, agree, keep, ppl):
        return {"model": "m", "parameters": 10, "gradient_flow": [[1.0, scale, scale ** 2]],
                "spectral_norms": {"U": scale}, "gates": [{"keep": keep, "change": scale}],
                "keep_histogram": [[1, 2]], "change_histogram": [[3, 4]], "agreement": {"2": agree},
                "valid_perplexity": ppl}
    combined = diagnostics.combine_seeds([result(0.1, 0.75, 0.5, 10.0), result(0.4, 1.0, 0.7, 12.0)],
                                         agreement_pairs=4)
    np.testing.assert_allclose(combined["gradient_flow"][0], [1.0, 0.2, 0.04])  # sqrt(0.1 * 0.4) = 0.2
    assert combined["agreement"]["2"] == pytest.approx(7 / 8)
    assert combined["agreement_interval"]["2"] == pytest.approx(list(diagnostics.wilson_interval(7, 8)[1:]))
    assert combined["gates"][0]["keep"] == pytest.approx(0.6)
    # t intervals, kept within what the statistic can be: a gate's mean in [0, 1], a ratio of norms >= 0
    assert combined["gates_interval"][0]["keep"] == [0.0, 1.0]  # 0.6 -+ 12.706 * 0.1
    half = 12.706 * np.std([0.1, 0.4], ddof=1) / 2 ** 0.5
    assert combined["gates_interval"][0]["change"] == pytest.approx([0.0, 0.25 + half])
    assert combined["valid_perplexity"] == 11.0 and combined["keep_histogram"] == [[2, 4]]
    assert diagnostics.lag_ratio_interval(combined, 2)[0] == pytest.approx(0.2)  # scale^2 / scale, geometric mean


def test_an_interrupted_run_stops_the_cell_experiment():
    """A signal that stopped one of the experiment's runs (training.train returned with it) ends the
    experiment with one line that names the run's directory; a finished run passes through."""
    from rnn_lm.errors import RnnLmError
    from rnn_lm.training import TrainResult
    with pytest.raises(RnnLmError, match="SIGTERM: stopped with a checkpoint in out/lstm_seed1"):
        diagnostics.stop_if_interrupted(TrainResult(interrupted="SIGTERM"), "out/lstm_seed1")
    done = TrainResult(final_epoch=2)
    assert diagnostics.stop_if_interrupted(done, "out/lstm") is done
