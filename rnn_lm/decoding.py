"""Generation with the whole token loop inside the graph.

Priming feeds the prompt through the model one token per step (rows of a
batch may have prompts of different lengths); generation then samples from
softmax(logits / temperature), or takes the argmax when temperature is 0,
until ``<eos>`` or ``max_tokens``.  Both loops are ``tf.while_loop``s, so a
whole generation is one graph call.
"""

import tensorflow as tf


def _where_state(mask, new, old):
    """Per-row choice between two states of the same structure. mask [B] bool."""
    return tf.nest.map_structure(lambda n, o: tf.where(mask[:, None], n, o), new, old)


def prime(model, prompt_ids, prompt_lengths, fused=None):
    """Feeds each row's prompt through ``model``; returns (last logits [B, V], state).

    prompt_ids [B, P] int32 (padded on the right), prompt_lengths [B] >= 1.
    ``fused``: ``model.fuse()``, if the caller already has it.
    """
    fused = fused or model.fuse()
    batch = tf.shape(prompt_ids)[0]
    state = model.zero_state(batch)
    logits = tf.zeros([batch, model.config.vocab_size])

    def body(t, logits, state):
        step_logits, step_state = model.step(prompt_ids[:, t], state, fused)
        live = t < prompt_lengths
        return t + 1, tf.where(live[:, None], step_logits, logits), _where_state(live, step_state, state)

    _, logits, state = tf.while_loop(
        lambda t, *_: t < tf.shape(prompt_ids)[1], body, (tf.constant(0), logits, state))
    return logits, state


def sample(model, prompt_ids, prompt_lengths, max_tokens, temperature, seed, eos_id):
    """Continues each prompt; returns (ids [B, max_tokens], lengths [B]).

    ``lengths`` counts the tokens produced, the final ``<eos>`` included;
    positions after it hold ``eos_id``.  ``temperature`` 0 is greedy.
    ``seed`` (int) makes sampling reproducible (stateless random ops).
    """
    fused = model.fuse()  # once for the whole generation
    logits, state = prime(model, prompt_ids, prompt_lengths, fused)
    batch = tf.shape(prompt_ids)[0]
    temperature = tf.cast(temperature, tf.float32)
    seed = tf.cast(seed, tf.int64)
    max_tokens = tf.cast(max_tokens, tf.int32)

    def body(t, logits, state, finished, lengths, out):
        greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
        drawn = tf.random.stateless_categorical(
            logits / tf.maximum(temperature, 1e-6), 1, seed=tf.stack([seed, tf.cast(t, tf.int64)]),
            dtype=tf.int32)[:, 0]
        token = tf.where(temperature > 0, drawn, greedy)
        token = tf.where(finished, eos_id, token)
        lengths += tf.cast(~finished, tf.int32)
        finished |= token == eos_id
        logits, state = model.step(token, state, fused)
        return t + 1, logits, state, finished, lengths, out.write(t, token)

    def cond(t, logits, state, finished, *_):
        return (t < max_tokens) & ~tf.reduce_all(finished)

    out = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None])
    _, _, _, _, lengths, out = tf.while_loop(
        cond, body, (tf.constant(0), logits, state, tf.zeros([batch], tf.bool),
                     tf.zeros([batch], tf.int32), out))
    ids = tf.transpose(out.stack())  # [B, steps taken]
    ids = tf.pad(ids, [[0, 0], [0, max_tokens - tf.shape(ids)[1]]], constant_values=eos_id)
    return ids, lengths
