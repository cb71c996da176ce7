"""The model directory: one owner (the lock), one truth (the stored config), checkpoints found from
the files, and exit statuses a script can trust."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rnn_lm import checkpoints
from rnn_lm import model_dir as model_dir_lib
from rnn_lm import training
from rnn_lm.config import Config
from rnn_lm.errors import Diverged, RnnLmError

from test_binaries import ENV, TINY, assert_one_line_error, run
from test_training import tiny_config, write_corpus


def _train(cfg, model_dir, **train):
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, **train)) if train else cfg
    return training.train(cfg, str(model_dir), export=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A deterministic run of 6 steps with checkpoints at 2, 4, 6: the losses every resume must repeat."""
    root = tmp_path_factory.mktemp("ref")
    data = write_corpus(root / "data", (40, 3, 3))
    cfg = tiny_config(data, max_steps=6, save_every_steps=2, keep_checkpoints=5, deterministic=True)
    whole = _train(cfg, root / "whole")
    return cfg, whole.step_losses


def _run_to_step_4(cfg, model_dir):
    first = _train(cfg, model_dir, max_steps=4)
    assert sorted(first.step_losses) == [1, 2, 3, 4]
    return os.path.join(model_dir, "checkpoints")


def _assert_resumed_from(result, step, reference_losses):
    assert sorted(result.step_losses) == list(range(step + 1, 7))
    for s, loss in result.step_losses.items():
        assert loss == reference_losses[s], f"step {s}"  # bit for bit: the same state was restored


# ---------------------------------------------------------------------------
# One owner.

def test_a_second_trainer_is_refused_while_the_first_holds_the_lock(reference, tmp_path):
    cfg, _ = reference
    folder = _run_to_step_4(cfg, tmp_path / "run")
    before = {n: os.path.getmtime(os.path.join(folder, n)) for n in os.listdir(folder)}
    with model_dir_lib.Lock(str(tmp_path / "run")):
        with pytest.raises(RnnLmError, match=f"in use by another rnn-lm-train \\(pid {os.getpid()} on "):
            _train(cfg, tmp_path / "run")
    assert {n: os.path.getmtime(os.path.join(folder, n)) for n in os.listdir(folder)} == before


def test_the_lock_of_a_killed_trainer_is_released_and_named_while_held(tmp_path):
    """A process holding the lock blocks rnn-lm-train (named by pid); SIGKILLed, it blocks nothing."""
    model_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rnn_lm.model_dir import Lock; "
         f"Lock({str(model_dir)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = run("train", f"--model_dir={model_dir}", "--grammar_train_tokens=3000", "--max_steps=2", *TINY)
        assert_one_line_error(refused, f"is in use by another rnn-lm-train (pid {holder.pid} on ")
        assert not (model_dir / "config.json").exists()  # nothing written
    finally:
        holder.kill()
        holder.wait()
    trained = run("train", f"--model_dir={model_dir}", "--grammar_train_tokens=3000", "--max_steps=2",
                  "--noexport", *TINY)
    assert trained.returncode == 0, trained.stderr[-2000:]


# ---------------------------------------------------------------------------
# Checkpoints found from the files.

@pytest.mark.parametrize("fault", ["missing", "garbled", "names_a_missing_checkpoint"])
def test_a_bad_state_file_is_rebuilt_from_the_checkpoint_files(reference, tmp_path, fault, monkeypatch):
    cfg, losses = reference
    monkeypatch.chdir(tmp_path)  # a relative --model_dir, as a user types it
    tmp_path = type(tmp_path)(".")
    folder = _run_to_step_4(cfg, tmp_path / "run")
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
    _assert_resumed_from(_train(cfg, tmp_path / "run"), 4, losses)
    assert sorted(checkpoints.numbers(folder, "ckpt")) == [2, 4, 6]  # none deleted or overwritten


