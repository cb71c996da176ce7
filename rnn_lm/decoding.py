"""Generation with the whole token loop inside the graph.

Priming feeds the prompt through the model one token per step (rows of a
batch may have prompts of different lengths).  Then, until ``<eos>`` or
``max_tokens``:

  sample       draws from softmax(filter(logits)), or takes the argmax when
               temperature is 0 (``filter_logits``: temperature, top-k, top-p);
  beam_search  keeps the ``beam_width`` best hypotheses per prompt.

Every loop is a ``tf.while_loop``, so a whole generation is one graph call,
and the decoding parameters may be Python numbers or scalar tensors (a
SavedModel signature passes tensors).  ``step`` (default ``model.step``) is
the one-token model call; ``xla_step(model)`` is the same compiled with XLA
(the loops themselves stay uncompiled: their output length is a tensor).

The outputs are as wide as the steps taken (the longest continuation, at most
``max_tokens``), so memory follows what is generated, not ``max_tokens``.
"""

import numpy as np
import tensorflow as tf


def _where_state(mask, new, old):
    """Per-row choice between two states of the same structure. mask [B] bool."""
    return tf.nest.map_structure(lambda n, o: tf.where(mask[:, None], n, o), new, old)


def xla_step(model):
    """``model.step`` compiled with XLA: pass it as ``step`` to the functions below."""
    return tf.function(model.step, jit_compile=True)


def prime(model, prompt_ids, prompt_lengths, fused=None, step=None):
    """Feeds each row's prompt through ``model``; returns (last logits [B, V], state).

    prompt_ids [B, P] int32 (padded on the right), prompt_lengths [B] >= 1.
    ``fused``: ``model.fuse()``, if the caller already has it.
    """
    fused = fused or model.fuse()
    step = step or model.step
    batch = tf.shape(prompt_ids)[0]
    state = model.zero_state(batch)
    logits = tf.zeros([batch, model.config.vocab_size])

    def body(t, logits, state):
        step_logits, step_state = step(prompt_ids[:, t], state, fused)
        live = t < prompt_lengths
        return t + 1, tf.where(live[:, None], step_logits, logits), _where_state(live, step_state, state)

    _, logits, state = tf.while_loop(
        lambda t, *_: t < tf.shape(prompt_ids)[1], body, (tf.constant(0), logits, state))
    return logits, state


def filter_logits(logits, temperature=1.0, top_k=0, top_p=1.0):
    """logits [B, V] -> logits to sample from, with the excluded tokens at -inf.

    In this order (as usual, e.g. Holtzman et al. 2020 for top-p):

      temperature  l / T                                  (T clipped to >= 1e-6)
      top-k        keep the k largest; k = 0 keeps all     (ties with the k-th are kept)
      top-p        sort the renormalised top-k distribution p_(1) >= p_(2) >= ...
                   and keep token (i) iff p_(1) + ... + p_(i-1) < top_p: the smallest
                   set whose mass reaches top_p; the top token always; top_p >= 1 keeps all.

    The arguments may be scalar tensors, so the "off" cases are tensor
    conditions, not Python ``if``s; when both filters are off the result is
    exactly ``logits / T``.
    """
    logits = logits / tf.maximum(tf.cast(temperature, logits.dtype), 1e-6)
    top_k = tf.cast(top_k, tf.int32)
    top_p = tf.cast(top_p, logits.dtype)
    # Sorting the vocabulary is most of a decoding step's cost at batch 32:
    # skip it (tf.cond runs one branch) when both filters are off.
    return tf.cond((top_k > 0) | (top_p < 1.0), lambda: _top_k_top_p(logits, top_k, top_p), lambda: logits)


def _top_k_top_p(logits, top_k, top_p):
    vocab = tf.shape(logits)[-1]
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
    neg_inf = tf.constant(-np.inf, logits.dtype)
    ranked = tf.sort(logits, direction="DESCENDING")  # [B, V]
    logits = tf.where(logits < ranked[:, k - 1:k], neg_inf, logits)
    ranked = tf.where(tf.range(vocab) < k, ranked, neg_inf)  # = the top-k logits, sorted
    mass_before = tf.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)
    # top_p >= 1 is tested on its own: rounding can push the cumulative sum of
    # the tail to 1 and would otherwise drop the least likely tokens.
    keep = (mass_before < top_p) | (tf.range(vocab) == 0) | (top_p >= 1.0)
    threshold = tf.reduce_min(tf.where(keep, ranked, np.inf), axis=-1, keepdims=True)
    return tf.where(logits < threshold, neg_inf, logits)


