"""SentencePiece models for ``--level=subword``: trained on the training split only, kept in the model
directory as ``subword.model``, read by the tokenizer in Python (``sentencepiece``) and in the
SavedModel's graph (tensorflow-text's SentencePiece op), so that both cut text into the same pieces.

The vocabulary (``vocab.txt``) is then built from the pieces of the training text as for words, most
frequent first, so the adaptive softmax's cutoffs apply to pieces too.  The corpora's own ``<unk>`` and
the ``<eos>`` a prompt may hold are single pieces (user-defined symbols); a character the training
split never had is a piece of its own that the vocabulary reads as ``<unk>``.
"""

import io
import os
import re

from rnn_lm.data.tokenizers import EOS, UNK, SubwordTokenizer
from rnn_lm.errors import RnnLmError, field_ref
from rnn_lm.files import write_atomically

MODEL_FILE = "subword.model"
# SentencePiece samples at most this many training lines (all of PTB's and WikiText-2's; a sample of
# WikiText-103's 1.8 million), so that training the model takes the memory of a sample.
MAX_TRAINING_LINES = 1_000_000
INSTALL_HINT = "pip install 'rnn_lm[subword]' (sentencepiece and tensorflow-text)"


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise RnnLmError(f"{field_ref('data', 'level')}=subword needs SentencePiece: {INSTALL_HINT}") from None
    return sentencepiece


def model_path(model_dir):
    """``model_dir/subword.model``; a subword model has no tokenizer without its model directory."""
    if model_dir is None:
        raise RnnLmError(f"{field_ref('data', 'level')}=subword needs the model directory that holds {MODEL_FILE}")
    return os.path.join(model_dir, MODEL_FILE)


def train(lines, data_config, model_dir):
    """Trains a SentencePiece model on ``lines`` (the training split's), writes ``model_dir/subword.model``
    and returns its tokenizer."""
    path = model_path(model_dir)
    sentencepiece = _sentencepiece()
    proto = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=proto, model_type=data_config.subword_type,
            vocab_size=data_config.subword_vocab_size, character_coverage=1.0,
            input_sentence_size=MAX_TRAINING_LINES, shuffle_input_sentence=True,
            pad_id=-1, bos_id=-1, eos_id=-1, unk_id=0, unk_piece="<subword_unk>",
            user_defined_symbols=[UNK, EOS], minloglevel=2)
    except RuntimeError as e:
        limit = re.search(r"value <= (\d+)", str(e))
        if limit:
            raise RnnLmError(f"{field_ref('data', 'subword_vocab_size')}={data_config.subword_vocab_size} is more "
                             f"pieces than the training text allows (at most {limit.group(1)})") from None
        raise RnnLmError(f"SentencePiece could not train on the training split: {str(e).splitlines()[0]}") from None
    os.makedirs(model_dir, exist_ok=True)
    write_atomically(path, proto.getvalue())
    return SubwordTokenizer(proto.getvalue())


def load(model_dir):
    """The tokenizer of ``model_dir/subword.model``, checked against ``model_dir/vocab.txt`` when there is
    one: every token of the vocabulary must be a piece of the model."""
    path = model_path(model_dir)
    _sentencepiece()
    try:
        with open(path, "rb") as f:
            proto = f.read()
    except OSError as e:
        raise RnnLmError(f"cannot read the subword model {path}: {e.strerror}") from None
    try:
        tokenizer = SubwordTokenizer(proto)
    except (RuntimeError, OSError):
        raise RnnLmError(f"{path} is not a SentencePiece model") from None
    from rnn_lm.data.vocab import VOCAB_FILE, Vocabulary
    if os.path.exists(os.path.join(model_dir, VOCAB_FILE)):
        check_vocabulary(tokenizer, Vocabulary.load(model_dir), path)
    return tokenizer


def check_vocabulary(tokenizer, vocab, path):
    """Refuses a SentencePiece model that could not have made ``vocab``'s pieces."""
    processor = tokenizer.processor
    pieces = {processor.id_to_piece(i) for i in range(processor.get_piece_size())}
    missing = [t for t in vocab.tokens[2:] if t not in pieces]
    if missing:
        raise RnnLmError(f"{path} does not match the vocabulary beside it: {len(missing)} of its "
                         f"{len(vocab) - 2} pieces are not in the model (the first: {missing[0]!r})")