@pytest.mark.parametrize("fault", ["truncated", "flipped_byte", "index_missing_data"])
def test_a_damaged_newest_checkpoint_falls_back_and_is_kept_aside(reference, tmp_path, fault):
    cfg, losses = reference
    folder = _run_to_step_4(cfg, tmp_path / "run")
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
    _assert_resumed_from(_train(cfg, tmp_path / "run"), 2, losses)
    kept = os.path.join(folder, checkpoints.DAMAGED_DIR)
    assert {n: open(os.path.join(kept, n), "rb").read() for n in os.listdir(kept)} == damaged


def test_a_folder_of_only_damaged_checkpoints_is_refused_and_left_alone(reference, tmp_path):
    cfg, _ = reference
    _train(cfg, tmp_path / "run", max_steps=2)
    folder = os.path.join(tmp_path, "run", "checkpoints")
    os.truncate(os.path.join(folder, "ckpt-2.data-00000-of-00001"), 10)
    before = sorted(os.listdir(folder))
    with pytest.raises(RnnLmError, match="no complete checkpoint in .*ckpt-2: "):
        _train(cfg, tmp_path / "run")
    with pytest.raises(RnnLmError, match="no complete checkpoint in "):
        checkpoints.load_model(str(tmp_path / "run"))
    assert sorted(os.listdir(folder)) == before


def test_staging_folders_of_a_killed_save_are_removed(reference, tmp_path):
    cfg, losses = reference
    folder = _run_to_step_4(cfg, tmp_path / "run")
    os.makedirs(os.path.join(folder, "ckpt-5_temp", "part-00000-of-00001"))
    _assert_resumed_from(_train(cfg, tmp_path / "run"), 4, losses)
    assert not os.path.exists(os.path.join(folder, "ckpt-5_temp"))


def test_checkpoints_without_config_json_are_refused(reference, tmp_path):
    cfg, _ = reference
    folder = _run_to_step_4(cfg, tmp_path / "run")
    os.remove(os.path.join(tmp_path, "run", "config.json"))
    with pytest.raises(RnnLmError, match="holds checkpoints but no config.json"):
        _train(cfg, tmp_path / "run")
    assert sorted(checkpoints.numbers(folder, "ckpt")) == [2, 4]


# ---------------------------------------------------------------------------
# One truth.

def test_a_refused_resume_writes_nothing(reference, tmp_path):
    cfg, _ = reference
    _run_to_step_4(cfg, tmp_path / "run")
    files = {n: open(os.path.join(tmp_path, "run", n), "rb").read()
             for n in ("config.json", "vocab.txt", model_dir_lib.HISTORY_FILE)}
    for change in (dict(optimizer="sgd"), dict(batch_size=2), dict(num_steps=3), dict(seed=7)):
        field = next(iter(change))
        with pytest.raises(RnnLmError, match=f"--{field}=.* cannot change when a run resumes"):
            _train(cfg, tmp_path / "run", **change)
        for name, content in files.items():
            assert open(os.path.join(tmp_path, "run", name), "rb").read() == content, (field, name)


def test_schedule_changes_are_kept_as_history(reference, tmp_path):
    cfg, losses = reference
    _run_to_step_4(cfg, tmp_path / "run")
    resumed = _train(cfg, tmp_path / "run", max_steps=6, sample_tokens=3)
    _assert_resumed_from(resumed, 4, losses)
    history = [json.loads(line) for line in open(os.path.join(tmp_path, "run", model_dir_lib.HISTORY_FILE))]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[0]["step"] == 0 and history[1]["step"] == 4
    assert history[1]["changed"] == {"train.max_steps": [4, 6], "train.sample_tokens": [5, 3]}
    stored = Config.load(str(tmp_path / "run"))
    assert stored.train.max_steps == 6 and stored.train.sample_tokens == 3


