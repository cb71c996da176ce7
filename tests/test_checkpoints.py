"""Checkpoints (rnn_lm.checkpoints): what they hold, how a reader (load_model) and a resumed run find
them from the files, and what happens to damaged ones.

The reference is an uninterrupted run (the ``reference_run`` fixture): a run stopped at step 4 whose
state file or newest checkpoint is then damaged must resume with the same losses, bit for bit, from the
newest complete checkpoint, and the damaged files are kept byte for byte in ``damaged/``.  The averaged
weights a checkpoint holds are compared with the checkpoint's own variables and the run's test
perplexity.
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import checkpoints
from rnn_lm import evaluation
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.errors import RnnLmError
from tests.helpers import assert_resumed_from, plus_config, run_to_step_4, tiny_config, train_run, write_corpus


def test_checkpoint_holds_every_variable(tmp_path):
    """Every layer's cell weights are saved and restored, not only the top-level ones."""
    data = write_corpus(tmp_path / "data", (20, 3, 3))
    run = str(tmp_path / "run")
    train_run(tiny_config(data, max_steps=2), run)
    path = tf.train.latest_checkpoint(os.path.join(run, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    _, _, model = checkpoints.load_model(run)
    names = [f"model/{v.path.split('/', 1)[1].replace('lstm_1', 'layer_1')}/.ATTRIBUTES/VARIABLE_VALUE"
             for v in model.variables]
    assert len(names) == len([n for n, _ in tf.train.list_variables(path) if n.startswith("model/")])
    for name, var in zip(names, model.variables):
        np.testing.assert_array_equal(reader.get_tensor(name), var.numpy(), err_msg=name)


def test_a_checkpoint_that_does_not_fit_config_json_is_refused(tmp_path):
    data = write_corpus(tmp_path / "data", (30, 3, 3))
    run = tmp_path / "run"
    train_run(tiny_config(data, max_steps=2), run)
    config = (run / "config.json").read_text()
    (run / "config.json").write_text(config.replace('"hidden_size": 24', '"hidden_size": 25'))
    with pytest.raises(RnnLmError, match=r"ckpt-2 does not fit the model of .*config.json \(lstm 1x25"):
        checkpoints.load_model(str(run))


def test_averaged_weights_are_what_eval_reads(tmp_path):
    data = write_corpus(tmp_path / "data", (16, 4, 4))
    result = train_run(plus_config(data, epochs=3), tmp_path / "run")
    config, vocab, model = checkpoints.load_model(str(tmp_path / "run"))
    path = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert tf.train.load_variable(path, "averaged_steps/.ATTRIBUTES/VARIABLE_VALUE") > 0
    for i, v in enumerate(model.trainable_variables):
        np.testing.assert_array_equal(v.numpy(), tf.train.load_variable(path, f"averages/{i}/.ATTRIBUTES/VARIABLE_VALUE"))
    ids = corpus_lib.load_corpus(config.data, vocab).test
    evaluator = evaluation.Evaluator.for_training(model, config.train, vocab.eos_id)
    assert math.isclose(evaluator.perplexity(ids), result.test_perplexity, rel_tol=1e-6)
    # The raw weights of the same checkpoint are a different model (rnn-lm-eval --noaveraged).
    _, _, raw = checkpoints.load_model(str(tmp_path / "run"), averaged=False)
    np.testing.assert_array_equal(raw.embedding.numpy(),
                                  tf.train.load_variable(path, "model/embedding/.ATTRIBUTES/VARIABLE_VALUE"))
    assert np.max(np.abs(raw.embedding.numpy() - model.embedding.numpy())) > 1e-4


# ---------------------------------------------------------------------------
# Found from the files.

@pytest.mark.parametrize("fault", ["missing", "garbled", "names_a_missing_checkpoint"])
def test_a_bad_state_file_is_rebuilt_from_the_checkpoint_files(reference_run, tmp_path, fault, monkeypatch):
    cfg, losses = reference_run
    monkeypatch.chdir(tmp_path)  # a relative --model_dir, as a user types it
    tmp_path = type(tmp_path)(".")
    folder = run_to_step_4(cfg, tmp_path / "run")
    state = os.path.join(folder, "checkpoint")
    if fault == "missing":
        os.remove(state)
    elif fault == "garbled":
        with open(state, "w") as f:
            f.write("model_checkpoint_path: \x00\x01 {{{\n")
    else:
        with open(state, "w") as f:
            f.write('model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ckpt-8"\n')
    assert checkpoints.load_model(str(tmp_path / "run"))  # a reader finds ckpt-4 without the state file
    assert_resumed_from(train_run(cfg, tmp_path / "run"), 4, losses)
    assert sorted(checkpoints.numbers(folder, "ckpt")) == [2, 4, 6]  # none deleted or overwritten


@pytest.mark.parametrize("fault", ["truncated", "flipped_byte", "index_missing_data"])
def test_a_damaged_newest_checkpoint_falls_back_and_is_kept_aside(reference_run, tmp_path, fault):
    cfg, losses = reference_run
    folder = run_to_step_4(cfg, tmp_path / "run")
    data = os.path.join(folder, "ckpt-4.data-00000-of-00001")
    if fault == "truncated":
        os.truncate(data, os.path.getsize(data) // 2)
    elif fault == "flipped_byte":
        with open(data, "r+b") as f:
            f.seek(8)
            byte = f.read(1)
            f.seek(8)
            f.write(bytes([byte[0] ^ 0xFF]))
    else:
        os.remove(data)
    damaged = {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder) if n.startswith("ckpt-4.")}
    # A reader skips it and leaves it where it is.
    _, _, model = checkpoints.load_model(str(tmp_path / "run"))
    assert sorted(n for n in os.listdir(folder) if n.startswith("ckpt-4.")) == sorted(damaged)
    # The owner resumes from ckpt-2 and keeps ckpt-4's files, byte for byte, in damaged/.
    assert_resumed_from(train_run(cfg, tmp_path / "run"), 2, losses)
    kept = os.path.join(folder, checkpoints.DAMAGED_DIR)
    assert {n: open(os.path.join(kept, n), "rb").read() for n in os.listdir(kept)} == damaged


def test_a_folder_of_only_damaged_checkpoints_is_refused_and_left_alone(reference_run, tmp_path):
    cfg, _ = reference_run
    train_run(cfg, tmp_path / "run", max_steps=2)
    folder = os.path.join(tmp_path, "run", "checkpoints")
    os.truncate(os.path.join(folder, "ckpt-2.data-00000-of-00001"), 10)
    before = sorted(os.listdir(folder))
    with pytest.raises(RnnLmError, match="no complete checkpoint in .*ckpt-2: "):
        train_run(cfg, tmp_path / "run")
    with pytest.raises(RnnLmError, match="no complete checkpoint in "):
        checkpoints.load_model(str(tmp_path / "run"))
    assert sorted(os.listdir(folder)) == before


def test_staging_folders_of_a_killed_save_are_removed(reference_run, tmp_path):
    cfg, losses = reference_run
    folder = run_to_step_4(cfg, tmp_path / "run")
    os.makedirs(os.path.join(folder, "ckpt-5_temp", "part-00000-of-00001"))
    assert_resumed_from(train_run(cfg, tmp_path / "run"), 4, losses)
    assert not os.path.exists(os.path.join(folder, "ckpt-5_temp"))


def test_a_changed_vocabulary_is_refused(reference_run, tmp_path):
    cfg, _ = reference_run
    run_to_step_4(cfg, tmp_path / "run")
    path = os.path.join(tmp_path, "run", "vocab.txt")
    tokens = open(path, encoding="utf-8").read().splitlines()
    tokens[2], tokens[3] = tokens[3], tokens[2]  # two swapped lines: same words, other ids
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    with pytest.raises(RnnLmError, match="vocab.txt is not the vocabulary ckpt-4 was trained with"):
        checkpoints.load_model(str(tmp_path / "run"))
    with pytest.raises(RnnLmError, match="vocab.txt is not the vocabulary ckpt-4 was trained with"):
        train_run(cfg, tmp_path / "run")


# ---------------------------------------------------------------------------
# Damaged ones set aside.

def test_a_damaged_best_checkpoint_is_set_aside_without_blocking_the_run(reference_run, tmp_path):
    cfg, _ = reference_run
    train_run(cfg, tmp_path / "run", max_steps=0, epochs=1)  # one whole epoch: validated, so best/ is written
    best = os.path.join(tmp_path, "run", "checkpoints", "best")
    (n,) = checkpoints.numbers(best, "best")
    os.truncate(os.path.join(best, f"best-{n}.data-00000-of-00001"), 10)
    resumed = train_run(cfg, tmp_path / "run", max_steps=0, epochs=2)
    assert min(resumed.step_losses) == n + 1 and 2 in resumed.valid_perplexities
    assert os.listdir(os.path.join(best, checkpoints.DAMAGED_DIR)) != []
    assert checkpoints.damage(os.path.join(best, f"best-{checkpoints.numbers(best, 'best')[0]}")) is None


def test_setting_aside_never_overwrites_an_earlier_damaged_checkpoint(tmp_path):
    """ckpt-4 damaged twice (resumed from ckpt-2 both times): the second one is kept as ckpt-4.1."""
    for round_ in range(2):
        for suffix in (".index", ".data-00000-of-00001"):
            (tmp_path / f"ckpt-4{suffix}").write_text(f"round {round_}")
        (tmp_path / "ckpt-40.index").write_text("another checkpoint")
        checkpoints._set_aside(str(tmp_path / "ckpt-4"))
    kept = tmp_path / checkpoints.DAMAGED_DIR
    assert {p.name: p.read_text() for p in kept.iterdir()} == {
        "ckpt-4.index": "round 0", "ckpt-4.data-00000-of-00001": "round 0",
        "ckpt-4.1.index": "round 1", "ckpt-4.1.data-00000-of-00001": "round 1"}
    assert (tmp_path / "ckpt-40.index").exists()  # a name that only starts alike stays
