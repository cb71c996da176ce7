"""What a person watching rnn-lm-train sees: a live bar with the run's ETA on a terminal (a real
pseudo-terminal here), plain periodic lines with the run's ETA in a log, and none of TensorFlow's own
chatter unless --verbosity asks for it."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

from tests.helpers import TINY, write_corpus

# The environment a user has: no TF_CPP_MIN_LOG_LEVEL of ours.
USER_ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def train_args(tmp_path, *extra):
    data = write_corpus(tmp_path / "data", (40, 4, 4))
    return [sys.executable, "-m", "rnn_lm.bin.train", f"--model_dir={tmp_path / 'run'}", f"--data_dir={data}",
            *TINY, "--epochs=2", "--log_every_steps=10", *extra]


def run_on_a_terminal(args):
    """Runs ``args`` with stdout and stderr on a pseudo-terminal of 120 columns; returns (status, output)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, env=USER_ENV)
    os.close(terminal)
    out = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 300)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(controller, 1 << 16)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        out += chunk
    os.close(controller)
    return proc.wait(timeout=60), out.decode("utf-8", "replace")


def test_a_terminal_shows_a_live_bar_with_the_runs_eta(tmp_path):
    status, out = run_on_a_terminal(train_args(tmp_path))
    assert status == 0, out[-3000:]
    frames = out.split("\r")
    bars = [f for f in frames if re.match(r"\s*training:\s+\d+%\|", f)]
    assert len(bars) >= 3, out[-3000:]
    total = int(re.search(r"\| *\d+/(\d+) \[", bars[-1]).group(1))
    # The bar counts the whole run (2 epochs), with an ETA and the figures of the last interval.
    assert re.search(rf"\| *{total}/{total} \[", out) and total % 2 == 0
    assert any(re.search(r"<\d\d:\d\d", f) for f in bars) and "perplexity" in out and "tokens/s" in out
    assert re.search(r"validation:\s+\d+%\|", out) and re.search(r"test:\s+\d+%\|", out)
    assert "epoch 1 step 10 (" not in out  # on a terminal the bar replaces the periodic lines
    assert "epoch 2 done" in out and "test perplexity" in out


def test_a_log_gets_periodic_lines_with_the_runs_eta_and_no_tensorflow_chatter(tmp_path):
    proc = subprocess.run(train_args(tmp_path), capture_output=True, text=True, env=USER_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "%|" not in proc.stderr  # no bar in a file
    lines = [l for l in proc.stderr.splitlines() if "epoch 1 step 10 (" in l]
    assert len(lines) == 1 and re.search(r"epoch ends in \d+m\d\ds, run in \d+m\d\ds", lines[0])
    for chatter in ("cudart_stub", "cuInit", "absl::InitializeLog", "cpu_feature_guard", "Sharding callback",
                    "Assets written", "fingerprint"):
        assert chatter not in proc.stderr, chatter
    for line in proc.stderr.splitlines():  # what is left: rnn_lm's own log lines
        assert re.match(r"[IWE]\d{4} .* (training|model_dir|checkpoints|corpus)\.py:\d+\]", line), line


def test_verbosity_shows_tensorflows_own_lines(trained, tmp_path):
    """The same quiet default in every binary; --verbosity=0 shows TensorFlow's INFO lines again
    (here the SavedModel builder's, through rnn-lm-export on the shared trained model)."""
    model_dir = trained[0]
    for verbosity, shown in (([], False), (["--verbosity=0"], True)):
        proc = subprocess.run([sys.executable, "-m", "rnn_lm.bin.export", f"--model_dir={model_dir}",
                               f"--output_dir={tmp_path / str(shown)}", *verbosity], capture_output=True, text=True,
                              env=USER_ENV, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert ("Assets written" in proc.stderr) == shown
