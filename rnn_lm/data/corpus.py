"""Reading a corpus: three text splits, tokenized and mapped to ids.

A corpus is a folder holding ``train.txt``, ``valid.txt`` and ``test.txt``
(UTF-8, one sentence or line per line), a named corpus (``rnn_lm.data.corpora``:
PTB, WikiText, Tiny Shakespeare, checked against their published checksums)
or the built-in grammar corpus (``rnn_lm.data.grammar``), generated from a seed.  The vocabulary comes
from the training split only; words of valid/test outside it become
``<unk>``, never dropped.
"""

import dataclasses
import itertools
import math
import os
import stat
import time

import numpy as np
from absl import logging

from rnn_lm import progress
from rnn_lm.data import SPLITS
from rnn_lm.data import corpora
from rnn_lm.data import grammar
from rnn_lm.data import layout
from rnn_lm.data.tokenizers import get_tokenizer
from rnn_lm.data.vocab import Vocabulary, token_counts
from rnn_lm.errors import RnnLmError, field_ref
from rnn_lm.files import read_json, write_json

CHUNK_BYTES = 1 << 23  # what iter_lines reads at a time


def read_lines(path, encoding_errors="strict"):
    """The lines of a UTF-8 text file, with errors that name the file.

    Line breaks are universal (\\n, \\r\\n or \\r) and removed.  Bytes that are
    not UTF-8 are an error, or with ``encoding_errors="replace"`` become U+FFFD.
    """
    with _open_text_file(path) as f:
        try:
            data = f.read()
        except OSError as e:
            raise RnnLmError(f"{path}: cannot read ({e.strerror})") from None
    text = _decode(data, path, 0, encoding_errors)
    if not text.strip():
        raise RnnLmError(f"{path}: empty file (no tokens)")
    return text_lines(text)


def iter_lines(path, encoding_errors="strict", chunk_bytes=None, desc=None):
    """The lines of ``read_lines``, read in binary chunks: memory of a chunk (or a line), not of the file.

    Each chunk is cut after its last line break, so no UTF-8 sequence and no
    ``\\r\\n`` is split between two decodes; errors (file and byte offset) are
    those of ``read_lines``.  The lines are produced as they are read, so an
    empty file is reported after its last line.
    """
    for lines in iter_line_chunks(path, encoding_errors, chunk_bytes, desc):
        yield from lines


def iter_line_chunks(path, encoding_errors="strict", chunk_bytes=None, desc=None):
    """``iter_lines`` a list of lines at a time, one list per chunk of about ``chunk_bytes``; with
    ``desc``, a progress bar of the bytes read on a terminal."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    offset = 0  # of the first byte not yet decoded
    pieces = []  # bytes read since the last line break
    has_text = False
    with _open_text_file(path) as f, progress.bar(os.fstat(f.fileno()).st_size, desc, unit="B", unit_scale=True,
                                                 disable=desc is None) as read:
        while True:
            try:
                block = f.read(chunk_bytes)
            except OSError as e:
                raise RnnLmError(f"{path}: cannot read ({e.strerror})") from None
            read.update(len(block))
            if block:
                # A \r that ends the block may be the first half of \r\n: it waits.
                end = max(block.rfind(b"\n"), block.rfind(b"\r", 0, len(block) - 1)) + 1
                if not end:
                    pieces.append(block)
                    continue
                data, pieces = b"".join(pieces) + block[:end], [block[end:]]
            else:
                data = b"".join(pieces)
            text = _decode(data, path, offset, encoding_errors)
            offset += len(data)
            if text:
                has_text = has_text or not text.isspace()
                yield text_lines(text)
            if not block:
                break
    if not has_text:
        raise RnnLmError(f"{path}: empty file (no tokens)")


def _open_text_file(path):
    """Opens ``path`` (binary) for reading: the one place corpus and text files are opened.

    Only a regular file (or a link to one) is opened, checked before the open:
    a FIFO would block it, and a device such as /dev/zero never ends.
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):
            return open(path, "rb")
    except FileNotFoundError:
        raise RnnLmError(f"{path}: no such file") from None
    except OSError as e:
        raise RnnLmError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise RnnLmError(f"{path}: is a directory, expected a text file")
    kinds = [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket")]
    kind = next((kind for is_kind, kind in kinds if is_kind(mode)), "of an unknown kind")
    raise RnnLmError(f"{path}: not a regular file ({kind}), expected a text file")


def _decode(data, path, offset, encoding_errors):
    """``data`` (the bytes of ``path`` from ``offset`` on) as text."""
    try:
        return data.decode("utf-8", errors=encoding_errors)
    except UnicodeDecodeError as e:
        raise RnnLmError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {offset + e.start}; "
                         "--encoding_errors=replace reads it anyway)") from None


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
    if data_config.is_grammar:
        # Valid and test are 8 % of train each: 80,000 tokens for the default million.
        held_out = data_config.grammar_train_tokens * 2 // 25
        return grammar.grammar_splits(seed=data_config.grammar_seed,
                                      train_tokens=data_config.grammar_train_tokens,
                                      valid_tokens=held_out, test_tokens=held_out,
                                      max_depth=data_config.grammar_max_depth, grammar=data_config.grammar)
    if data_config.corpus:
        texts = corpora.split_texts(data_config.corpus, data_config.data_dir)
        return {s: text_lines(texts[s]) for s in SPLITS}
    paths = split_paths(data_config.data_dir)
    return {s: read_lines(paths[s], data_config.encoding_errors) for s in SPLITS}


