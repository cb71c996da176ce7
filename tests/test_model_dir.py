"""The model directory (rnn_lm.model_dir): one owner (the lock), one truth (the stored config.json and
vocab.txt), and nothing written when a run is refused.

Each refusal is checked by the files it leaves: byte for byte unchanged, or no directory at all; a
resume that changes only the schedule repeats the uninterrupted run's losses (the ``reference_run``
fixture) and is recorded in config_history.jsonl.  The binary's side (rnn-lm-train resumed from the
directory alone, a lock held by another process, exit statuses) is in test_bin_model_dir.py.
"""

import dataclasses
import json
import os
import re

import pytest

from rnn_lm import checkpoints
from rnn_lm import model_dir as model_dir_lib
from rnn_lm.config import Config, flag_name
from rnn_lm.errors import RnnLmError
from tests.helpers import assert_resumed_from, run_to_step_4, tiny_config, train_run, write_corpus


# ---------------------------------------------------------------------------
# One owner.

def test_a_second_trainer_is_refused_while_the_first_holds_the_lock(reference_run, tmp_path):
    cfg, _ = reference_run
    folder = run_to_step_4(cfg, tmp_path / "run")
    before = {n: os.path.getmtime(os.path.join(folder, n)) for n in os.listdir(folder)}
    with model_dir_lib.Lock(str(tmp_path / "run")):
        with pytest.raises(RnnLmError, match=f"in use by another rnn-lm-train \\(pid {os.getpid()} on "):
            train_run(cfg, tmp_path / "run")
    assert {n: os.path.getmtime(os.path.join(folder, n)) for n in os.listdir(folder)} == before


# ---------------------------------------------------------------------------
# One truth.

def test_model_dir_refuses_a_different_model(tmp_path):
    data = write_corpus(tmp_path / "data", (20, 3, 3))
    cfg = tiny_config(data, max_steps=2)
    train_run(cfg, tmp_path / "run")
    before = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
    other = cfg.replace(model=dataclasses.replace(cfg.model, cell="gru"))
    with pytest.raises(RnnLmError, match="cell"):
        train_run(other, tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == before


def test_checkpoints_without_config_json_are_refused(reference_run, tmp_path):
    cfg, _ = reference_run
    folder = run_to_step_4(cfg, tmp_path / "run")
    os.remove(os.path.join(tmp_path, "run", "config.json"))
    with pytest.raises(RnnLmError, match="holds checkpoints but no config.json"):
        train_run(cfg, tmp_path / "run")
    assert sorted(checkpoints.numbers(folder, "ckpt")) == [2, 4]


def test_a_refused_resume_writes_nothing(reference_run, tmp_path):
    cfg, _ = reference_run
    run_to_step_4(cfg, tmp_path / "run")
    files = {n: open(os.path.join(tmp_path, "run", n), "rb").read()
             for n in ("config.json", "vocab.txt", model_dir_lib.HISTORY_FILE)}
    for change in (dict(optimizer="sgd"), dict(batch_size=2), dict(num_steps=3), dict(seed=7)):
        field = next(iter(change))
        with pytest.raises(RnnLmError, match=f"train.{field}=.* cannot change when a run resumes") as e:
            train_run(cfg, tmp_path / "run", **change)
        # rnn-lm-train names the field by its flag.
        assert re.search(f"--{field}=.* cannot change when a run resumes", e.value.naming_flags(flag_name))
        for name, content in files.items():
            assert open(os.path.join(tmp_path, "run", name), "rb").read() == content, (field, name)


def test_schedule_changes_are_kept_as_history(reference_run, tmp_path):
    cfg, losses = reference_run
    run_to_step_4(cfg, tmp_path / "run")
    resumed = train_run(cfg, tmp_path / "run", max_steps=6, sample_tokens=3)
    assert_resumed_from(resumed, 4, losses)
    history = [json.loads(line) for line in open(os.path.join(tmp_path, "run", model_dir_lib.HISTORY_FILE))]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[0]["step"] == 0 and history[1]["step"] == 4
    assert history[1]["changed"] == {"train.max_steps": [4, 6], "train.sample_tokens": [5, 3]}
    stored = Config.load(str(tmp_path / "run"))
    assert stored.train.max_steps == 6 and stored.train.sample_tokens == 3


# ---------------------------------------------------------------------------
# Refused before anything is written.

def test_bad_corpus_leaves_no_model_dir(tmp_path):
    data = write_corpus(tmp_path / "data", (1, 1, 1))  # 13 tokens: less than one batch
    with pytest.raises(RnnLmError, match="fewer than one batch"):
        train_run(tiny_config(data), tmp_path / "run")
    assert not os.path.exists(tmp_path / "run")


def test_a_vocabulary_that_leaves_valid_unknown_is_refused(tmp_path):
    data = write_corpus(tmp_path / "data", (40, 3, 3), words="a b c".split())
    with open(os.path.join(data, "valid.txt"), "w") as f:
        f.write("x y z\n")
    with pytest.raises(RnnLmError, match="75.0% of the validation split is <unk>"):
        model_dir_lib.prepare(tiny_config(data), str(tmp_path / "run2"))
