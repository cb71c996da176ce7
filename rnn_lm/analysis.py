"""Measuring the lecture's claims: how the gradient flows back through time.

``gradient_flow`` gives, for every layer, the norm of dJ_T/dh_t, the gradient
of the cost at the last time step T with respect to the hidden state at an
earlier step t, for each lag T - t.  It is the quantity behind "with many
recursions, the gradients can vanish or explode": for an Elman RNN

    dJ_T/dh_t = dJ_T/dh_T  prod_{s=t+1..T} diag(f'(a_s)) U^T

shrinks or grows geometrically with the lag, while the LSTM's and GRU's gates
can keep h_t ~ h_{t-1} and the gradient alive.

The loop is the model's own, ``rnn_lm.unroll``, with a step hook that adds a
zero "probe" to every h_t; the gradient with respect to the probe at t is the
total derivative dJ_T/dh_t, through every later step.  ``gate_trace`` runs the
same loop with a hook that records each cell's keep gate.
"""

import tensorflow as tf

from rnn_lm import losses
from rnn_lm.unroll import unroll


def gradient_flow(model, ids, targets):
    """Norms of dJ_T/dh_t for one batch: a list (per layer) of [T] arrays, index = lag T - t.

    ids, targets [B, T] int; J_T is the cross entropy of the last position,
    averaged over the batch; the norm is over the batch and the units.
    """
    return [g.numpy() for g in _flow_graph(model, tf.convert_to_tensor(ids), tf.convert_to_tensor(targets))]


@tf.function(reduce_retracing=True)
def _flow_graph(model, ids, targets):
    batch, num_steps = tf.shape(ids)[0], tf.shape(ids)[1]
    x = model.embed(ids)
    # One probe per layer, a zero [B, H] for every step: only there to be differentiated.
    probes = [tf.zeros([num_steps, batch, model.config.hidden_size], x.dtype) for _ in model.cells]
    with tf.GradientTape() as tape:
        tape.watch(probes)
        for cell, state, probe in zip(model.cells, model.zero_state(batch), probes):
            x, _ = unroll(cell, x, state, step_hook=_add_probe(probe))  # [B, T, H]
        logits = model.output_logits(x[:, -1])  # [B, V]
        cost = tf.reduce_mean(losses.token_cross_entropy(logits, targets[:, -1]))
    grads = tape.gradient(cost, probes)  # [T, B, H] each
    return [tf.reverse(tf.norm(tf.convert_to_tensor(g), axis=[1, 2]), [0]) for g in grads]


def _add_probe(probe):
    """A step hook that adds probe[t] [B, H] to h_t, in the output and in the state carried on."""
    def hook(step):
        h = step.h + tf.gather(probe, step.t)
        return h, _replace_h(step.state, h)
    return hook


def _replace_h(state, h):
    """The state with h replaced (the LSTM's state is (h, c); the others' is h)."""
    return state._replace(h=h) if hasattr(state, "_replace") else h


def spectral_norms(model):
    """{layer/name: largest singular value} of every recurrent matrix (U, W_h*)."""
    norms = {}
    for layer, cell in enumerate(model.cells, start=1):
        for name in cell.RECURRENT_WEIGHTS:
            norms[f"layer_{layer}/{name}"] = float(tf.linalg.svd(getattr(cell, name), compute_uv=False)[0])
    return norms


def gate_trace(model, ids):
    """The gates and the state's motion over a batch ids [B, T], per layer.

    Returns a list (per layer) of dicts of NumPy arrays:
      "keep":   [T, B, H], the gate that carries the old state over: the
                forget gate f (LSTM) or the update gate z (GRU); absent for Elman;
      "change": [T - 1, B], ||h_t - h_{t-1}|| / ||h_{t-1}|| for t = 1 .. T-1,
                how far the state moves in one step (the lecture's h_t ~ h_{t-1}
                is a change near 0).
    """
    x = model.embed(tf.convert_to_tensor(ids))
    traces = []
    for cell, state in zip(model.cells, model.zero_state(x.shape[0])):
        keeps = []
        x, _ = unroll(cell, x, state, step_hook=_record_keep_gate(cell, keeps))  # [B, T, H]
        h_prev, h = x[:, :-1], x[:, 1:]  # [B, T-1, H]: h_(t-1) and h_t for t = 1 .. T-1
        change = tf.norm(h - h_prev, axis=-1) / tf.norm(h_prev, axis=-1)  # [B, T-1]
        trace = {"change": tf.transpose(change).numpy()}
        if keeps:
            trace["keep"] = tf.stack(keeps).numpy()
        traces.append(trace)
    return traces


def _record_keep_gate(cell, keeps):
    """A step hook that appends the cell's keep gate [B, H] to ``keeps`` (eager; nothing for Elman)."""
    def hook(step):
        keep = cell.keep_gate(step.x_proj, step.prev_state, step.fused)
        if keep is not None:
            keeps.append(keep)
    return hook


def gate_statistics(model, ids):
    """``summarize_gates`` of ``gate_trace(model, ids)``."""
    return summarize_gates(gate_trace(model, ids))


def summarize_gates(traces):
    """``gate_trace``'s arrays summarised, per layer, as a dict of floats:

      "keep":      the mean keep gate (f or z; absent for Elman);
      "keep>0.9":  the fraction of (row, step, unit) with the keep gate above 0.9;
      "change":    the mean of ||h_t - h_{t-1}|| / ||h_{t-1}||;
      "change<0.1": the fraction of (row, step) whose state moved by less than 10 %.
    """
    stats = []
    for trace in traces:
        row = {"change": float(trace["change"].mean()),
               "change<0.1": float((trace["change"] < 0.1).mean())}
        if "keep" in trace:
            row["keep"] = float(trace["keep"].mean())
            row["keep>0.9"] = float((trace["keep"] > 0.9).mean())
        stats.append(row)
    return stats


def agreement_accuracy(model, vocab, distances, pairs=200, seed=0, start=None, grammar=None):
    """{distance: fraction of built-in-corpus sentence pairs (of ``grammar``, a name of
    ``grammar.GRAMMARS``; None: the first) scored right}.

    Each pair differs only in the main verb's number, with ``distance`` tokens
    (and an attractor noun of the other number) between subject and verb
    (``rnn_lm.data.grammar.agreement_pairs``); a pair is right when the
    grammatical sentence gets the higher log-probability.  Every sentence starts
    from ``start`` (``evaluation.boundary_state``'s, the state a stream-trained
    model carries into a sentence; None: the zero state).
    """
    from rnn_lm.data import grammar as grammars
    from rnn_lm.data.tokenizers import get_tokenizer
    from rnn_lm.evaluation import SentenceScorer

    scorer = SentenceScorer(model, vocab, get_tokenizer("word"), start=start)
    accuracy = {}
    for distance in distances:
        sentence_pairs = grammars.agreement_pairs(distance, pairs, seed, grammar or grammars.DEFAULT_GRAMMAR)
        scores = [log_prob for _, log_prob, _, _ in scorer.score([s for pair in sentence_pairs for s in pair])]
        correct = sum(good > bad for good, bad in zip(scores[::2], scores[1::2]))
        accuracy[distance] = correct / len(sentence_pairs)
    return accuracy
