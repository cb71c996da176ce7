"""The SavedModel: the trained model and its vocabulary, strings in and strings out.

The vocabulary travels as an asset (``assets/vocab.txt``) read by lookup
tables inside the graph, so a client needs neither rnn_lm nor a vocabulary
file.  Signatures (TensorFlow Serving style: the batch first in every input and output
that has one, so TF Serving's row format, ``{"instances": [...]}``, can batch them):

  serving_default
      prompts string [B] -> as generate, with config.GENERATION_DEFAULTS for the rest
      (a signature cannot have optional inputs: this one needs only what is required)
  generate
      prompts string [B], max_tokens int32 [] (at most config.MAX_GENERATED_TOKENS), temperature float32 [] (0: greedy),
      top_k int32 [] (0: off), top_p float32 [] (1: off), seed int64 []
      -> continuations string [B], ids int32 [B, N], lengths int32 [B]
      (N = max(lengths) <= max_tokens: the steps taken; after <eos>, <eos> again)
  score
      sentences string [B] -> log_prob float32 [B] (natural log, <eos> included),
      num_tokens int32 [B], num_unknown int32 [B] (tokens outside the vocabulary), perplexity float32 [B];
      each sentence starts from the variable ``sentence_start`` [S, H]: the boundary state of a
      stream-trained model (``evaluation.sentence_start``), zero for a sentence-mode model
  score_document
      documents string [B], cache_size int32 [] (0: no cache), cache_theta float32 [], cache_lambda float32 []
      -> log_prob float32 [B], num_tokens int32 [B], num_unknown int32 [B], perplexity float32 [B];
      each document (lines joined by line breaks) one stream from the zero state, with the neural
      cache over its own text (``rnn_lm.adaptation``); memory grows with the square of a document's
      tokens (a few thousand tokens a document)
  zero_state
      batch_size int32 [] -> state float32 [B, S, H]
  step
      ids int32 [B], state float32 [B, S, H] -> log_probs float32 [B, V], state [B, S, H]
      (S = layers x state tensors per layer: 2 for an LSTM, h then c; 1 otherwise)
  tokenize / detokenize
      text string [B] -> ids int32 [B, N] (0-padded), lengths int32 [B]; and back

A string input (prompts, sentences, text) may also be a scalar: a batch of one, so every
output still has its batch dimension.  Any other rank fails an assertion whose message
names the input ("prompts must be a string or a vector of strings [B]").
"""

import os
import shutil
import tempfile

import tensorflow as tf

from rnn_lm import adaptation
from rnn_lm import decoding
from rnn_lm import evaluation
from rnn_lm.config import GENERATION_DEFAULTS, MAX_GENERATED_TOKENS
from rnn_lm.data.tokenizers import UNK, get_tokenizer
from rnn_lm.data.vocab import VOCAB_FILE, Vocabulary
from rnn_lm.errors import RnnLmError, reason

# What the readers of a SavedModel call: {signature: its input names}.
GENERATE_SIGNATURES = {"generate": ("prompts", "max_tokens", "temperature", "top_k", "top_p", "seed")}
SCORE_SIGNATURES = {"tokenize": ("text",), "zero_state": ("batch_size",), "step": ("ids", "state")}


def load_saved_model(path, signatures, variables=()):
    """``tf.saved_model.load(path)``, checked to have ``signatures`` ({name: input names}) and ``variables``.

    Anything else (no folder, no SavedModel, a SavedModel not written by
    rnn_lm) is an RnnLmError naming ``path`` and what is missing.
    """
    if not os.path.isdir(path):
        raise RnnLmError(f"{path}: " + ("not a directory (a SavedModel is a folder)" if os.path.exists(path)
                                        else "no such directory"))
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
        raise RnnLmError(f"{path} is not a SavedModel (no saved_model.pb)")
    try:
        import tensorflow_text  # noqa: F401  registers the SentencePiece ops of a subword model's graph
    except ImportError:
        tensorflow_text = None
    try:
        served = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise RnnLmError(f"{path}: cannot load the SavedModel ({reason(e)})") from None
    except RuntimeError as e:
        if "Sentencepiece" in str(e) and tensorflow_text is None:
            raise RnnLmError(f"{path} cuts text into subwords with tensorflow-text's SentencePiece op: "
                             f"pip install tensorflow-text") from None
        raise
    missing = [name for name in signatures if name not in served.signatures]
    if missing:
        raise RnnLmError(f"{path} is not an rnn_lm SavedModel (no {', '.join(map(repr, missing))} "
                         f"signature{'s' if len(missing) > 1 else ''})")
    for name, inputs in signatures.items():
        found = sorted(served.signatures[name].structured_input_signature[1])
        if found != sorted(inputs):
            raise RnnLmError(f"{path} is not an rnn_lm SavedModel (its {name!r} signature takes "
                             f"{', '.join(found) or 'no inputs'}, not {', '.join(inputs)})")
    for name in variables:
        if not isinstance(getattr(served, name, None), tf.Variable):
            raise RnnLmError(f"{path} is not an rnn_lm SavedModel (no {name!r} variable)")
    if "step" in signatures:
        state = served.signatures["step"].structured_input_signature[1]["state"].shape
        if state.rank != 3 or state[1] is None:  # before [B, S, H], the state was [S, B, H], typed [?, ?, ?]
            raise RnnLmError(f"{path} was written by an older rnn_lm (its step state is [S, B, H], not "
                             f"[B, S, H]): write it again with rnn-lm-export")
    return served