def split_lines(data_config, split):
    """The lines of one split (of a corpus folder, that file alone)."""
    if not data_config.is_grammar and not data_config.corpus:
        return read_lines(split_paths(data_config.data_dir)[split], data_config.encoding_errors)
    return read_split_lines(data_config)[split]


def split_paths(data_dir):
    """{split: path} of a corpus folder, checked to hold all three."""
    if not os.path.isdir(data_dir):
        raise RnnLmError(f"{field_ref('data', 'data_dir')} {data_dir}: no such directory")
    missing = [s for s in SPLITS if not os.path.exists(os.path.join(data_dir, s + ".txt"))]
    if missing:
        raise RnnLmError(f"{field_ref('data', 'data_dir')} {data_dir}: missing {', '.join(s + '.txt' for s in missing)}"
                         " (a corpus folder holds train.txt, valid.txt and test.txt)")
    return {s: os.path.join(data_dir, s + ".txt") for s in SPLITS}


def load(data_config, vocab=None, model_dir=None):
    """The corpus ``data_config`` names, the one door for training: a ``Corpus`` whose splits are in
    memory, or with ``stream_train`` a ``StreamedCorpus`` whose training split is encoded into
    ``model_dir``.  The vocabulary is built from the training split unless one is given."""
    if data_config.stream_train:
        return load_streamed_corpus(data_config, model_dir, vocab)
    return load_corpus(data_config, vocab, model_dir)


def corpus_tokenizer(data_config, model_dir, train_lines, fresh):
    """The tokenizer of ``data_config.level``; at subword level for a ``fresh`` run (no vocabulary yet) a
    SentencePiece model trained on ``train_lines`` and written into ``model_dir``, else the one there."""
    if data_config.level == "subword" and fresh:
        from rnn_lm.data import subword
        return subword.train(train_lines, data_config, model_dir)
    return get_tokenizer(data_config.level, model_dir)


@dataclasses.dataclass
class Corpus:
    """Token ids of each split (int32 arrays, ``<eos>`` after every line) and the vocabulary.

    What training needs of the training split (its length, its windows, its
    token counts, and getting it ready) is asked of the corpus, the same for
    the in-memory ``Corpus`` and the ``StreamedCorpus``.
    """
    vocab: Vocabulary
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    unk_rate: dict  # fraction of <unk> tokens in each split

    def split(self, name):
        return getattr(self, name)

    def prepare_train(self):
        """Makes the training split readable by ``train_windows`` (in memory: nothing to do)."""

    def num_train_windows(self, batch_size, num_steps):
        return layout.num_train_windows(len(self.train), batch_size, num_steps)

    def train_windows(self, batch_size, num_steps, start_window=0):
        """The tf.data windows of one epoch of training, from ``start_window`` on."""
        from rnn_lm.data import pipeline  # TensorFlow: only once training starts
        return pipeline.train_windows(self.train, batch_size, num_steps, start_window)

    def train_counts(self):
        """Occurrences of each id in the training split (the unigram baseline's counts)."""
        return np.bincount(self.train, minlength=len(self.vocab))

    def train_start(self, max_tokens):
        """The first ``max_tokens`` ids of the training split."""
        return self.train[:max_tokens]


