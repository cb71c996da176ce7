"""Bad input to the installed binaries (console scripts): one line naming the problem and exit status 1,
never a traceback or a hang: --max_tokens over the cap, generation memory that follows the output,
non-finite sampling flags, text that is not UTF-8 (and --encoding_errors=replace), a FIFO or a device as
a split or --text_file, a SavedModel that is not rnn_lm's.

Each binary runs in a process of its own with a timeout, so a hang fails the test
instead of hanging the suite.
"""

import os
import subprocess
import sys

import pytest

from rnn_lm.config import MAX_GENERATED_TOKENS
from tests.helpers import ENV, run_script

TIMEOUT = 300
TINY = ["--grammar_train_tokens=20000", "--hidden_size=16", "--embedding_size=16", "--num_layers=1",
        "--batch_size=8", "--num_steps=10", "--max_steps=30", "--sample_tokens=3"]


def run(binary, *args, timeout=TIMEOUT, memory_limit=None):
    """Runs the console script ``rnn-lm-<binary>``; ``memory_limit`` (bytes) caps its address space."""
    return run_script(binary, *args, timeout=timeout, memory_limit=memory_limit)


def error_line(proc, binary, *needles):
    """The one line a bad input prints: exit 1, nothing else on stderr but TensorFlow's logging."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith(f"rnn-lm-{binary}: ")]
    assert len(lines) == 1, proc.stderr[-2000:]
    line = lines[0]
    assert line.startswith(f"rnn-lm-{binary}: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model on the built-in corpus, with its SavedModel."""
    model_dir = tmp_path_factory.mktemp("bad_input") / "lm"
    proc = run("train", f"--model_dir={model_dir}", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (model_dir / "saved_model" / "saved_model.pb").exists()
    return model_dir


@pytest.fixture(scope="module")
def foreign_saved_model(tmp_path_factory):
    """A SavedModel that is not rnn_lm's: a tf.Module with one tf.function."""
    path = tmp_path_factory.mktemp("foreign") / "saved_model"
    script = ("import sys, tensorflow as tf\n"
              "class M(tf.Module):\n"
              "    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])\n"
              "    def double(self, x):\n"
              "        return 2 * x\n"
              "tf.saved_model.save(M(), sys.argv[1])\n")
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=ENV,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


def text_file(folder, name="text.txt", data=b"the dogs eat\n"):
    path = folder / name
    path.write_bytes(data)
    return path


# 1. --max_tokens: a cap, and memory that follows the output.


def test_too_large_max_tokens_is_one_line_naming_the_cap(model):
    for value in (MAX_GENERATED_TOKENS + 1, 10 ** 9):
        proc = run("generate", f"--model_dir={model}", f"--max_tokens={value}", "--prompt=the")
        error_line(proc, "generate", "--max_tokens", str(value), f"limit of {MAX_GENERATED_TOKENS}")
    helped = run("generate", "--helpfull")
    assert f"no <eos> came; at most {MAX_GENERATED_TOKENS}." in " ".join(helped.stdout.split()), helped.stdout[-3000:]


MEMORY_SCRIPT = r"""
import resource, sys, types
import numpy as np
import tensorflow as tf
from rnn_lm import decoding

class Table:  # logits = table[last token]: from <eos> (0), tokens 1 and 2, then <eos>
    config = types.SimpleNamespace(vocab_size=3)
    table = tf.constant(np.log([[0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.9, 0.05, 0.05]]), tf.float32)
    def fuse(self): return []
    def zero_state(self, batch): return [tf.zeros([batch, 1])]
    def step(self, ids, state, fused=None): return tf.gather(self.table, ids), state

prompt, lengths = tf.zeros([2, 1], tf.int32), tf.ones([2], tf.int32)
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
decoding.sample(Table(), prompt, lengths, 5, 0.0, 0, 0)  # warm up
decoding.beam_search(Table(), prompt, lengths, 5, 2, 0)
before = rss()
ids, n = decoding.sample(Table(), prompt, lengths, int(sys.argv[1]), 0.0, 0, 0)
beam_ids, _, _ = decoding.beam_search(Table(), prompt, lengths, int(sys.argv[1]), 2, 0)
print(rss() - before, ids.shape[1], n.numpy().max(), beam_ids.shape[2])
"""


def test_generation_memory_follows_the_output_not_max_tokens():
    """max_tokens 10^7 on a model whose <eos> comes at the third token: padded to max_tokens,
    the sampled ids alone would be 80 MB (2 rows of int32), each beam step's ids 160 MB."""
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(10 ** 7)], capture_output=True, text=True,
                          env=ENV, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grown, width, longest, beam_width = map(int, proc.stdout.split())
    assert width == longest == 3 and beam_width == 3
    assert grown < 32 * 2 ** 20, f"peak memory grew by {grown / 2 ** 20:.0f} MiB"


# 2. Non-finite decoding parameters.