def _scalar(dtype, name):
    return tf.TensorSpec([], dtype, name=name)


def _strings(name):
    """A string input: a vector [B] or a scalar (a batch of one), so of unknown rank in the signature."""
    return tf.TensorSpec(None, tf.string, name=name)


def _as_batch(strings, name):
    """A scalar string or a vector of strings -> [B]; any other rank fails an assertion naming the input."""
    tf.debugging.assert_rank_in(strings, [0, 1], message=f"{name} must be a string or a vector of strings [B]")
    return tf.reshape(strings, [-1])


class ServingModule(tf.Module):
    """A ``tf.Module`` around the Keras model, for export only."""

    def __init__(self, model, vocab_path, tokenizer, start=None):
        """``tokenizer``: the model's (``get_tokenizer``), whose graph ops cut and join text; ``start``: the
        state every sentence ``score`` scores starts from (one row's, per layer; None: zero)."""
        super().__init__()
        # The Keras model is kept untracked (tracking it would make Keras add
        # a float-input serving signature of its own); its variables are
        # tracked through this list, which is all the SavedModel needs.
        object.__setattr__(self, "model", model)
        self.model_variables = [v.value for v in model.variables]  # the tf.Variables under Keras' wrappers
        # A plain object (not tracked): its string ops are traced into the signatures.
        object.__setattr__(self, "tokenizer", tokenizer)
        # Clients join prompt and continuation with a space (word) or nothing (char, subword).
        self.token_level = tf.Variable(tokenizer.level, trainable=False, name="level")
        self.vocab_file = tf.saved_model.Asset(vocab_path)
        self.token_to_id = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(self.vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                          tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), 
            default_value=Vocabulary.UNK_ID)
        self.id_to_token = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(self.vocab_file, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                                          tf.string, tf.lookup.TextFileIndex.WHOLE_LINE), default_value=UNK)
        self.eos_id = Vocabulary.EOS_ID
        self._state_structure = model.zero_state(1)
        flat = tf.nest.flatten(self._state_structure)
        start = [s[0] for s in flat] if start is None else tf.nest.flatten(start)
        self.sentence_start = tf.Variable(tf.stack(start), trainable=False, name="sentence_start")  # [S, H]
        # [B, S, H] known but for B: TF Serving and saved_model_cli show it, and TFLite needs it.
        self.step = tf.function(self._step, input_signature=[
            tf.TensorSpec([None], tf.int32, name="ids"),
            tf.TensorSpec([None, len(flat), flat[0].shape[-1]], tf.float32, name="state")])

    def _split(self, text):
        return self.tokenizer.split_in_graph(text)

    def _ids(self, tokens):
        return tf.cast(self.token_to_id.lookup(tokens), tf.int32)

    def _text(self, ids, lengths):
        """ids [B, N] -> strings, keeping the first ``lengths`` ids and dropping <eos>."""
        keep = (tf.range(tf.shape(ids)[1])[None, :] < lengths[:, None]) & (ids != self.eos_id)
        tokens = self.id_to_token.lookup(tf.cast(tf.ragged.boolean_mask(ids, keep), tf.int64))
        return self.tokenizer.join_in_graph(tokens)

    @tf.function(input_signature=[_strings("text")])
    def tokenize(self, text):
        ids = self._ids(self._split(_as_batch(text, "text")))
        return {"ids": ids.to_tensor(0), "lengths": tf.cast(ids.row_lengths(), tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids"),
                                  tf.TensorSpec([None], tf.int32, name="lengths")])
    def detokenize(self, ids, lengths):
        return {"text": self._text(ids, lengths)}

    @tf.function(input_signature=[_strings("prompts")])
    def serve(self, prompts):
        """generate with only the prompts: what TF Serving's row format can send."""
        d = GENERATION_DEFAULTS
        return self._generate(prompts, tf.constant(d["max_tokens"]), tf.constant(d["temperature"]),
                              tf.constant(d["top_k"]), tf.constant(d["top_p"]), tf.constant(d["seed"], tf.int64))

    @tf.function(input_signature=[_strings("prompts"),
                                  _scalar(tf.int32, "max_tokens"), _scalar(tf.float32, "temperature"),
                                  _scalar(tf.int32, "top_k"), _scalar(tf.float32, "top_p"),
                                  _scalar(tf.int64, "seed")])
    def generate(self, prompts, max_tokens, temperature, top_k, top_p, seed):
        return self._generate(prompts, max_tokens, temperature, top_k, top_p, seed)

    def _generate(self, prompts, max_tokens, temperature, top_k, top_p, seed):
        prompts = _as_batch(prompts, "prompts")
        tokens = self._ids(self._split(prompts))
        # Every prompt starts from the start-of-sentence context <eos>.
        starts = tf.fill([tf.shape(prompts)[0], 1], self.eos_id)
        prompt_ids = tf.concat([starts, tokens.to_tensor(0)], axis=1)
        max_tokens = tf.minimum(max_tokens, MAX_GENERATED_TOKENS)
        ids, lengths = decoding.sample(self.model, prompt_ids, tf.cast(tokens.row_lengths(), tf.int32) + 1,
                                       max_tokens, temperature, seed, self.eos_id, top_k=top_k, top_p=top_p)
        return {"continuations": self._text(ids, lengths), "ids": ids, "lengths": lengths}

    @tf.function(input_signature=[_strings("sentences")])
    def score(self, sentences):
        tokens = self._ids(self._split(_as_batch(sentences, "sentences")))
        start = tf.nest.pack_sequence_as(self._state_structure, tf.unstack(self.sentence_start))
        log_prob, n = evaluation.sentence_log_probs(self.model, tokens.to_tensor(0),
                                                    tf.cast(tokens.row_lengths(), tf.int32), self.eos_id, start)
        unknown = tf.reduce_sum(tf.cast(tf.equal(tokens, Vocabulary.UNK_ID), tf.int32), axis=1)
        return {"log_prob": log_prob, "num_tokens": n, "num_unknown": unknown,
                "perplexity": tf.exp(-log_prob / tf.cast(n, log_prob.dtype))}

    @tf.function(input_signature=[_strings("documents"), _scalar(tf.int32, "cache_size"),
                                  _scalar(tf.float32, "cache_theta"), _scalar(tf.float32, "cache_lambda")])
    def score_document(self, documents, cache_size, cache_theta, cache_lambda):
        """Each document (lines joined by line breaks) as one stream from the zero state, as
        ``rnn-lm-eval --text_file --batch_size=1`` reads a file, with the neural cache
        (``adaptation.target_probability``) over the document's own earlier tokens."""
        text = tf.strings.regex_replace(_as_batch(documents, "documents"), "\r\n?", "\n")
        lines = tf.strings.split(tf.strings.regex_replace(text, "\n$", ""), "\n")  # [B, lines]
        words = self._ids(self._split(lines.flat_values))  # [lines, words]
        eos = tf.fill([words.nrows(), 1], self.eos_id)
        tokens = lines.with_flat_values(tf.concat([words, eos], axis=1)).merge_dims(1, 2)  # [B, N]
        n = tf.cast(tokens.row_lengths(), tf.int32)
        targets = tokens.to_tensor(0)
        inputs = tf.concat([tf.fill([tf.shape(targets)[0], 1], self.eos_id), targets[:, :-1]], axis=1)
        used = tf.sequence_mask(n, tf.shape(targets)[1])
        h, _ = self.model.features(inputs, training=False)
        p_model = tf.exp(-self.model.token_nll(h, targets))
        h = tf.cast(h, tf.float32)
        p_cache, has = adaptation.target_probability(tf.einsum("bth,bjh->btj", h, h), targets, used, targets, 0,
                                                     cache_size, cache_theta)
        lam = tf.where(has & (cache_size > 0), cache_lambda, 0.0)
        log_p = tf.math.log((1.0 - lam) * p_model + lam * p_cache)
        log_prob = tf.reduce_sum(tf.where(used, log_p, 0.0), axis=1)
        unknown = tf.reduce_sum(tf.cast(tf.equal(tokens, Vocabulary.UNK_ID), tf.int32), axis=1)
        return {"log_prob": log_prob, "num_tokens": n, "num_unknown": unknown,
                "perplexity": tf.exp(-log_prob / tf.cast(n, log_prob.dtype))}

    @tf.function(input_signature=[_scalar(tf.int32, "batch_size")])
    def zero_state(self, batch_size):
        return {"state": tf.stack(tf.nest.flatten(self.model.zero_state(batch_size)), axis=1)}  # [B, S, H]

    def _step(self, ids, state):
        """ids [B], state [B, S, H] -> log_probs [B, V], state [B, S, H] (``self.step``, typed in __init__)."""
        layers = tf.unstack(state, len(tf.nest.flatten(self._state_structure)), axis=1)  # S x [B, H]
        logits, new_state = self.model.step(ids, tf.nest.pack_sequence_as(self._state_structure, layers))
        return {"log_probs": tf.nn.log_softmax(logits), "state": tf.stack(tf.nest.flatten(new_state), axis=1)}


