"""rnn-lm-diagnose: parameter counts, the measured quantities, the experiments, the binary and its files."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import analysis, diagnostics
from rnn_lm.config import ModelConfig
from rnn_lm.model import RNNLanguageModel
from test_binaries import assert_one_line_error, run


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


def test_diagnose_binary_fresh_models(tmp_path):
    proc = run("diagnose", f"--out_dir={tmp_path}", "--hidden_size=8", "--num_steps=6", "--batch_size=4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "diagnose.json").read_text())
    assert sorted(results) == ["elman (init)", "gru (init)", "lstm (init)"]
    for result in results.values():
        assert [len(layer) for layer in result["gradient_flow"]] == [6, 6]
    elman = results["elman (init)"]["gradient_flow"][0]
    assert elman[5] < elman[0]  # the simple RNN's gradient shrinks with the lag
    assert results["elman (init)"]["keep_histogram"] == [None, None]
    for png in ("gradient_flow.png", "gates.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "lag 5" in proc.stdout
    # The figures as TensorBoard images.
    tags = set()
    for event_file in (tmp_path / "tensorboard").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
    assert tags == {"gradient_flow", "gates"}


def test_diagnose_binary_bad_input(tmp_path):
    assert_one_line_error(run("diagnose", f"--out_dir={tmp_path}", "--num_steps=1"), "--num_steps")
    assert_one_line_error(run("diagnose", f"--out_dir={tmp_path}", f"--model_dir={tmp_path}/none"), "none")
    assert_one_line_error(run("diagnose", f"--out_dir={tmp_path}", "--cells=lstm,rnn"), "rnn")
    assert_one_line_error(run("diagnose", f"--out_dir={tmp_path}", "--model_dir=x", "--experiment=cells"),
                          "exclude")


def test_diagnose_binary_cell_experiment(tmp_path):
    """The experiment end to end at toy size: three trained models of nearly equal size, each drawn twice."""
    proc = run("diagnose", f"--out_dir={tmp_path}", "--experiment=cells", "--hidden_size=8", "--num_layers=1",
               "--train_tokens=3000", "--epochs=1", "--num_steps=5", "--agreement_pairs=4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "diagnose.json").read_text())
    trained = {label: r for label, r in results.items() if not label.endswith("(init)")}
    assert len(results) == 6 and len(trained) == 3
    counts = [r["parameters"] for r in trained.values()]
    assert max(counts) - min(counts) < 0.05 * max(counts)
    for label, r in trained.items():
        assert results[label + " (init)"]["parameters"] == r["parameters"]
        assert set(r["agreement"]) == {str(d) for d in diagnostics.AGREEMENT_DISTANCES}
        assert 1 < r["valid_perplexity"] < 200
        assert (tmp_path / label.split()[0] / "config.json").exists()
    assert (tmp_path / "agreement.png").exists()
