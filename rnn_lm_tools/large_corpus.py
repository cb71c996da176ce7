"""rnn-lm-large-corpus: --stream_train on a generated corpus of several gigabytes.

    rnn-lm-large-corpus                                   # 2 GB corpus, 300 steps
    rnn-lm-large-corpus --size_gb=1 --steps=200 --json_out=large.json
    rnn-lm-large-corpus --preset=wikitext103_adaptive --vocab=267735 --size_gb=0.54  # WikiText-103's size
    python -m rnn_lm_tools.large_corpus --work_dir=/data/big --size_gb=8

Writes WORK_DIR/corpus/{train,valid,test}.txt (reused when present with the
requested size): words drawn from a Zipf distribution over ``--vocab`` pseudo-words,
short lines.  Then runs ``rnn-lm-train --stream_train`` on it in a subprocess
(LSTM 2x200, batch 20, 20 steps, or the recipe ``--preset`` names; vocabulary cap ``--vocab``,
``--steps`` steps, into a fresh WORK_DIR/model) and prints the corpus size, the training process'
peak resident memory, the time of the vocabulary pass and of the encoding, the
time from the start of the process to its first training step, and the training
speed, and what a whole epoch would take at that speed.  The point: peak memory stays that of the model and the vocabulary, not
of the corpus.
"""

import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time

import numpy as np
from absl import flags

from rnn_lm.bin import common
from rnn_lm.errors import RnnLmError
from rnn_lm_tools import timing

FLAGS = flags.FLAGS

flags.DEFINE_string("work_dir", os.path.join(tempfile.gettempdir(), "rnn_lm_large_corpus"),
                    "Folder of the generated corpus (corpus/) and of the model directory (model/).")
flags.DEFINE_float("size_gb", 2.0, "Size of train.txt in GB (10^9 bytes).")
flags.DEFINE_integer("vocab", 10_000, "Word types of the generated corpus, and the vocabulary cap.")
flags.DEFINE_integer("steps", 300, "Training steps.")
flags.DEFINE_integer("seed", 0, "Seed of the generated corpus.")
flags.DEFINE_string("preset", "", "Train with this rnn-lm-train preset (e.g. wikitext103_adaptive) instead of "
                    "an LSTM 2x200 with a full softmax.")
flags.DEFINE_string("json_out", "", "Also write the figures here as JSON.")

HELD_OUT_TOKENS = 20_000  # valid and test each: evaluated after training, so kept small
CHUNK_TOKENS = 4_000_000  # tokens generated and written at a time
MEAN_LINE_TOKENS = 12


def pseudo_words(n):
    """n distinct lowercase words, the most frequent (lowest rank) the shortest."""
    words = []
    for i in range(n):
        word, i = "", i + 26
        while i:
            i, r = divmod(i, 26)
            word = chr(ord("a") + r) + word
        words.append(word)
    return words


def write_text(path, num_bytes, num_words, rng):
    """Writes about ``num_bytes`` of Zipf-distributed words (p_k ~ 1/k) in short lines; returns tokens written."""
    words = pseudo_words(num_words)
    spans = [w.encode("ascii") + b" " for w in words]  # each word with its separator
    buffer = np.frombuffer(b"".join(spans), dtype=np.uint8)
    lengths = np.array([len(s) for s in spans])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    cdf = np.cumsum(1.0 / np.arange(1, num_words + 1))
    cdf /= cdf[-1]
    written = tokens = 0
    with open(path + ".tmp", "wb") as f:
        while written < num_bytes:
            ids = np.minimum(np.searchsorted(cdf, rng.random(CHUNK_TOKENS)), num_words - 1)
            span = lengths[ids]
            ends = np.cumsum(span)  # one past each word's separator
            # Byte j of the chunk is byte (j - first byte of its word) of that word's span.
            index = np.arange(ends[-1]) - np.repeat(ends - span, span) + np.repeat(starts[ids], span)
            text = buffer[index]
            line_end = rng.random(len(ids)) < 1.0 / MEAN_LINE_TOKENS
            line_end[-1] = True
            text[ends[line_end] - 1] = ord("\n")  # that word's separator ends the line
            count = len(ids)
            if written + len(text) > num_bytes:  # the last chunk: cut after its last line break that fits
                cut = text[:num_bytes - written].tobytes().rfind(b"\n") + 1
                text = text[:cut]
                count = int(np.searchsorted(ends, cut, side="right"))  # words that end by the cut
            f.write(text.tobytes())
            written += len(text)
            tokens += count
            if count < len(ids):
                break
    os.replace(path + ".tmp", path)
    return tokens


