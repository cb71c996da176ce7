"""--level=subword: SentencePiece trained on the training split and kept in the model directory; the
Python tokenizer and the SavedModel's graph op cut text alike; per-word perplexity and bits per character
by their formula; one-line errors for a vocabulary too large and for a model that does not match."""

import json
import math
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm.config import DataConfig
from rnn_lm.data import subword
from rnn_lm.data.tokenizers import EOS, UNK
from rnn_lm.errors import RnnLmError
from rnn_lm.losses import per_text_unit, text_units
from tests.helpers import TINY, assert_one_line_error, run, write_corpus

PIECES = 24
TEXTS = ["the cake which the children like", "  two   small dogs ", "children <unk> dogs", "",
         "zebra", "the cakes <eos> the dogs"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    lines = open(os.path.join(write_corpus(tmp_path_factory.mktemp("spm") / "data"), "train.txt")).read().splitlines()
    return subword.train(lines + ["a <unk> b"], DataConfig(level="subword", subword_vocab_size=PIECES),
                         str(tmp_path_factory.mktemp("spm_model")))


def test_python_and_graph_cut_text_alike(tokenizer):
    graph = tokenizer.split_in_graph(tf.constant(TEXTS)).to_list()
    assert [[p.decode() for p in row] for row in graph] == [tokenizer.tokenize_prompt(t) for t in TEXTS]


def test_unk_and_eos_are_single_pieces_and_text_comes_back(tokenizer):
    pieces = tokenizer.tokenize("children <unk> dogs")
    assert UNK in pieces and pieces[-1] == EOS and pieces.count(EOS) == 1
    assert EOS in tokenizer.tokenize_prompt("the dogs <eos> the")
    for text in ("the cake which the children like", "two small dogs"):
        assert tokenizer.detokenize(tokenizer.tokenize(text)) == " " + text + "\n"
    # A continuation keeps the space before a word it starts; lines after an <eos> lose it.
    assert tokenizer.detokenize(["\u2581the", "\u2581dog", "s", EOS, "\u2581two"]) == " the dogs\ntwo"
    joined = tokenizer.join_in_graph(tf.ragged.constant([["\u2581the", "\u2581dog", "s"], ["s"]]))
    assert [t.decode() for t in joined.numpy()] == [" the dogs", "s"]


def test_the_text_units_and_their_figures_by_hand():
    lines = ["a bb", "", "ccc"]
    assert text_units(lines) == (2 + 1 + 0 + 1 + 1 + 1, 4 + 1 + 0 + 1 + 3 + 1)  # words + <eos>; chars + breaks
    units = per_text_unit(1.5, 10, lines)  # 15 nats in all
    assert units["word_perplexity"] == pytest.approx(math.exp(15 / 6))
    assert units["bits_per_char"] == pytest.approx(15 / (10 * math.log(2)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("subword")
    data = write_corpus(root / "data")
    model_dir = root / "lm"
    proc = run("train", f"--data_dir={data}", f"--model_dir={model_dir}", *TINY, "--epochs=6", "--level=subword",
               f"--subword_vocab_size={PIECES}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model_dir, data


def test_a_subword_model_is_scored_per_piece_per_word_and_per_character(trained):
    model_dir, data = trained
    assert (model_dir / subword.MODEL_FILE).exists()
    proc = run("eval", f"--model_dir={model_dir}", "--split=test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r": (\d+) tokens, perplexity ([0-9.]+), ([0-9.]+) nats/token; per word ([0-9.]+) \((\d+) words\), "
                      r"([0-9.]+) bits/char \((\d+) characters\)", proc.stdout)
    assert found, proc.stdout
    tokens, nats = int(found.group(1)), float(found.group(3))
    lines = open(os.path.join(data, "test.txt")).read().splitlines()
    words, chars = 6 * 13, sum(len(line) + 1 for line in lines)  # 6 lines of 12 words and an <eos>
    assert (int(found.group(5)), int(found.group(7))) == (words, chars)
    assert tokens > words  # pieces are no longer than words
    assert float(found.group(4)) == pytest.approx(math.exp(nats * tokens / words), rel=2e-3)
    assert float(found.group(6)) == pytest.approx(nats * tokens / (chars * math.log(2)), rel=2e-3)
    assert float(found.group(2)) < 1.5  # the cycle is learned


def test_the_saved_model_cuts_scores_and_generates_as_python_does(trained):
    model_dir, data = trained
    text = open(os.path.join(data, "test.txt")).readline().strip()
    scored = run("eval", f"--model_dir={model_dir}", f"--text_file={os.path.join(data, 'test.txt')}",
                 "--per_sentence", "--sentence_start=zero")
    assert scored.returncode == 0, scored.stderr[-2000:]
    expected = json.loads(scored.stdout.splitlines()[0])["log_prob"]
    served = tf.saved_model.load(str(model_dir / "saved_model"))
    served.sentence_start.assign(tf.zeros_like(served.sentence_start))
    assert served.signatures["score"](sentences=tf.constant([text]))["log_prob"].numpy()[0] == pytest.approx(
        expected, abs=1e-4)
    prompt = f"{text} <eos> the"
    python = run("generate", f"--model_dir={model_dir}", f"--prompt={prompt}", "--max_tokens=40", "--temperature=0")
    graph = run("generate", f"--saved_model={model_dir / 'saved_model'}", f"--prompt={prompt}", "--max_tokens=40",
                "--temperature=0")
    assert python.returncode == 0 and graph.returncode == 0, (python.stderr[-2000:], graph.stderr[-2000:])
    assert python.stdout == graph.stdout
    continuation = python.stdout.strip().removeprefix(prompt).split()
    assert continuation and set(continuation) <= set(text.split() + ["<eos>"]), python.stdout


def test_a_vocabulary_larger_than_the_text_allows_is_one_line(trained, tmp_path):
    _, data = trained
    proc = run("train", f"--data_dir={data}", f"--model_dir={tmp_path / 'big'}", *TINY, "--level=subword",
               "--subword_vocab_size=5000")
    assert_one_line_error(proc, "--subword_vocab_size=5000", "at most")
    with pytest.raises(RnnLmError, match="subword_vocab_size=5000 is more pieces"):
        subword.train(["a b"], DataConfig(level="subword", subword_vocab_size=5000), str(tmp_path / "x"))


def test_a_sentencepiece_model_that_does_not_match_the_vocabulary_is_one_line(trained, tmp_path):
    model_dir, data = trained
    copy = tmp_path / "lm"
    shutil.copytree(model_dir, copy)
    subword.train(["xyz uvw", "qrs tuv"] * 20, DataConfig(level="subword", subword_vocab_size=16), str(copy))
    proc = run("eval", f"--model_dir={copy}", "--split=test")
    assert_one_line_error(proc, "subword.model does not match the vocabulary")
    (copy / subword.MODEL_FILE).write_bytes(b"not a model")
    proc = run("eval", f"--model_dir={copy}", "--split=test")
    assert_one_line_error(proc, "is not a SentencePiece model")


def test_a_resumed_subword_run_keeps_its_sentencepiece_model(trained, tmp_path):
    """The same command again continues the run with the model it has (not one trained anew), and the
    run's figures are still given per word."""
    model_dir, data = trained
    copy = tmp_path / "lm"
    shutil.copytree(model_dir, copy)
    before = (copy / subword.MODEL_FILE).stat().st_mtime_ns
    proc = run("train", f"--data_dir={data}", f"--model_dir={copy}", *TINY, "--epochs=7", "--level=subword",
               f"--subword_vocab_size={PIECES}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stderr and "per word" in proc.stderr
    assert (copy / subword.MODEL_FILE).stat().st_mtime_ns == before
