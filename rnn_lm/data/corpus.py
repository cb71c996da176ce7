"""Reading a corpus: three text splits, tokenized and mapped to ids.

A corpus is a folder holding ``train.txt``, ``valid.txt`` and ``test.txt``
(UTF-8, one sentence or line per line), a named corpus (``rnn_lm.data.corpora``:
PTB, WikiText, Tiny Shakespeare, checked against their published checksums)
or the built-in grammar corpus (``rnn_lm.data.grammar``), generated from a seed.  The vocabulary comes
from the training split only; words of valid/test outside it become
``<unk>``, never dropped.
"""

import dataclasses
import os

import numpy as np

from rnn_lm.data import corpora
from rnn_lm.data import grammar
from rnn_lm.data.tokenizers import get_tokenizer
from rnn_lm.data.vocab import Vocabulary
from rnn_lm.errors import RnnLmError

SPLITS = ("train", "valid", "test")


def read_lines(path, encoding_errors="strict"):
    """The lines of a UTF-8 text file, with errors that name the file.

    Line breaks are universal (\\n, \\r\\n or \\r) and removed.  Bytes that are
    not UTF-8 are an error, or with ``encoding_errors="replace"`` become U+FFFD.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise RnnLmError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RnnLmError(f"{path}: is a directory, expected a text file") from None
    except OSError as e:
        raise RnnLmError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = data.decode("utf-8", errors=encoding_errors)
    except UnicodeDecodeError as e:
        raise RnnLmError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}; "
                         "--encoding_errors=replace reads it anyway)") from None
    if not text.strip():
        raise RnnLmError(f"{path}: empty file (no tokens)")
    return text_lines(text)


def text_lines(text):
    """Lines of ``text``, with universal line breaks removed."""
    # Not str.splitlines(): it also breaks at \x0c, \x85, \u2028 and others,
    # which are characters of the text at character level.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def read_split_lines(data_config):
    """{split: [lines]}: a named corpus, a folder of three splits, or the built-in grammar corpus."""
    if data_config.corpus not in ("", "grammar"):
        texts = corpora.split_texts(data_config.corpus, data_config.data_dir)
        return {s: text_lines(texts[s]) for s in SPLITS}
    if not data_config.data_dir:
        # Valid and test are 8 % of train each: 80,000 tokens for the default million.
        held_out = data_config.grammar_train_tokens * 2 // 25
        return grammar.grammar_splits(seed=data_config.grammar_seed,
                                      train_tokens=data_config.grammar_train_tokens,
                                      valid_tokens=held_out, test_tokens=held_out,
                                      max_depth=data_config.grammar_max_depth)
    data_dir = data_config.data_dir
    if not os.path.isdir(data_dir):
        raise RnnLmError(f"--data_dir {data_dir}: no such directory")
    missing = [s for s in SPLITS if not os.path.isfile(os.path.join(data_dir, s + ".txt"))]
    if missing:
        raise RnnLmError(f"--data_dir {data_dir}: missing {', '.join(s + '.txt' for s in missing)}"
                         " (a corpus folder holds train.txt, valid.txt and test.txt)")
    return {s: read_lines(os.path.join(data_dir, s + ".txt"), data_config.encoding_errors) for s in SPLITS}


@dataclasses.dataclass
class Corpus:
    """Token ids of each split (int32 arrays, ``<eos>`` after every line) and the vocabulary."""
    vocab: Vocabulary
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    unk_rate: dict  # fraction of <unk> tokens in each split

    def split(self, name):
        return getattr(self, name)


def encode_lines(lines, vocab, tokenizer):
    return vocab.encode(t for line in lines for t in tokenizer.tokenize(line))


def load_corpus(data_config, vocab=None):
    """Reads and encodes all splits; builds the vocabulary from train unless one is given."""
    tokenizer = get_tokenizer(data_config.level)
    lines = read_split_lines(data_config)
    if vocab is None:
        vocab = Vocabulary.from_lines(lines["train"], tokenizer, data_config.vocab_size,
                                      data_config.min_count)
    ids = {s: encode_lines(lines[s], vocab, tokenizer) for s in SPLITS}
    unk_rate = {s: float(np.mean(ids[s] == vocab.unk_id)) for s in SPLITS}
    return Corpus(vocab=vocab, unk_rate=unk_rate, **ids)


def unigram_perplexity(train_ids, eval_ids, vocab_size):
    """Perplexity of the add-one unigram model of train on eval: the no-context baseline."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(np.exp(-log_p[eval_ids].mean()))
