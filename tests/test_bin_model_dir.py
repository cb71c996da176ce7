"""rnn-lm-train and its model directory, end to end in fresh processes: a lock held by another process
refuses a second trainer (naming the holder's pid, writing nothing) and a SIGKILLed holder blocks nothing;
``rnn-lm-train --model_dir=X`` alone resumes X's stored settings (not the flag defaults) and refuses
changed ones byte for byte.  The library's side is in test_model_dir.py; how a run stops (signals,
divergence) is in test_bin_train_stop.py."""

import json
import subprocess
import sys

from tests.helpers import ENV, TINY, assert_one_line_error, run, write_corpus


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
