"""The console scripts as installed: each one's --help shows its binary's docstring and its own flags
(a console script's __main__ is a stub absl would otherwise describe), and flags are defined and read
in rnn_lm/bin only, never in the library."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ENV


@pytest.mark.parametrize("script, flag", [
    ("rnn-lm-train", "--num_steps"), ("rnn-lm-eval", "--per_sentence"), ("rnn-lm-generate", "--beam_width"),
    ("rnn-lm-export", "--output_dir"), ("rnn-lm-grammar", "--max_depth"), ("rnn-lm-agreement", "--distances"),
    ("rnn-lm-diagnose", "--experiment"), ("rnn-lm-benchmark", "--configs"), ("rnn-lm-kill-test", "--trials"),
    ("rnn-lm-large-corpus", "--size_gb")])
def test_help_of_every_console_script_shows_its_docstring_and_flags(script, flag):
    """A console script's __main__ is a stub: --help must still show the binary's docstring and flags."""
    path = os.path.join(os.path.dirname(sys.executable), script)
    if not os.path.exists(path):
        pytest.skip(f"{script} is not installed beside this interpreter")
    proc = subprocess.run([path, "--help"], capture_output=True, text=True, env=ENV, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]  # (absl exits with 1 after --help)
    assert proc.stdout.startswith(f"{script}: "), proc.stdout[:300]
    name = flag[2:]
    assert f"  --{name}:" in proc.stdout or f"  --[no]{name}:" in proc.stdout, proc.stdout[-2000:]
    assert "  --flagfile" not in proc.stdout  # absl's own flags stay behind --helpfull


def test_library_code_reads_no_flags():
    """Flags are defined and read in rnn_lm/bin only."""
    package = os.path.join(os.path.dirname(__file__), os.pardir, "rnn_lm")
    for folder, _, files in os.walk(package):
        if os.path.basename(folder) == "bin":
            continue
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    source = f.read()
                assert "absl import flags" not in source and "absl.flags" not in source, name


@pytest.mark.parametrize("module, flag", [("rnn_lm.bin.train", "--backward"), ("rnn_lm.bin.eval", "--checkpoint")])
def test_help_run_as_a_module_lists_the_config_and_checkpoint_flags(module, flag):
    """python -m rnn_lm.bin.X --help: the flags defined for the binary by rnn_lm/bin/common.py are listed
    too (absl lists the flags of the file it ran)."""
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"  {flag}:" in proc.stdout, proc.stdout[-2000:]