def choose(logits, temperature, top_k, top_p, seed):
    """One token per row: logits [B, V] -> ids [B] int32.

    The argmax when ``temperature`` is 0, else a draw from
    softmax(filter_logits(logits, temperature, top_k, top_p)) with the
    stateless ``seed`` [2], so a caller stepping token by token with seeds
    (s, 0), (s, 1), ... draws what ``sample`` draws with seed s.
    """
    temperature = tf.cast(temperature, tf.float32)
    token = tf.cond(
        temperature > 0,
        lambda: tf.random.stateless_categorical(
            filter_logits(logits, temperature, top_k, top_p), 1, seed=seed, dtype=tf.int32)[:, 0],
        lambda: tf.argmax(logits, axis=-1, output_type=tf.int32))
    # Non-finite logits (a diverged model) make the draw return |V|: keep ids valid.
    return tf.minimum(token, tf.shape(logits)[-1] - 1)


def sample(model, prompt_ids, prompt_lengths, max_tokens, temperature, seed, eos_id, top_k=0, top_p=1.0,
           step=None):
    """Continues each prompt; returns (ids [B, N], lengths [B]).

    ``lengths`` counts the tokens produced, the final ``<eos>`` included;
    positions after it hold ``eos_id``.  A row ends at an ``<eos>`` only once
    it has something: a prompt, or a token other than ``<eos>`` produced (a
    model that often starts with a blank line, as WikiText's do, still gives
    text from an empty prompt; the leading ``<eos>`` tokens are kept in ``ids``).  N = max(lengths) <= ``max_tokens``
    is the steps taken: they end when every row has its ``<eos>``.
    ``temperature`` 0 is greedy (the argmax, whatever ``top_k`` and
    ``top_p``); otherwise each token is drawn from
    softmax(filter_logits(logits, temperature, top_k, top_p)).
    ``seed`` (int) makes sampling reproducible: step t is ``choose`` with the
    stateless seed (seed, t).
    """
    fused = model.fuse()  # once for the whole generation
    logits, state = prime(model, prompt_ids, prompt_lengths, fused, step)
    _, _, _, flags, tokens = sample_steps(model, logits, state, sampling_start(prompt_lengths), 0, max_tokens,
                                          temperature, seed, eos_id, top_k, top_p, fused, step)
    return tokens, flags[2]


def sampling_start(prompt_lengths):
    """Each row's flags before its first sampled token: (finished, produced something, tokens
    produced); a prompt longer than the start context ``<eos>`` counts as something."""
    has_prompt = tf.cast(prompt_lengths, tf.int32) > 1
    return tf.zeros_like(has_prompt), has_prompt, tf.zeros_like(prompt_lengths, tf.int32)


def sample_steps(model, logits, state, flags, start, stop, temperature, seed, eos_id, top_k=0, top_p=1.0,
                 fused=None, step=None):
    """Steps ``start`` .. ``stop`` - 1 of ``sample``'s loop, or fewer when every row has ended.

    Returns (t, logits, state, flags, tokens [B, t - start]): the next step, what it continues
    from, and the tokens drawn.  Sampling in pieces (start = 0, then each piece's t) draws exactly
    the tokens of one call, so a caller can show progress between the pieces.
    """
    fused = fused or model.fuse()
    step = step or model.step
    temperature = tf.cast(temperature, tf.float32)
    seed = tf.cast(seed, tf.int64)
    start, stop = tf.cast(start, tf.int32), tf.cast(stop, tf.int32)

    def body(t, logits, state, flags, out):
        finished, produced, lengths = flags
        token = choose(logits, temperature, top_k, top_p, tf.stack([seed, tf.cast(t, tf.int64)]))
        token = tf.where(finished, eos_id, token)
        lengths += tf.cast(~finished, tf.int32)
        finished |= (token == eos_id) & produced
        produced |= token != eos_id
        logits, state = step(token, state, fused)
        return t + 1, logits, state, (finished, produced, lengths), out.write(t - start, token)

    def cond(t, logits, state, flags, out):
        return (t < stop) & ~tf.reduce_all(flags[0])

    out = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None])
    t, logits, state, flags, out = tf.while_loop(cond, body, (start, logits, state, flags, out))
    # [T, B] -> [B, T], transposed as float32 (exact for ids below 2^24): an integer transpose makes
    # oneDNN write an error line on CPUs it does not take integers on, though the result is right.
    steps = tf.cast(tf.transpose(tf.cast(out.stack(), tf.float32)), tf.int32)
    tokens = tf.reshape(steps, [tf.shape(flags[0])[0], t - start])
    return t, logits, state, flags, tokens