def test_a_changed_vocabulary_is_refused(reference, tmp_path):
    cfg, _ = reference
    _run_to_step_4(cfg, tmp_path / "run")
    path = os.path.join(tmp_path, "run", "vocab.txt")
    tokens = open(path, encoding="utf-8").read().splitlines()
    tokens[2], tokens[3] = tokens[3], tokens[2]  # two swapped lines: same words, other ids
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    with pytest.raises(RnnLmError, match="vocab.txt is not the vocabulary ckpt-4 was trained with"):
        checkpoints.load_model(str(tmp_path / "run"))
    with pytest.raises(RnnLmError, match="vocab.txt is not the vocabulary ckpt-4 was trained with"):
        _train(cfg, tmp_path / "run")


def test_the_binary_resumes_from_the_model_dir_alone(tmp_path):
    """`rnn-lm-train --model_dir=X` takes X's settings (not the flag defaults); a window change is refused."""
    data = write_corpus(tmp_path / "data", (40, 3, 3))
    model_dir = tmp_path / "run"
    first = run("train", f"--model_dir={model_dir}", f"--data_dir={data}", "--max_steps=3", "--noexport",
                "--batch_size=3", "--num_steps=7", *[f for f in TINY if "batch_size" not in f and "num_steps" not in f])
    assert first.returncode == 0, first.stderr[-2000:]
    # The flag defaults (batch 20, window 20, SGD at 20, 2x200) would not fit the checkpoint.
    more = run("train", f"--model_dir={model_dir}", "--max_steps=5")
    assert more.returncode == 0, more.stderr[-2000:]
    assert "resumed from" in more.stderr and "test perplexity" in more.stdout
    assert "resuming with --max_steps=5 (was 3)" in more.stderr
    stored = json.loads((model_dir / "config.json").read_text())
    assert (stored["train"]["batch_size"], stored["train"]["num_steps"], stored["train"]["max_steps"]) == (3, 7, 5)
    config = (model_dir / "config.json").read_bytes()
    for flag in ("--batch_size=20", "--hidden_size=32"):
        assert_one_line_error(run("train", f"--model_dir={model_dir}", flag), "cannot change when a run resumes")
        assert (model_dir / "config.json").read_bytes() == config


# ---------------------------------------------------------------------------
# Exit statuses and bad input.

def test_a_diverged_run_exits_3_and_exports_nothing(tmp_path):
    data = write_corpus(tmp_path / "data", (40, 3, 3))
    proc = run("train", f"--model_dir={tmp_path / 'run'}", f"--data_dir={data}", "--init_scale=1e30",
               "--max_steps=3", *TINY)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert_one_line_error(proc, "the run diverged")
    assert not (tmp_path / "run" / "saved_model").exists()
    assert (tmp_path / "run" / "checkpoints" / "checkpoint").exists()  # the checkpoint is kept
    with pytest.raises(Diverged, match="non-finite loss"):
        _train(tiny_config(data, max_steps=3, nan_policy="stop", learning_rate=1e38, optimizer="sgd",
                           max_grad_norm=0.0), tmp_path / "nan")


def test_sigint_exits_130_with_a_checkpoint(tmp_path):
    data = write_corpus(tmp_path / "data", (40, 3, 3))
    model_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rnn_lm.bin.train", f"--model_dir={model_dir}",
                             f"--data_dir={data}", "--epochs=100000", *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 240
    while not (model_dir / "checkpoints" / "checkpoint").exists() and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-2000:]
    stopped = int(out.split("SIGINT: stopped at step ")[1].split()[0])
    assert checkpoints.numbers(str(model_dir / "checkpoints"), "ckpt")[0] == stopped


def test_a_vocabulary_that_leaves_valid_unknown_is_refused(tmp_path):
    proc = run("train", f"--model_dir={tmp_path / 'run'}", "--grammar_train_tokens=3000", "--min_count=1000000",
               *TINY)
    assert proc.returncode == 1
    assert_one_line_error(proc, "the vocabulary holds only <unk> and <eos> (--min_count=1000000")
    assert not (tmp_path / "run").exists()
    data = write_corpus(tmp_path / "data", (40, 3, 3), words="a b c".split())
    with open(os.path.join(data, "valid.txt"), "w") as f:
        f.write("x y z\n")
    with pytest.raises(RnnLmError, match="75.0% of the validation split is <unk>"):
        model_dir_lib.prepare(tiny_config(data), str(tmp_path / "run2"))