def export_saved_model(model, vocab, config, path, start=None, model_dir=None):
    """Writes the SavedModel to ``path`` (replacing it atomically); returns ``path``.  ``start``: the
    sentence start of ``score`` (``evaluation.sentence_start``'s; None: zero); ``model_dir``: where a
    subword model's SentencePiece model is.

    A disk that refuses it (full, read-only) is an RnnLmError; an older
    SavedModel at ``path`` is then left as it was.
    """
    try:
        return _export(model, vocab, config, path, start, get_tokenizer(config.data.level, model_dir))
    except (OSError, tf.errors.OpError) as e:
        raise RnnLmError(f"cannot write the SavedModel to {path} ({reason(e)})") from None


STAGING_PREFIX = ".saved_model-staging-"  # then the pid of the process that writes it


def _export(model, vocab, config, path, start, tokenizer):
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    _remove_stale_staging(parent)
    with tempfile.TemporaryDirectory(dir=parent, prefix=f"{STAGING_PREFIX}{os.getpid()}-") as staging:
        vocab.save(staging)
        module = ServingModule(model, os.path.join(staging, VOCAB_FILE), tokenizer, start)
        target = os.path.join(staging, "saved_model")
        signatures = {"serving_default": module.serve, "generate": module.generate,
                      "score": module.score, "score_document": module.score_document,
                      "step": module.step, "zero_state": module.zero_state,
                      "tokenize": module.tokenize, "detokenize": module.detokenize}
        tf.saved_model.save(module, target, signatures=signatures)
        old = os.path.join(staging, "previous")  # inside the staging folder: removed with it, whatever happens
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(target, path)
    return path