@dataclasses.dataclass
class StreamedCorpus(Corpus):
    """A ``Corpus`` whose training split is a ``TokenFile`` (``--stream_train``): ``len`` is its number
    of tokens and ``unk_rate["train"]`` is NaN; ``prepare_train`` encodes it unless that is done."""
    train: "TokenFile"
    data_config: object = None
    tokenizer: object = None

    def prepare_train(self):
        d = self.data_config
        self.train.ensure_encoded(self.vocab, self.tokenizer, d.encoding_errors)
        if self.train.encode_secs:
            logging.info("encoded %s into %s in %.1f s", self.train.source, self.train.path, self.train.encode_secs)

    def train_windows(self, batch_size, num_steps, start_window=0):
        from rnn_lm.data import pipeline
        return pipeline.token_file_windows(self.train, batch_size, num_steps, start_window)

    def train_counts(self):
        return self.train.bincount(len(self.vocab))

    def train_start(self, max_tokens):
        with self.train.open() as f:
            return self.train.read(f, 0, min(max_tokens, len(self.train)))


def encode_lines(lines, vocab, tokenizer):
    return vocab.encode(itertools.chain.from_iterable(map(tokenizer.tokenize, lines)))


def load_corpus(data_config, vocab=None, model_dir=None):
    """Reads and encodes all splits; builds the vocabulary from train unless one is given.  ``model_dir``:
    where a subword model is (or, without a vocabulary, is written)."""
    lines = read_split_lines(data_config)
    tokenizer = corpus_tokenizer(data_config, model_dir, lines["train"], fresh=vocab is None)
    if vocab is None:
        vocab = Vocabulary.from_lines(lines["train"], tokenizer, data_config.vocab_size,
                                      data_config.min_count)
    ids = {s: encode_lines(lines[s], vocab, tokenizer) for s in SPLITS}
    unk_rate = {s: float(np.mean(ids[s] == vocab.unk_id)) if len(ids[s]) else 0.0 for s in SPLITS}  # none: 0
    return Corpus(vocab=vocab, unk_rate=unk_rate, **ids)


def load_split(data_config, vocab, split, model_dir=None):
    """The ids of one split, encoded with ``vocab``.

    Of a ``--stream_train`` corpus, valid and test are read alone, so that
    scoring them does not read a training split larger than memory; anything
    else goes through ``load_corpus``.
    """
    if data_config.stream_train and split != "train":
        path = os.path.join(data_config.data_dir, split + ".txt")
        return encode_lines(read_lines(path, data_config.encoding_errors), vocab,
                            get_tokenizer(data_config.level, model_dir))
    return load_corpus(data_config, vocab, model_dir).split(split)


def train_prefix(data_config, vocab, max_tokens, model_dir):
    """The first ``max_tokens`` ids of the training split: of a ``--stream_train`` corpus from the ids
    ``model_dir`` keeps (never the whole split in memory), else from the text."""
    if data_config.stream_train:
        path = os.path.join(model_dir, TOKEN_DIR, TOKEN_FILE)
        if not os.path.isfile(path):
            raise RnnLmError(f"{path}: no such file")
        return np.array(np.memmap(path, np.int32, "r")[:max_tokens])
    return load_split(data_config, vocab, "train", model_dir)[:max_tokens]


# ----------------------------------------------------------------------------
# A training split larger than memory (``--stream_train``).

TOKEN_DIR = "data"  # in the model directory
TOKEN_FILE = "train.ids"  # int32 token ids, native byte order: np.memmap(path, np.int32, "r")
TOKEN_META = "train.ids.json"  # what the ids were made from
READ_TOKENS = 1 << 22  # tokens per read when counting


