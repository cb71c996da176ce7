"""rnn-lm-generate on a pseudo-terminal: a progress bar while sampling, and --interactive typed as a
person types: line editing and history (the up arrow recalls the last prompt), a warning naming words
outside the vocabulary, and commands that change the settings mid-session; the greedy text equals the
batch path's."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

from tests.helpers import ENV, run


class Terminal:
    """A process on a pseudo-terminal of 40 rows and 120 columns, read until a text appears."""

    def __init__(self, args, home):
        self.fd, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(args, stdin=terminal, stdout=terminal, stderr=terminal,
                                     env=dict(ENV, HOME=str(home), TERM="xterm"))
        os.close(terminal)
        self.out = ""

    def type(self, keys):
        os.write(self.fd, keys.encode("utf-8"))

    def expect(self, text, timeout=120):
        """Reads until ``text`` has appeared ``self.out.count(text) + 1`` times; returns what came."""
        start, want, deadline = len(self.out), self.out.count(text) + 1, time.monotonic() + timeout
        while self.out.count(text) < want:
            ready, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"{text!r} did not come; output: {self.out[-2000:]!r}")
            self.out += os.read(self.fd, 1 << 16).decode("utf-8", "replace")
        return self.out[start:]

    def finish(self, timeout=120):
        """Reads until the process ends; returns (status, all it wrote)."""
        deadline = time.monotonic() + timeout
        while select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))[0]:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            self.out += chunk.decode("utf-8", "replace")
        os.close(self.fd)
        return self.proc.wait(timeout=60), self.out

    def close(self):
        self.type("\x04")  # Ctrl-D
        status = self.proc.wait(timeout=60)
        os.close(self.fd)
        return status


def test_interactive_line_editing_history_unknown_words_and_commands(trained, tmp_path):
    model_dir = trained[0]
    greedy = ["--temperature=0", "--max_tokens=6"]
    args = [sys.executable, "-m", "rnn_lm.bin.generate", f"--model_dir={model_dir}", *greedy]
    status, shown = Terminal(args + ["--prompt=the cake"], tmp_path).finish()
    assert status == 0 and re.search(r"generating: +\d+%\|.*\| *(\d)/\1 \[", shown), shown[-2000:]
    batch = [line for line in re.split(r"[\r\n]+", shown) if line.startswith("the cake")][-1].strip()
    beam = run("generate", f"--model_dir={model_dir}", "--prompt=the cake", "--max_tokens=6",
               "--beam_width=3").stdout.strip()
    term = Terminal(args + ["--interactive"], tmp_path)
    term.expect("> ")
    term.type("the cake\r")
    assert batch in term.expect("> ")
    term.type("the zzyzx cake qqq\r")  # two words the model never saw
    assert "not in the vocabulary, read as <unk>: zzyzx qqq" in term.expect("> ")
    term.type("\x1b[A\x1b[A\r")  # up, up: the prompt before last, recalled and sent again
    shown = term.expect("> ")
    assert "^[[A" not in shown and batch in shown
    term.type(":beam 3\r")
    assert "beam=3" in term.expect("> ")
    term.type("the cake\r")
    assert beam in term.expect("> ")
    term.type(":temperature -1\r")  # refused, nothing changes
    assert "not changed: --temperature must be >= 0" in term.expect("> ")
    term.type(":beam 0\r")
    term.expect("> ")
    term.type(":settings\r")
    assert "temperature=0.0 top_k=0 top_p=1.0 beam=0 max_tokens=6" in term.expect("> ")
    term.type(":colour 3\r")
    assert "unknown command :colour 3; commands: :temperature" in term.expect("> ")
    assert term.close() == 0
    with open(tmp_path / ".rnn_lm_history", encoding="utf-8") as f:  # kept for the next session
        assert "the zzyzx cake qqq" in f.read()
