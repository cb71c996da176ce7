"""How rnn-lm-train stops, end to end in fresh processes, with exit statuses a script can trust: SIGTERM
(143) and SIGINT (130) save the step they stop at, and the same command resumes from it; a diverged run
exits 3, keeps its checkpoint and exports nothing."""

import signal
import subprocess
import sys
import time

import tensorflow as tf

from rnn_lm import checkpoints
from tests.helpers import ENV, TINY, assert_one_line_error, run, write_corpus


def start_and_stop(tmp_path, sig):
    """rnn-lm-train run until its first checkpoint, then sent ``sig``: (data, model_dir, process, out, err)."""
    data = write_corpus(tmp_path / "data", (40, 3, 3))
    model_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rnn_lm.bin.train", f"--model_dir={model_dir}",
                             f"--data_dir={data}", "--epochs=100000", *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 240
    while not (model_dir / "checkpoints" / "checkpoint").exists() and time.time() < deadline:
        time.sleep(0.5)  # the first checkpoint comes at the end of the first (tiny) epoch
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=240)
    return data, model_dir, proc, out, err


def test_sigterm_checkpoints_and_the_run_resumes(tmp_path):
    data, model_dir, proc, out, err = start_and_stop(tmp_path, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM == 143, err[-2000:]  # not 0: `train && deploy` must not deploy
    assert "SIGTERM: stopped at step" in out and "run the same command to resume" in out
    stopped = int(out.split("stopped at step ")[1].split()[0])
    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert latest.endswith(f"ckpt-{stopped}")  # the step it stopped at was saved
    resumed = run("train", f"--model_dir={model_dir}", f"--data_dir={data}", "--epochs=100000",
                  f"--max_steps={stopped + 2}", *TINY)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {latest}" in resumed.stderr


def test_sigint_exits_130_with_a_checkpoint(tmp_path):
    _, model_dir, proc, out, err = start_and_stop(tmp_path, signal.SIGINT)
    assert proc.returncode == 130, err[-2000:]
    stopped = int(out.split("SIGINT: stopped at step ")[1].split()[0])
    assert checkpoints.numbers(str(model_dir / "checkpoints"), "ckpt")[0] == stopped


def test_a_diverged_run_exits_3_and_exports_nothing(tmp_path):
    """The library's Diverged is in test_training.py."""
    data = write_corpus(tmp_path / "data", (40, 3, 3))
    proc = run("train", f"--model_dir={tmp_path / 'run'}", f"--data_dir={data}", "--init_scale=1e30",
               "--max_steps=3", *TINY)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert_one_line_error(proc, "the run diverged")
    assert not (tmp_path / "run" / "saved_model").exists()
    assert (tmp_path / "run" / "checkpoints" / "checkpoint").exists()  # the checkpoint is kept