class TokenFile:
    """The training split encoded once into a file of int32 ids, read a piece at a time.

    ``np.memmap(path, dtype=np.int32, mode="r")`` views the whole file; the
    pipeline reads it with positioned reads instead, so the pages it has passed
    do not stay in the process' resident memory.  Until ``ensure_encoded`` has
    run, the file may be missing or stale; ``len`` is known before (from the
    counting pass or the sidecar).
    """

    def __init__(self, path, source, num_tokens, record, encoded):
        self.path = path  # MODEL_DIR/data/train.ids
        self.source = source  # train.txt
        self.num_tokens = num_tokens
        self.record = record  # what the sidecar must say for the file to be reused
        self.encoded = encoded  # the file exists and matches record
        self.encode_secs = 0.0

    def __len__(self):
        return self.num_tokens

    def ensure_encoded(self, vocab, tokenizer, encoding_errors):
        """Writes the file unless the one there was made from the same source and vocabulary.

        The ids go to a temporary name and are renamed, and the sidecar is
        removed first and written last: a killed run leaves no file that would
        be reused.
        """
        if self.encoded:
            return self
        start = time.perf_counter()
        meta = os.path.join(os.path.dirname(self.path), TOKEN_META)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if os.path.exists(meta):
            os.remove(meta)
        tmp = self.path + ".tmp"
        num_tokens = 0
        try:
            with open(tmp, "wb") as f:
                for lines in iter_line_chunks(self.source, encoding_errors, desc=f"encoding {self.source}"):
                    ids = encode_lines(lines, vocab, tokenizer)
                    ids.tofile(f)
                    num_tokens += len(ids)
            if num_tokens != self.num_tokens:
                raise RnnLmError(f"{self.source} changed while it was read ({self.num_tokens} tokens, "
                                 f"then {num_tokens}); run again")
        except BaseException:
            os.remove(tmp)
            raise
        os.replace(tmp, self.path)
        write_json(meta, {**self.record, "tokens": num_tokens})
        self.encoded = True
        self.encode_secs = time.perf_counter() - start
        return self

    def open(self):
        return open(self.path, "rb")

    def read(self, f, start, count):
        """Tokens [start, start + count) as an int32 array: one positioned read of ``f`` (from ``open``)."""
        data = os.pread(f.fileno(), 4 * count, 4 * start)
        if len(data) != 4 * count:
            raise RnnLmError(f"{self.path}: shorter than its {self.num_tokens} tokens; delete it to re-encode")
        return np.frombuffer(data, dtype=np.int32)

    def bincount(self, minlength):
        """Occurrences of each id, counted a chunk at a time."""
        counts = np.zeros(minlength, dtype=np.int64)
        with self.open() as f:
            for start in range(0, self.num_tokens, READ_TOKENS):
                ids = self.read(f, start, min(READ_TOKENS, self.num_tokens - start))
                counts += np.bincount(ids, minlength=minlength)[:minlength]
        return counts


def load_streamed_corpus(data_config, model_dir, vocab=None):
    """``load_corpus`` for a training split that need not fit in memory (``--stream_train``).

    The vocabulary (unless given) comes from one streaming pass over
    train.txt that keeps only the token counts.  The ids go to
    ``MODEL_DIR/data/train.ids``, written later by ``TokenFile.ensure_encoded``
    (nothing is written here); an ids file made from the same train.txt (size,
    modification time) and vocabulary is reused.  Valid and test are read into
    memory.
    """
    paths = split_paths(data_config.data_dir)
    source = paths["train"]
    tokenizer = corpus_tokenizer(data_config, model_dir, iter_lines(source, data_config.encoding_errors),
                                 fresh=vocab is None)
    ids_path = os.path.join(model_dir, TOKEN_DIR, TOKEN_FILE)
    num_tokens = None
    if vocab is None:
        start = time.perf_counter()
        counts = token_counts(iter_lines(source, data_config.encoding_errors, desc=f"counting {source}"), tokenizer)
        vocab = Vocabulary.build(counts, data_config.vocab_size, data_config.min_count)
        num_tokens = sum(counts.values())
        logging.info("vocabulary of %s: %d tokens, %d types, %d kept, in %.1f s (one streaming pass)",
                     source, num_tokens, len(counts), len(vocab), time.perf_counter() - start)
    record = _token_file_record(source, vocab, data_config)
    stored = read_json(os.path.join(model_dir, TOKEN_DIR, TOKEN_META))
    encoded = (isinstance(stored, dict) and {k: stored.get(k) for k in record} == record
               and _file_size(ids_path) == 4 * stored.get("tokens", -1))
    if encoded:
        num_tokens = stored["tokens"]
        logging.info("reusing %s (%d tokens)", ids_path, num_tokens)
    elif num_tokens is None:  # resumed with a vocabulary, but train.txt changed: count again
        num_tokens = sum(token_counts(iter_lines(source, data_config.encoding_errors), tokenizer).values())
    splits = {s: encode_lines(read_lines(paths[s], data_config.encoding_errors), vocab, tokenizer)
              for s in ("valid", "test")}
    unk_rate = {"train": math.nan, **{s: float(np.mean(ids == vocab.unk_id)) for s, ids in splits.items()}}
    train = TokenFile(ids_path, source, num_tokens, record, encoded)
    return StreamedCorpus(vocab=vocab, train=train, unk_rate=unk_rate, data_config=data_config, tokenizer=tokenizer,
                          **splits)


def _token_file_record(source, vocab, data_config):
    st = os.stat(source)
    return {"source": os.path.abspath(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "level": data_config.level, "encoding_errors": data_config.encoding_errors,
            "vocabulary_sha256": vocab.fingerprint()}


def _file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return -1