@pytest.mark.parametrize("flag, extra", [("temperature", []), ("top_p", []), ("length_penalty", ["--beam_width=2"])])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_decoding_parameters_are_refused(model, flag, extra, value):
    proc = run("generate", f"--model_dir={model}", "--prompt=the", f"--{flag}={value}", *extra)
    assert error_line(proc, "generate").endswith(f"--{flag} must be a finite number, got {value}")


# 3. --encoding_errors for rnn-lm-eval.


def test_eval_of_a_text_file_that_is_not_utf8(model, tmp_path):
    path = text_file(tmp_path, data=b"the dogs \xff\xfe eat\nthe cake\n")
    error_line(run("eval", f"--model_dir={model}", f"--text_file={path}"), "eval",
               f"{path}: not UTF-8 text (byte 0xff at offset 9", "--encoding_errors=replace")
    proc = run("eval", f"--model_dir={model}", f"--text_file={path}", "--encoding_errors=replace")
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the dogs \ufffd\ufffd eat <eos> the cake <eos>: 8 tokens, the replaced word unknown.
    assert proc.stdout.startswith(f"{path}: 8 tokens, perplexity "), proc.stdout
    assert proc.stdout.rstrip().endswith("<unk> 12.50%"), proc.stdout
    # The same choices as rnn-lm-train's flag, refused by absl's flag parser (its own one line).
    proc = run("eval", f"--model_dir={model}", f"--text_file={path}", "--encoding_errors=ignore")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "--encoding_errors=ignore: value should be one of <strict|replace>" in proc.stderr


# 4. Files that are not regular files.


def corpus_with_train(folder, make_train):
    folder.mkdir()
    for split in ("valid", "test"):
        text_file(folder, f"{split}.txt")
    make_train(str(folder / "train.txt"))
    return folder


TRAIN_FILES = {"fifo": (os.mkfifo, "a FIFO"),
               "dev_zero": (lambda path: os.symlink("/dev/zero", path), "a character device")}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", sorted(TRAIN_FILES))
def test_train_refuses_a_train_txt_that_is_not_a_regular_file(tmp_path, kind, stream):
    make, described = TRAIN_FILES[kind]
    data = corpus_with_train(tmp_path / "data", make)
    model_dir = tmp_path / "run"
    # The timeout fails a FIFO that blocks the open; the memory cap, a read of /dev/zero.
    proc = run("train", f"--model_dir={model_dir}", f"--data_dir={data}", "--max_steps=1",
               *(["--stream_train"] if stream else []), timeout=60, memory_limit=4 << 30)
    error_line(proc, "train", f"{data}/train.txt: not a regular file ({described}), expected a text file")
    assert not model_dir.exists()


def test_eval_refuses_a_text_file_that_is_not_a_regular_file(model, tmp_path):
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    error_line(run("eval", f"--model_dir={model}", f"--text_file={fifo}", timeout=120), "eval",
               f"{fifo}: not a regular file (a FIFO), expected a text file")
    # Through the SavedModel the file is read before TensorFlow loads: a memory cap is safe.
    zero = tmp_path / "zero.txt"
    os.symlink("/dev/zero", zero)
    error_line(run("eval", f"--saved_model={model}/saved_model", f"--text_file={zero}", timeout=60,
                   memory_limit=4 << 30), "eval", f"{zero}: not a regular file (a character device)")
    error_line(run("eval", f"--saved_model={model}/saved_model", f"--text_file={tmp_path / 'none.txt'}"),
               "eval", f"{tmp_path / 'none.txt'}: no such file")


# 5. SavedModels that are not rnn_lm's.


def test_eval_of_a_saved_model_that_is_not_rnn_lms(model, foreign_saved_model, tmp_path):
    text = text_file(tmp_path)
    error_line(run("eval", f"--saved_model={foreign_saved_model}", f"--text_file={text}"), "eval",
               f"{foreign_saved_model} is not an rnn_lm SavedModel (no 'tokenize', 'zero_state', 'step' signatures)")
    empty = tmp_path / "empty"
    empty.mkdir()
    error_line(run("eval", f"--saved_model={empty}", f"--text_file={text}"), "eval",
               f"{empty} is not a SavedModel (no saved_model.pb)")


def test_generate_from_a_saved_model_that_is_not_rnn_lms(foreign_saved_model, tmp_path):
    error_line(run("generate", f"--saved_model={foreign_saved_model}", "--prompt=the"), "generate",
               f"{foreign_saved_model} is not an rnn_lm SavedModel (no 'generate' signature)")
    empty = tmp_path / "empty"
    empty.mkdir()
    error_line(run("generate", f"--saved_model={empty}", "--prompt=the"), "generate",
               f"{empty} is not a SavedModel (no saved_model.pb)")
    error_line(run("generate", f"--saved_model={tmp_path / 'missing'}", "--prompt=the"), "generate",
               f"{tmp_path / 'missing'}: no such directory")