def _remove_stale_staging(parent):
    """Staging folders of exports whose process has ended (killed midway) are removed."""
    for name in os.listdir(parent):
        if not name.startswith(STAGING_PREFIX):
            continue
        pid = name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and is another user's
        pass
    return True


def saved_model_cross_entropy(path, lines):
    """Mean -log p per token of ``lines`` (each ending in <eos>) under a SavedModel, in nats.

    Uses only the SavedModel's own signatures (tokenize, zero_state, step), so
    it checks the exported model itself: one stream from the start context,
    the state carried through, the whole loop in one graph.  Returns
    (mean cross entropy, number of tokens, number of <unk>).
    """
    served = load_saved_model(path, SCORE_SIGNATURES)
    tokenized = served.signatures["tokenize"](text=tf.constant(lines))
    ids = tf.RaggedTensor.from_tensor(tokenized["ids"], lengths=tokenized["lengths"])
    eos = tf.fill([ids.nrows(), 1], Vocabulary.EOS_ID)
    stream = tf.concat([ids, tf.RaggedTensor.from_tensor(eos)], axis=1).flat_values
    step = served.signatures["step"]

    @tf.function
    def total_log_prob(stream):
        def body(i, previous, state, total):
            out = step(ids=tf.reshape(previous, [1]), state=state)
            token = stream[i]
            return i + 1, token, out["state"], total + tf.cast(out["log_probs"][0, token], tf.float64)

        state = served.signatures["zero_state"](batch_size=tf.constant(1))["state"]
        _, _, _, total = tf.while_loop(lambda i, *_: i < tf.size(stream), body,
                                       (tf.constant(0), tf.constant(Vocabulary.EOS_ID), state, tf.constant(0.0, tf.float64)))
        return total

    n = int(tf.size(stream))
    return -float(total_log_prob(stream)) / n, n, int(tf.reduce_sum(tf.cast(tf.equal(stream, Vocabulary.UNK_ID), tf.int32)))
