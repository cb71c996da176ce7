"""Which weights a run's final figures, sample and SavedModel come from (--final_weights), and reading
a chosen checkpoint back (load_model's checkpoint=latest|best|ckpt-N, the binaries' --checkpoint)."""

import dataclasses
import os

import pytest

from rnn_lm import checkpoints, evaluation, training
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.errors import RnnLmError
from tests.test_training import tiny_config, write_corpus


def _test_perplexity(model_dir, checkpoint):
    config, vocab, model = checkpoints.load_model(model_dir, checkpoint=checkpoint)
    ids = corpus_lib.load_corpus(config.data, vocab).test
    return evaluation.Evaluator(model, config.train.eval_batch_size, config.train.num_steps,
                                vocab.eos_id).perplexity(ids)


@pytest.mark.parametrize("final_weights", ["best", "last"])
def test_a_run_that_ends_unvalidated_reports_the_weights_it_used(tmp_path, final_weights):
    """One whole epoch (validated: the best checkpoint), then a few more steps at a high rate that
    end inside epoch 2: with "best" the test figure is that of checkpoints/best, with "last" the
    latest checkpoint's, and the run says which."""
    data = write_corpus(tmp_path / "data", (40, 4, 4))
    run = str(tmp_path / "run")
    cfg = tiny_config(data, final_weights=final_weights)
    first = training.train(cfg, run, export=False)
    steps_per_epoch = first.final_step
    best_path = checkpoints.resolve(run, "best")
    assert os.path.basename(best_path) == f"best-{steps_per_epoch}"
    longer = dataclasses.replace(cfg.train, epochs=2, max_steps=steps_per_epoch + 3, learning_rate=0.5)
    result = training.train(dataclasses.replace(cfg, train=longer), run, export=False)
    assert result.final_step == steps_per_epoch + 3
    if final_weights == "best":
        assert f"best-{steps_per_epoch}" in result.final_weights
        assert result.valid_perplexity == first.best_valid_perplexity
        assert result.test_perplexity == pytest.approx(_test_perplexity(run, "best"), rel=1e-6)
        assert result.test_perplexity != pytest.approx(_test_perplexity(run, "latest"), rel=1e-3)
    else:
        assert result.final_weights == f"the last weights (step {steps_per_epoch + 3})"
        assert result.test_perplexity == pytest.approx(_test_perplexity(run, "latest"), rel=1e-6)
    assert _test_perplexity(run, f"ckpt-{steps_per_epoch}") == pytest.approx(_test_perplexity(run, "best"),
                                                                             rel=1e-6)
    with pytest.raises(RnnLmError, match=r"no checkpoint ckpt-999 .*kept: ckpt-"):
        checkpoints.resolve(run, "ckpt-999")
    with pytest.raises(RnnLmError, match="must be latest, best or ckpt-N"):
        checkpoints.resolve(run, "newest")


def test_a_resumed_run_keeps_the_best_of_earlier_calls(tmp_path):
    """The best checkpoint is replaced only by a better validation perplexity, also across resumes."""
    data = write_corpus(tmp_path / "data", (40, 4, 4))
    run = str(tmp_path / "run")
    cfg = tiny_config(data)
    first = training.train(cfg, run, export=False)
    worse = dataclasses.replace(cfg.train, epochs=2, learning_rate=5.0, max_grad_norm=0.0)
    second = training.train(dataclasses.replace(cfg, train=worse), run, export=False)
    assert second.valid_perplexities[2] > 100 * first.valid_perplexity  # Adam at 5.0 without clipping
    assert os.path.basename(checkpoints.resolve(run, "best")) == f"best-{first.final_step}"
    assert second.final_weights == f"the best validated weights, best-{first.final_step} (epoch 1, step " \
                                   f"{first.final_step})"
    assert second.valid_perplexity == first.valid_perplexity
    assert second.test_perplexity == pytest.approx(_test_perplexity(run, "best"), rel=1e-6)


def test_no_best_checkpoint_is_one_line(tmp_path):
    data = write_corpus(tmp_path / "data", (40, 4, 4))
    run = str(tmp_path / "run")
    result = training.train(tiny_config(data, max_steps=2), run, export=False)
    assert result.final_weights == "the last weights (step 2)"
    with pytest.raises(RnnLmError, match="no best checkpoint yet"):
        checkpoints.resolve(run, "best")