def test_config_json_of_the_wrong_type_is_one_line(reference, tmp_path):
    cfg, _ = reference
    _train(cfg, tmp_path / "run", max_steps=2)
    path = tmp_path / "run" / "config.json"
    good = json.loads(path.read_text())
    for section, field, value, needle in [("model", "hidden_size", "24", "model.hidden_size must be int"),
                                          ("train", "max_grad_norm", None, "train.max_grad_norm must be float"),
                                          ("model", "num_layers", -1, "model.num_layers must be positive"),
                                          ("model", "colour", 1, "model has no field 'colour'")]:
        bad = json.loads(json.dumps(good))
        bad[section][field] = value
        path.write_text(json.dumps(bad))
        with pytest.raises(RnnLmError, match=needle):
            Config.load(str(tmp_path / "run"))
    path.write_text("[1, 2]")
    assert_one_line_error(run("eval", f"--model_dir={tmp_path / 'run'}"), "config.json", "not an rnn_lm config")


@pytest.mark.parametrize("flag", ["--max_grad_norm=nan", "--learning_rate=nan", "--sample_temperature=inf"])
def test_non_finite_numbers_are_refused(tmp_path, flag):
    proc = run("train", f"--model_dir={tmp_path / 'run'}", "--grammar_train_tokens=3000", *TINY, flag)
    assert_one_line_error(proc, f"--{flag[2:].split('=')[0]} must be")
    assert not (tmp_path / "run").exists()


def test_unwritable_logs_are_one_line(reference, tmp_path, monkeypatch):
    cfg, _ = reference
    os.makedirs(tmp_path / "run")
    (tmp_path / "run" / "logs").write_text("not a folder")
    with pytest.raises(RnnLmError, match="cannot write TensorBoard logs to .*logs/train"):
        _train(cfg, tmp_path / "run", max_steps=2)
    # A disk that fills up during the run (simulated: the event write fails as TensorFlow reports it).
    import tensorflow as tf

    def disk_full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.summary, "scalar", disk_full)
    with pytest.raises(RnnLmError, match="cannot write TensorBoard logs to .*logs/train \\(No space left on device\\)"):
        _train(cfg, tmp_path / "full", max_steps=2, log_every_steps=1)


def test_export_cleans_up_after_a_killed_export(reference, tmp_path):
    """A staging folder left by a killed export goes; a leftover saved_model.old blocks nothing."""
    from rnn_lm import export
    cfg, _ = reference
    _train(cfg, tmp_path / "run", max_steps=2)
    config, vocab, model = checkpoints.load_model(str(tmp_path / "run"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "run" / f"{export.STAGING_PREFIX}{dead.pid}-abc"
    os.makedirs(stale / "saved_model")
    os.makedirs(tmp_path / "run" / "saved_model.old" / "variables")
    target = str(tmp_path / "run" / "saved_model")
    for _ in range(2):  # the second replaces the first
        assert export.export_saved_model(model, vocab, config, target) == target
    assert not stale.exists()
    assert sorted(n for n in os.listdir(tmp_path / "run") if "saved_model" in n) == ["saved_model", "saved_model.old"]
    assert os.path.isfile(os.path.join(target, "saved_model.pb"))


def test_a_damaged_best_checkpoint_is_set_aside_without_blocking_the_run(reference, tmp_path):
    cfg, _ = reference
    _train(cfg, tmp_path / "run", max_steps=0, epochs=1)  # one whole epoch: validated, so best/ is written
    best = os.path.join(tmp_path, "run", "checkpoints", "best")
    (n,) = checkpoints.numbers(best, "best")
    os.truncate(os.path.join(best, f"best-{n}.data-00000-of-00001"), 10)
    resumed = _train(cfg, tmp_path / "run", max_steps=0, epochs=2)
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