def beam_search(model, prompt_ids, prompt_lengths, max_tokens, beam_width, eos_id, length_penalty=0.0,
                step=None):
    """The ``beam_width`` best continuations of each prompt, best first.

    Returns (ids [B, K, N] int32, lengths [B, K] int32, scores [B, K]
    float32), K = ``beam_width`` (a Python int: it sets shapes) and N =
    max(lengths) <= ``max_tokens`` the steps taken.  A hypothesis
    y_1..y_n ends at ``<eos>``, which counts in n (as in ``sample``); later
    positions hold ``eos_id``.  Its score is the GNMT one (Wu et al. 2016):

      score(y) = sum_t log p(y_t | prompt, y_<t) / lp(n),   lp(n) = ((5 + n) / 6) ** length_penalty

    so ``length_penalty`` 0 ranks by the plain sum and larger values favour
    longer hypotheses.  Each step extends every live hypothesis by every token,
    carries every finished one over unchanged, and keeps the K best of these
    K * V candidates by score; it stops when all K are finished or after
    ``max_tokens`` tokens.  Rows scoring -inf are padding: the prompt had fewer
    than K distinct hypotheses.
    """
    k, vocab = beam_width, model.config.vocab_size
    fused = model.fuse()
    step = step or model.step
    logits, state = prime(model, prompt_ids, prompt_lengths, fused, step)
    batch = tf.shape(prompt_ids)[0]
    max_tokens = tf.cast(max_tokens, tf.int32)
    alpha = tf.cast(length_penalty, tf.float32)
    lp = lambda n: ((5.0 + tf.cast(n, tf.float32)) / 6.0) ** alpha

    # Rows b*K .. b*K + K-1 are prompt b's beams, so model.step sees one batch of B*K.
    logits = tf.repeat(logits, k, axis=0)  # [B*K, V]
    state = tf.nest.map_structure(lambda s: tf.repeat(s, k, axis=0), state)
    # Only beam 0 starts live: K live copies of one prompt would fill the
    # beam with K copies of the same hypothesis.
    sums = tf.tile(tf.concat([[0.0], tf.fill([k - 1], -np.inf)], 0)[None], [batch, 1])  # [B, K]
    # A finished hypothesis's only continuation: <eos> again, at no cost.
    eos_only = tf.where(tf.range(vocab) == eos_id, 0.0, -np.inf)  # [V]
    offsets = tf.range(batch)[:, None] * k  # [B, 1]: beam -> row of the B*K batch

    def body(t, logits, state, sums, lengths, finished, ids):
        log_probs = tf.reshape(tf.nn.log_softmax(logits), [batch, k, vocab])
        log_probs = tf.where(finished[..., None], eos_only, log_probs)
        cand_sums = tf.reshape(sums[..., None] + log_probs, [batch, k * vocab])
        cand_lengths = lengths + tf.cast(~finished, tf.int32)  # [B, K]
        cand_scores = cand_sums / tf.repeat(lp(cand_lengths), vocab, axis=1)
        _, best = tf.math.top_k(cand_scores, k)  # [B, K], best first
        beam, token = best // vocab, best % vocab
        sums = tf.gather(cand_sums, best, batch_dims=1)
        lengths = tf.gather(cand_lengths, beam, batch_dims=1)
        # A -inf hypothesis is padding: finishing it lets the loop stop early.
        finished = tf.gather(finished, beam, batch_dims=1) | (token == eos_id) | tf.math.is_inf(sums)
        ids = tf.concat([tf.gather(ids, beam, batch_dims=1), token[..., None]], axis=2)  # [B, K, t + 1]
        rows = tf.reshape(offsets + beam, [-1])
        state = tf.nest.map_structure(lambda s: tf.gather(s, rows), state)
        logits, state = step(tf.reshape(token, [-1]), state, fused)
        return t + 1, logits, state, sums, lengths, finished, ids

    def cond(t, logits, state, sums, lengths, finished, ids):
        return (t < max_tokens) & ~tf.reduce_all(finished)

    loop_vars = (tf.constant(0), logits, state, sums, tf.zeros([batch, k], tf.int32),
                 tf.zeros([batch, k], tf.bool), tf.zeros([batch, k, 0], tf.int32))
    # ids grows by one token a step: as wide as the steps taken, not max_tokens.
    invariants = tf.nest.map_structure(lambda v: v.shape, loop_vars[:-1]) + (tf.TensorShape([None, k, None]),)
    _, _, _, sums, lengths, _, ids = tf.while_loop(cond, body, loop_vars, shape_invariants=invariants)
    # The last top_k ranked by exactly these scores, so the beams are already best first.
    return ids, lengths, sums / lp(lengths)