def make_corpus(folder, size_gb, num_words, seed):
    """The corpus folder, generated unless one of the same settings is there; returns its description."""
    want = {"size_gb": size_gb, "vocab": num_words, "seed": seed}
    info_path = os.path.join(folder, "corpus.json")
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        if ({k: info.get(k) for k in want} == want
                and os.path.getsize(os.path.join(folder, "train.txt")) == info["train_bytes"]):
            return {**info, "generated_secs": 0.0}
    except (OSError, ValueError, KeyError):
        pass
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    train_tokens = write_text(os.path.join(folder, "train.txt"), int(size_gb * 1e9), num_words, rng)
    for split in ("valid", "test"):
        write_text(os.path.join(folder, f"{split}.txt"), HELD_OUT_TOKENS * 4, num_words, rng)
    info = {**want, "train_bytes": os.path.getsize(os.path.join(folder, "train.txt")),
            "train_words": train_tokens}  # words, without the <eos> of each line
    with open(info_path, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    return {**info, "generated_secs": time.perf_counter() - start}


def run_training(data_dir, model_dir, steps, vocab, preset=""):
    """rnn-lm-train --stream_train in a subprocess; returns the figures read from its output."""
    shutil.rmtree(model_dir, ignore_errors=True)  # a fresh run: the vocabulary and encoding are timed
    model = ([f"--preset={preset}"] if preset else
             ["--cell=lstm", "--num_layers=2", "--hidden_size=200", "--embedding_size=200", "--batch_size=20",
              "--num_steps=20"])
    cmd = [sys.executable, "-m", "rnn_lm.bin.train", f"--model_dir={model_dir}", f"--data_dir={data_dir}",
           "--stream_train", *model, f"--vocab_size={vocab}", "--epochs=1", f"--max_steps={steps}",
           # The speed is timed over the log intervals after the first (which builds the graph).
           f"--log_every_steps={max(1, steps // 10)}", "--eval_batch_size=10", "--sample_tokens=10"]
    returncode, timed_lines, total_secs = timing.run_timed(cmd)
    lines = [line for _, line in timed_lines]
    if returncode:
        raise RnnLmError(f"training failed (exit {returncode}):\n" + "".join(lines[-20:]))
    output = "".join(lines)
    first_step_secs = next((secs for secs, line in timed_lines if "first training step done" in line), None)

    def number(pattern):
        match = re.search(pattern, output)
        return float(match.group(1)) if match else float("nan")

    return {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,  # KiB on Linux
        "vocabulary_secs": number(r"vocabulary of .* in ([\d.]+) s"),
        "encode_secs": number(r"encoded .* in ([\d.]+) s"),
        "first_step_secs": first_step_secs,
        "total_secs": total_secs,
        "train_tokens": int(number(r"vocabulary of \S+: (\d+) tokens")),
        "tokens_per_sec": number(r"training speed (\d+) tokens/s"),
        "ids_file_bytes": os.path.getsize(os.path.join(model_dir, "data", "train.ids")),
        "command": " ".join(cmd[1:]),
    }


def main(argv):
    if FLAGS.size_gb <= 0 or FLAGS.steps <= 0 or FLAGS.vocab < 3:
        raise RnnLmError("--size_gb and --steps must be positive, --vocab at least 3")
    corpus_dir = os.path.join(FLAGS.work_dir, "corpus")
    corpus = make_corpus(corpus_dir, FLAGS.size_gb, FLAGS.vocab, FLAGS.seed)
    print(f"corpus {corpus_dir}: train.txt {corpus['train_bytes']:,} bytes, {corpus['train_words']:,} words"
          + (f" (generated in {corpus['generated_secs']:.0f} s)" if corpus["generated_secs"] else " (reused)"),
          flush=True)
    figures = run_training(corpus_dir, os.path.join(FLAGS.work_dir, "model"), FLAGS.steps, FLAGS.vocab, FLAGS.preset)
    figures["epoch_hours"] = figures["train_tokens"] / figures["tokens_per_sec"] / 3600
    print(f"training tokens (with <eos>) {figures['train_tokens']:,}; ids file {figures['ids_file_bytes']:,} bytes")
    print(f"peak resident memory of the training process {figures['peak_rss_mb']:.0f} MiB")
    print(f"vocabulary pass {figures['vocabulary_secs']:.1f} s, encoding pass {figures['encode_secs']:.1f} s, "
          f"first training step after {figures['first_step_secs']:.1f} s")
    print(f"training speed {figures['tokens_per_sec']:.0f} tokens/s ({FLAGS.steps} steps; "
          f"whole run {figures['total_secs']:.0f} s): a whole epoch would take {figures['epoch_hours']:.1f} h")
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w", encoding="utf-8") as f:
            json.dump({"corpus": corpus, **figures, "steps": FLAGS.steps}, f, indent=2)
            f.write("\n")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
