"""The training loop (rnn_lm.training): it learns, it resumes exactly, it stops cleanly, and its final
figures come from the weights it says (the best validated ones, or the last).

References: a corpus of one 12-word sentence repeated, which a model that learned it predicts with
perplexity near 1 (a unigram model: above 10); an uninterrupted run, whose every loss an interrupted
and resumed one must repeat bit for bit on CPU (with every regulariser on, in float16 with its loss
scale, streamed from the ids file); and disks that refuse a write (simulated), which must give one line
and leave the last complete checkpoint to resume from.
"""

import dataclasses
import os
import re

import pytest
import tensorflow as tf

from rnn_lm import checkpoints, evaluation, training
from rnn_lm.config import Config
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.errors import Diverged, RnnLmError
from tests.helpers import plus_config, resume_config, tiny_config, train_run, write_corpus


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


# ---------------------------------------------------------------------------
# Resuming.

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


def test_float16_run_checkpoints_its_loss_scale_and_resumes_exactly(tmp_path):
    data = write_corpus(tmp_path / "data", (20, 3, 3))
    cfg = tiny_config(data, max_steps=4, compute_dtype="float16", deterministic=True, num_steps=5)
    whole = training.train(cfg, str(tmp_path / "a"), export=False)
    first = training.train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=2)),
                           str(tmp_path / "b"), export=False)
    names = [n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(tmp_path / "b" / "checkpoints")))]
    assert any("dynamic_scale" in n for n in names), names
    rest = training.train(cfg, str(tmp_path / "b"), export=False)
    assert {**first.step_losses, **rest.step_losses} == whole.step_losses  # bit for bit on CPU


def test_training_with_stream_train_gives_the_same_losses(tmp_path):
    data = write_corpus(tmp_path / "data", (40, 4, 4))
    config = tiny_config(data, max_steps=2, deterministic=True)
    in_memory = training.train(config, str(tmp_path / "a"), export=False)
    stream_config = config.replace(data=dataclasses.replace(config.data, stream_train=True))
    stream = training.train(stream_config, str(tmp_path / "b"), export=False)
    assert sorted(stream.step_losses) == [1, 2]
    assert stream.step_losses == in_memory.step_losses
    assert stream.unigram_valid_perplexity == in_memory.unigram_valid_perplexity
    assert stream.test_perplexity == in_memory.test_perplexity
    assert os.path.isfile(tmp_path / "b" / corpus_lib.TOKEN_DIR / corpus_lib.TOKEN_FILE)
    assert not os.path.exists(tmp_path / "a" / corpus_lib.TOKEN_DIR)


# ---------------------------------------------------------------------------
# Non-finite losses.

@pytest.mark.parametrize("policy, expected", [("stop", "at step 1 (1 in a row)"), ("skip", "at step 3 (3 in a row)")])
def test_non_finite_updates_are_skipped_then_stop(tmp_path, policy, expected):
    """Weights near the float32 limit overflow: every loss is non-finite and no update is applied."""
    data = write_corpus(tmp_path / "data", (30, 3, 3))
    cfg = tiny_config(data, nan_policy=policy, max_nonfinite_steps=3)
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, init_scale=3e38))
    with pytest.raises(RnnLmError, match=re.escape(expected)):
        training.train(cfg, str(tmp_path / "run"), export=False)


def test_a_non_finite_loss_raises_diverged(tmp_path):
    """Diverged (rnn-lm-train's exit status 3, tested in test_bin_model_dir.py) for a loss that overflows."""
    data = write_corpus(tmp_path / "data", (40, 3, 3))
    with pytest.raises(Diverged, match="non-finite loss"):
        train_run(tiny_config(data, max_steps=3, nan_policy="stop", learning_rate=1e38, optimizer="sgd",
                              max_grad_norm=0.0), tmp_path / "nan")


# ---------------------------------------------------------------------------
# Disks that refuse a write (simulated).

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


def test_unwritable_logs_are_one_line(tmp_path, monkeypatch):
    cfg = resume_config(write_corpus(tmp_path / "data", (40, 3, 3)))
    os.makedirs(tmp_path / "run")
    (tmp_path / "run" / "logs").write_text("not a folder")
    with pytest.raises(RnnLmError, match="cannot write TensorBoard logs to .*logs/train"):
        train_run(cfg, tmp_path / "run", max_steps=2)
    # A disk that fills up during the run (simulated: the event write fails as TensorFlow reports it).

    def disk_full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.summary, "scalar", disk_full)
    with pytest.raises(RnnLmError, match="cannot write TensorBoard logs to .*logs/train \\(No space left on device\\)"):
        train_run(cfg, tmp_path / "full", max_steps=2, log_every_steps=1)


# Which weights a run's final figures, sample and SavedModel come from (--final_weights), and reading
# a chosen checkpoint back (checkpoints.resolve: latest, best, ckpt-N).

def _test_perplexity(model_dir, checkpoint):
    config, vocab, model = checkpoints.load_model(model_dir, checkpoint=checkpoint)
    ids = corpus_lib.load_corpus(config.data, vocab).test
    return evaluation.Evaluator.for_training(model, config.train, vocab.eos_id).perplexity(ids)


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


def test_patience_stops_after_epochs_without_a_better_validation(tmp_path, monkeypatch):
    """--patience=2 with validation perplexities 10, 9, 9.5, 9.2, 8 (given, not measured): the run stops
    after epoch 4 (two epochs past the best, epoch 2), whose checkpoint gives the final figures; a run
    stopped by --epochs=3 first and resumed with --epochs=10 stops at the same place."""
    figures = iter([10.0, 9.0, 9.5, 9.2] + [10.0, 9.0, 9.5] + [9.2])
    monkeypatch.setattr(evaluation.Evaluator, "perplexity",
                        lambda self, ids, desc="": 5.0 if desc == "test" else next(figures))
    data = write_corpus(tmp_path / "data", (20, 3, 3))
    cfg = tiny_config(data, epochs=10, patience=2, sample_tokens=0)
    result = train_run(cfg, tmp_path / "run")
    assert sorted(result.valid_perplexities) == [1, 2, 3, 4] and result.stopped_early == 4
    assert "(epoch 2," in result.final_weights and result.valid_perplexity == 9.0
    first = train_run(cfg, tmp_path / "resumed", epochs=3)
    assert sorted(first.valid_perplexities) == [1, 2, 3] and not first.stopped_early
    second = train_run(cfg, tmp_path / "resumed", epochs=10)
    assert sorted(second.valid_perplexities) == [4] and second.stopped_early == 4
    assert next(figures, None) is None


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_a_mixed_precision_runs_figures_are_those_of_its_weights_in_float32(tmp_path, precision):
    """Validation and the final figures compute in float32, as rnn-lm-eval does with the checkpoint: the
    run's test perplexity equals a float32 model's with the checkpoint's weights, and the epoch's
    validation figure its valid perplexity."""
    data = write_corpus(tmp_path / "data", (40, 4, 4))
    run = str(tmp_path / "run")
    result = train_run(tiny_config(data, compute_dtype=precision), run)
    assert result.test_perplexity == pytest.approx(_test_perplexity(run, "best"), rel=1e-6)
    config, vocab, model = checkpoints.load_model(run, checkpoint="best")
    valid = corpus_lib.load_corpus(config.data, vocab).valid
    assert result.valid_perplexities[1] == pytest.approx(
        evaluation.Evaluator.for_training(model, config.train, vocab.eos_id).perplexity(valid), rel=1e-6)
