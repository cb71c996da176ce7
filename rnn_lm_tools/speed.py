"""Benchmark: rnn_lm's train step and generation against Keras' built-in layers (and PyTorch).

What is compared, for one cell and one model size (vocabulary |V|, 2 layers,
embedding = hidden = H, batch B, window T):

    variant      train step
    rnn_lm       rnn_lm.train_step.TrainStep, the one training uses, with
                 TensorFlow's autodiff through the unrolled loop
    rnn_lm_bptt  the same with backpropagation through time written out
                 (``--backward=written``, rnn_lm/bptt.py)
    rnn_lm_xla   the same with jit_compile=True
    rnn_lm_bf16  the same with bfloat16 mixed precision (cells and softmax
                 product in bfloat16, variables, state and loss in float32)
    rnn_lm_fp16  the same with float16 and dynamic loss scaling
    rnn_lm_adaptive  the same with the adaptive softmax (``--softmax=adaptive``,
                 its default cutoffs for the vocabulary, factor 4)
    keras        Embedding -> 2 x keras.layers.LSTM / GRU(reset_after=False) /
                 SimpleRNN -> Dense -> mean sparse cross entropy -> tape ->
                 clip_by_global_norm -> SGD, final state carried into the next
                 step in variables, exactly as TrainStep does
    torch        the same with torch.nn.LSTM / GRU / RNN (only if torch imports;
                 its GRU is the reset-after form, a different function with
                 the same matmuls), run in a child process that imports torch
                 and not TensorFlow (``rnn_lm_tools.torch_steps``)
    torch_adaptive  the same with torch.nn.AdaptiveLogSoftmaxWithLoss, the
                 same cutoffs and factor
    softmax      the profile's other half: TrainStep's work without the
                 recurrence (embedding -> softmax -> loss -> gradients ->
                 clip -> SGD), the ceiling a free recurrence would reach; the
                 full step's time minus this one is the recurrence's share

and greedy generation: ``rnn_lm.decoding.sample`` (the whole token loop is one
graph call) against the Keras cells called once per token from Python; and
evaluation: the exact single stream against training's default batched one.

How it is timed (``rnn_lm_tools.timing``): on a small shared machine absolute
speed drifts, so the variants run interleaved, A B C then C B A, round after
round, in one process; each round gives every variant's seconds per step, and
the report is the median with the range over rounds, plus the per-round ratio
to Keras (paired, so drift common to both cancels).  The numbers measured with
it, and on what, are in docs/performance.md.

The large-vocabulary sizes (wt2: WikiText-2's 33,278 words, wt103: WikiText-103's 267,735) draw their
random ids from a Zipf law, p(rank r) proportional to 1/r, as words in text are distributed: how
often a target falls outside the adaptive softmax's head, which decides its cost, is then about as in
text.  The others draw them uniformly.

FLOPs are counted analytically, matmuls only (gates, softmax and the loss are
elementwise and ignored): per token and layer, the input projection 2·in·G·H
and the recurrence 2·H·G·H (G = 4 LSTM, 3 GRU, 1 Elman), and the softmax
2·H·|V|; a training step is 3x the forward (the backward pass computes two
products, for inputs and weights, per forward product).

Memory (``rnn_lm_tools.machine``): the process' resident set after each
variant's first calls, current and high-water mark; the mark only grows, so per
variant it says how high the process had gone by then, not what that variant
needs alone.
"""

import dataclasses
import itertools
import math
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from rnn_lm import decoding
from rnn_lm import losses
from rnn_lm import train_step
from rnn_lm.cells import CELLS
from rnn_lm.config import CELL_TYPES, ModelConfig
from rnn_lm.errors import RnnLmError
from rnn_lm.model import RNNLanguageModel
from rnn_lm_tools import machine
from rnn_lm_tools import timing
from rnn_lm_tools.sizes import INIT_SCALE, LEARNING_RATE, MAX_GRAD_NORM, SIZES, random_batches  # noqa: F401
from rnn_lm_tools.torch_steps import TorchUnavailable, TorchWorker

TRAIN_VARIANTS = ("rnn_lm", "rnn_lm_bptt", "rnn_lm_xla", "rnn_lm_bf16", "rnn_lm_fp16", "rnn_lm_adaptive",
                  "keras", "torch", "torch_adaptive", "softmax")
ADAPTIVE_VARIANTS = ("rnn_lm_adaptive", "torch_adaptive")
MIXED_PRECISION = {"rnn_lm_bf16": "bfloat16", "rnn_lm_fp16": "float16"}
# The variants whose matmuls are those of step_matmuls, in float32: their "% of limit".
FLOAT32_FULL_SOFTMAX = ("rnn_lm", "rnn_lm_bptt", "rnn_lm_xla", "keras", "torch", "softmax")
# How each rnn_lm variant differentiates the recurrence (TrainConfig.backward); the others as training
# does by default ("auto": rnn_lm/bptt.py's choice by cell and size).
BACKWARD = {"rnn_lm": "autodiff", "rnn_lm_xla": "autodiff", "rnn_lm_bptt": "written"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to run; ``rnn_lm_tools.benchmark`` fills it from flags."""
    cells: tuple = CELL_TYPES
    configs: tuple = ("small", "medium")  # names in SIZES
    variants: tuple = TRAIN_VARIANTS
    rounds: int = 6
    steps_per_round: int = 3
    warmup: int = 1
    generate_tokens: int = 50
    generate_batch_sizes: tuple = (1, 32)
    eval_tokens: int = 20_000
    peak_size: int = 2048
    seed: int = 0
    adaptive_cutoffs: str = ""  # the large vocabularies' adaptive softmax; empty: training's defaults
    adaptive_factor: float = None  # its projection factor; None: training's default

    def sizes(self):
        """The ModelSize of each config, the large vocabularies' with the adaptive softmax's settings."""
        return [dataclasses.replace(SIZES[name], adaptive_cutoffs=self.adaptive_cutoffs,
                                    adaptive_factor=self.adaptive_factor) if SIZES[name].zipf
                else SIZES[name] for name in self.configs]

    def validate(self):
        for name, allowed in (("cells", CELL_TYPES), ("configs", tuple(SIZES)), ("variants", TRAIN_VARIANTS)):
            values = getattr(self, name)
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise RnnLmError(f"--{name} must be a non-empty list from {', '.join(allowed)}, got "
                                 f"{','.join(values) or 'nothing'}")
        for name in ("rounds", "steps_per_round"):
            if getattr(self, name) <= 0:
                raise RnnLmError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in ("warmup", "generate_tokens", "peak_size", "eval_tokens"):
            if getattr(self, name) < 0:
                raise RnnLmError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if any(b <= 0 for b in self.generate_batch_sizes):
            raise RnnLmError(f"--generate_batch_sizes must be positive, got {self.generate_batch_sizes}")
        large = [size for size in self.sizes() if size.zipf]
        given = [flag for flag, value in (("--adaptive_cutoffs", self.adaptive_cutoffs),
                                          ("--adaptive_factor", self.adaptive_factor is not None)) if value]
        if given and not large:
            raise RnnLmError(f"{given[0]} is for the large vocabularies' configs ("
                             f"{', '.join(name for name, size in SIZES.items() if size.zipf)}), and --configs has none")
        for size in large:
            size.adaptive_config.validate()  # the cutoffs against this vocabulary's size, the factor
        return self


# ----------------------------------------------------------------------------
# FLOPs.

def forward_flops(cell, size):
    """Matmul FLOPs of one forward pass over a [B, T] batch (multiply-add = 2)."""
    G, H = CELLS[cell].GATES, size.hidden_size
    in_dim = H  # embedding = hidden, so every layer's input is H wide
    per_token = size.num_layers * (2 * in_dim * G * H + 2 * H * G * H) + 2 * H * size.vocab_size
    return size.tokens_per_step * per_token


def train_flops(cell, size):
    """Matmul FLOPs of one training step: forward plus a backward of twice the forward."""
    return 3 * forward_flops(cell, size)


def softmax_train_flops(size):
    """Matmul FLOPs of the softmax part of a training step (the ``softmax`` variant's)."""
    return 3 * size.tokens_per_step * 2 * size.hidden_size * size.vocab_size


STEP_PARTS = ("step", "softmax", "recurrence")


def step_matmuls(cell, size, part="step"):
    """The matmuls of one training step, {(m, k, n): how many} for C [m, n] = A [m, k] B [k, n], with
    the recurrent weights' gradient as one product over the window (the form rnn_lm/bptt.py computes;
    autodiff's T products of [H, B] x [B, G*H] do the same FLOPs slower).  ``part``: the whole "step",
    its "softmax" part or its "recurrence" (the rest).  The step's FLOPs add up to ``train_flops``, the
    softmax part's to ``softmax_train_flops``."""
    G, H, V = CELLS[cell].GATES, size.hidden_size, size.vocab_size
    B, T = size.batch_size, size.num_steps
    counts = {}

    def add(m, k, n, times=1):
        counts[(m, k, n)] = counts.get((m, k, n), 0) + times

    if part not in STEP_PARTS:
        raise ValueError(f"part must be one of {STEP_PARTS}, got {part!r}")
    if part != "softmax":
        for _ in range(size.num_layers):
            add(B * T, H, G * H)      # the input projection, all steps at once
            add(B, H, G * H, T)       # the recurrence, step by step
            add(H, B * T, G * H, 2)   # dJ/dW_x and dJ/dU, each one product over the window
            add(B * T, G * H, H)      # dJ/dx
            add(B, G * H, H, T)       # dJ/dh_(t-1), step by step
    if part != "recurrence":
        add(B * T, H, V)              # the logits
        add(H, B * T, V)              # dJ/dV
        add(B * T, V, H)              # dJ/dh
    return counts


def matmul_limit(counts, min_gflop=0.5, rounds=3, max_repeats=256):
    """The time the matmuls ``counts`` (``step_matmuls``) take at the rate this machine reaches on each
    shape alone: {"seconds", "gflops" (their FLOPs over that time), "rates": {"m x k x n": GFLOP/s}}.
    Each shape is timed as enough independent products in one graph call to make ``min_gflop`` (a
    call's overhead would dominate a small product), at most ``max_repeats``, the best of ``rounds``."""
    rates = {}
    for (m, k, n) in counts:
        each = 2 * m * k * n
        repeats = min(max_repeats, max(1, math.ceil(min_gflop * 1e9 / each)))
        a, b = tf.random.normal([repeats, m, k]), tf.random.normal([k, n])
        # One 2-D product per repeat (not a batched matmul); one element of each out, so no copy is timed.
        products = tf.function(lambda a, b: tf.add_n([tf.matmul(a[r], b)[0, 0] for r in range(repeats)]))
        float(products(a, b))
        best = math.inf
        for _ in range(rounds):
            start = time.perf_counter()
            float(products(a, b))
            best = min(best, time.perf_counter() - start)
        rates[f"{m}x{k}x{n}"] = repeats * each / best / 1e9
    return at_rates(counts, rates)


def at_rates(counts, rates):
    """The matmuls ``counts`` at ``rates`` ({"m x k x n": GFLOP/s}, covering them): {"seconds", "gflops",
    "rates" (theirs)}."""
    seconds, flops, theirs = 0.0, 0, {}
    for (m, k, n), count in counts.items():
        key = f"{m}x{k}x{n}"
        theirs[key] = rates[key]
        seconds += count * 2 * m * k * n / (rates[key] * 1e9)
        flops += count * 2 * m * k * n
    return {"seconds": seconds, "gflops": flops / seconds / 1e9, "rates": theirs}


# ----------------------------------------------------------------------------
# The compared train steps.

def make_rnn_lm(cell, size, seed=0, compute_dtype="float32", softmax="full", backward="autodiff"):
    """rnn_lm's language model at ``size``, initialised uniform(-0.1, 0.1) like training."""
    keras.utils.set_random_seed(seed)
    return RNNLanguageModel(ModelConfig(
        vocab_size=size.vocab_size, cell=cell, num_layers=size.num_layers, hidden_size=size.hidden_size,
        embedding_size=size.hidden_size, init_scale=INIT_SCALE, softmax=softmax,
        **(dict(adaptive_cutoffs=size.adaptive_cutoffs, adaptive_factor=size.factor) if softmax == "adaptive"
           else {})), compute_dtype=compute_dtype,
        backward=backward)


def make_rnn_lm_step(model, size, jit_compile=False, loss_scale=False):
    """rnn_lm's real train step (``train_step.TrainStep``) with SGD on ``model`` (loss-scaled for float16)."""
    optimizer = _built_sgd(model.trainable_variables)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return train_step.TrainStep(model, optimizer, size.batch_size, MAX_GRAD_NORM, jit_compile=jit_compile)


class KerasLM(keras.Model):
    """The same language model on Keras' built-in layers.

    Embedding [|V|, H] -> num_layers x (LSTM | GRU(reset_after=False) |
    SimpleRNN) -> Dense(|V|).  ``reset_after=False`` is the lecture's GRU (the
    reset gate before the product with W_hg), the one rnn_lm implements.
    """

    LAYERS = {"lstm": keras.layers.LSTM, "gru": lambda H, **kw: keras.layers.GRU(H, reset_after=False, **kw),
              "elman": keras.layers.SimpleRNN}

    def __init__(self, cell, size, **kwargs):
        super().__init__(**kwargs)
        self.cell_type = cell
        self.size = size
        H = size.hidden_size
        self.embedding = keras.layers.Embedding(size.vocab_size, H)
        self.rnn_layers = [self.LAYERS[cell](H, return_sequences=True, return_state=True)
                           for _ in range(size.num_layers)]
        self.dense = keras.layers.Dense(size.vocab_size)
        self.embedding.build((None, None))
        for layer in self.rnn_layers:
            layer.build((None, None, H))
        self.dense.build((None, H))

    def zero_state(self, batch_size):
        """Per layer, the list of state tensors Keras takes as ``initial_state``."""
        n = 2 if self.cell_type == "lstm" else 1
        return [[tf.zeros([batch_size, self.size.hidden_size])] * n for _ in self.rnn_layers]

    def call(self, ids, state):
        """ids [B, T] -> (logits [B, T, |V|], final state)."""
        x = self.embedding(ids)
        new_state = []
        for layer, layer_state in zip(self.rnn_layers, state):
            x, *layer_state = layer(x, initial_state=layer_state)  # x: [B, T, H]
            new_state.append(layer_state)
        return self.dense(x), new_state

    def copy_from(self, model):
        """Takes the weights of an rnn_lm ``RNNLanguageModel`` of the same cell and size.

        Keras fuses each cell's gates into one kernel, recurrent kernel and
        bias, in its own gate order: LSTM i, f, c(= the lecture's g), o; GRU
        z, r, h(= g).  If this mapping were wrong the two models would compute
        different losses, which the tests check.
        """
        order = {"lstm": "ifgo", "gru": "zrg"}.get(self.cell_type)
        self.embedding.embeddings.assign(model.embedding)
        for layer, cell in zip(self.rnn_layers, model.cells):
            kernel, recurrent, bias = layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias
            if order is None:  # Elman: h = tanh(x W + h U + b)
                kernel.assign(cell.W), recurrent.assign(cell.U), bias.assign(cell.b)
                continue
            kernel.assign(tf.concat([getattr(cell, f"W_x{g}") for g in order], axis=1))
            recurrent.assign(tf.concat([getattr(cell, f"W_h{g}") for g in order], axis=1))
            bias.assign(tf.concat([getattr(cell, f"b_{g}") for g in order], axis=0))
        self.dense.kernel.assign(model.V)
        self.dense.bias.assign(model.b_y)


def _built_sgd(variables):
    optimizer = keras.optimizers.SGD(LEARNING_RATE)
    optimizer.build(variables)
    return optimizer


def _clipped_update(optimizer, tape, loss, variables):
    """TrainStep's update: gradients (repeated embedding rows summed) -> clip_by_global_norm -> apply;
    returns the norm before clipping."""
    grads = [train_step.sum_duplicates(g) for g in tape.gradient(loss, variables)]
    grads, grad_norm = tf.clip_by_global_norm(grads, MAX_GRAD_NORM)
    optimizer.apply_gradients(zip(grads, variables))
    return grad_norm


class KerasTrainStep:
    """TrainStep's work on ``KerasLM``: loss, tape, clip_by_global_norm, SGD, carried state."""

    def __init__(self, model, batch_size):
        self.model = model
        self.optimizer = _built_sgd(model.trainable_variables)
        self._structure = model.zero_state(batch_size)
        self.carried_state = [tf.Variable(z, trainable=False) for z in tf.nest.flatten(self._structure)]
        self._step_fn = tf.function(self._step)

    def __call__(self, inputs, targets):
        """inputs, targets [B, T] int32 -> {"loss", "grad_norm"}."""
        return self._step_fn(inputs, targets)

    def _step(self, inputs, targets):
        state = tf.nest.pack_sequence_as(self._structure, [v.read_value() for v in self.carried_state])
        with tf.GradientTape() as tape:
            logits, new_state = self.model(inputs, state)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
        grad_norm = _clipped_update(self.optimizer, tape, loss, self.model.trainable_variables)
        for var, value in zip(self.carried_state, tf.nest.flatten(new_state)):
            var.assign(value)  # read as a plain value next step: backprop stops at the window edge
        return {"loss": loss, "grad_norm": grad_norm}


class SoftmaxOnlyStep:
    """TrainStep's work with the recurrence left out: E[w] -> logits -> mean cross entropy -> tape ->
    clip_by_global_norm -> SGD, on an rnn_lm model's own embedding and output weights."""

    def __init__(self, model):
        self.model = model
        self.variables = [model.embedding, model.V, model.b_y]
        self.optimizer = _built_sgd(self.variables)
        self._step_fn = tf.function(self._step)

    def __call__(self, inputs, targets):
        return self._step_fn(inputs, targets)

    def _step(self, inputs, targets):
        with tf.GradientTape() as tape:
            loss = losses.sequence_cross_entropy(self.model.output_logits(self.model.embed(inputs)), targets)
        return {"loss": loss, "grad_norm": _clipped_update(self.optimizer, tape, loss, self.variables)}


def make_keras_step(cell, size, weights_from):
    """(KerasLM with the weights of the rnn_lm model ``weights_from``, its train step)."""
    model = KerasLM(cell, size)
    model.copy_from(weights_from)
    return model, KerasTrainStep(model, size.batch_size)


def _tf_step_fn(step, batches):
    """A TrainStep-like object as a no-argument callable returning the loss (which syncs)."""
    data = itertools.cycle([(tf.constant(x), tf.constant(y)) for x, y in batches])

    def run():
        return float(step(*next(data))["loss"])

    return run


# ----------------------------------------------------------------------------
# The two benchmarks.

def benchmark_training(cell, size, variants=TRAIN_VARIANTS, rounds=6, steps_per_round=5, warmup=2,
                       seed=0, peak_gflops=None):
    """Training speed of ``variants`` for one cell and size; returns one result dict per variant.

    All variants start from the same weights (the torch one excepted) and
    train on the same random batches; "torch" is dropped when it does not
    import.
    """
    batches = random_batches(size, seed=seed)
    fns, runtimes, rows, workers, backwards = {}, {}, {}, [], {}
    for variant in variants:
        if variant.startswith("torch") and machine.torch_version() is None:
            continue
        if variant in ADAPTIVE_VARIANTS and not size.zipf:
            continue  # the adaptive softmax is for the large vocabularies
        logging.info("%s %s: building %s", size.name, cell, variant)
        if variant.startswith("torch"):  # in a process of its own (rnn_lm_tools.torch_steps)
            try:
                worker = TorchWorker(cell, size, seed, adaptive=variant == "torch_adaptive")
            except TorchUnavailable as e:
                logging.warning("%s %s: %s skipped: %s", size.name, cell, variant, e)
                continue
            workers.append(worker)
            fns[variant] = worker
            runtimes[variant] = "torch"
        elif variant == "keras":
            _, step = make_keras_step(cell, size, make_rnn_lm(cell, size, seed))
            fns[variant] = _tf_step_fn(step, batches)
        elif variant == "softmax":
            fns[variant] = _tf_step_fn(SoftmaxOnlyStep(make_rnn_lm(cell, size, seed)), batches)
        else:
            dtype = MIXED_PRECISION.get(variant, "float32")
            softmax = "adaptive" if variant == "rnn_lm_adaptive" else "full"
            model = make_rnn_lm(cell, size, seed, dtype, softmax, BACKWARD.get(variant, "auto"))
            step = make_rnn_lm_step(model, size, jit_compile=variant == "rnn_lm_xla", loss_scale=dtype == "float16")
            fns[variant] = _tf_step_fn(step, batches)
            backwards[variant] = model.backward
    try:
        # Warm up only once all are built: setting the seed (in make_rnn_lm) clears
        # TensorFlow's kernel cache, and the next call of an already warm step
        # would pay to rebuild it (0.5 s at small size) inside a timed round.
        for variant, fn in fns.items():
            first = timing.first_call_and_warmup(fn, warmup)
            rows[variant] = {"config": size.name, "cell": cell, "variant": variant, "first_call_s": first,
                             "rss_mb": machine.rss_mb(), "max_rss_mb": machine.max_rss_mb(),
                             "backward": backwards.get(variant)}
        logging.info("%s %s: timing %s, %d rounds of %d steps", size.name, cell, ", ".join(fns), rounds,
                     steps_per_round)
        times, last = timing.interleaved(fns, rounds, steps_per_round, runtimes)
    finally:
        for worker in workers:
            worker.close()
    tokens = size.tokens_per_step
    # The limit: the step's own matmuls, each at the rate this machine reaches on its shape alone.
    # Each shape timed once; the softmax part's limit and the recurrence's at the same rates.
    limits = {"step": matmul_limit(step_matmuls(cell, size))}
    for part in STEP_PARTS[1:]:
        limits[part] = at_rates(step_matmuls(cell, size, part), limits["step"]["rates"])
    for variant, secs in times.items():
        # The adaptive softmax's work depends on the targets: no analytic count.
        flops = (None if variant in ADAPTIVE_VARIANTS else
                 softmax_train_flops(size) if variant == "softmax" else train_flops(cell, size))
        gflops = timing.summarize([flops / s / 1e9 for s in secs]) if flops else None
        rows[variant].update(
            tokens_per_step=tokens, flops_per_step=flops, sec_per_step=timing.summarize(secs), round_secs=secs,
            tokens_per_sec=timing.summarize([tokens / s for s in secs]), gflops=gflops,
            percent_of_peak=100 * gflops["median"] / peak_gflops if peak_gflops and gflops else None,
            percent_of_limit=(100 * limits[_part(variant)]["seconds"] / statistics.median(secs)
                              if variant in FLOAT32_FULL_SOFTMAX else None),
            matmul_limit=limits[_part(variant)],
            vs_keras=timing.paired_ratio(times["keras"], secs) if "keras" in times else None,
            final_loss=last[variant])
    if "softmax" in times:
        rows["softmax"]["ceiling"] = ceiling(times, limits, tokens)
    return list(rows.values())


def _part(variant):
    return "softmax" if variant == "softmax" else "step"


def ceiling(times, limits, tokens):
    """The fastest step any recurrence could give beside this softmax part: the softmax part's measured
    time plus the recurrence's matmuls at the limit (each shape at its best rate alone), with no time
    for anything else.  Returns {"sec_per_step", "tokens_per_sec", "recurrence_limit_s", "vs_<variant>":
    that variant's median time over it, for Keras and PyTorch where timed}."""
    recurrence = limits["recurrence"]["seconds"]
    seconds = statistics.median(times["softmax"]) + recurrence
    return {"sec_per_step": seconds, "tokens_per_sec": tokens / seconds, "recurrence_limit_s": recurrence,
            **{f"vs_{v}": statistics.median(times[v]) / seconds for v in ("keras", "torch") if v in times}}


def _rnn_lm_generator(model, batch_size, num_tokens):
    """Greedy generation with rnn_lm's in-graph loop: one graph call for all tokens."""
    # eos_id -1 is never produced, so every row runs the full num_tokens.
    sample = tf.function(lambda prompt, lengths: decoding.sample(
        model, prompt, lengths, num_tokens, 0.0, 0, eos_id=-1))
    prompt, lengths = tf.zeros([batch_size, 1], tf.int32), tf.ones([batch_size], tf.int32)
    return lambda: sample(prompt, lengths)[0].numpy()  # [B, num_tokens]


def _keras_generator(model, batch_size, num_tokens):
    """Greedy generation with the Keras cells, one tf.function call per token from Python."""

    @tf.function
    def step(token, state):  # token [B] -> (next token [B], state)
        x = model.embedding(token)
        new_state = []
        for layer, layer_state in zip(model.rnn_layers, state):
            x, layer_state = layer.cell(x, layer_state)
            new_state.append(list(layer_state))
        return tf.argmax(model.dense(x), axis=-1, output_type=tf.int32), new_state

    def run():
        token, state = tf.zeros([batch_size], tf.int32), model.zero_state(batch_size)
        tokens = []
        for _ in range(num_tokens):
            token, state = step(token, state)
            tokens.append(token)
        return tf.stack(tokens, axis=1).numpy()  # [B, num_tokens]

    return run


def benchmark_generation(cell, size, batch_sizes=(1, 32), num_tokens=100, rounds=6, seed=0):
    """Greedy ms/token, rnn_lm's ``decoding.sample`` against per-token Keras calls, same weights.

    Returns one dict per batch size; ``tokens_agree`` is the fraction of
    generated positions where both chose the same token (float rounding can
    flip a near-tie, after which the rows diverge).
    """
    model = make_rnn_lm(cell, size, seed)
    keras_model = KerasLM(cell, size)
    keras_model.copy_from(model)
    adaptive = make_rnn_lm(cell, size, seed, softmax="adaptive") if size.zipf else None
    rows = []
    for batch_size in batch_sizes:
        fns = {"rnn_lm": _rnn_lm_generator(model, batch_size, num_tokens),
               "keras": _keras_generator(keras_model, batch_size, num_tokens)}
        if adaptive is not None:  # the large vocabularies: the adaptive softmax's generation beside the full one's
            fns["rnn_lm_adaptive"] = _rnn_lm_generator(adaptive, batch_size, num_tokens)
        first = {name: timing.first_call_and_warmup(fn, 0) for name, fn in fns.items()}
        agree = float(np.mean(fns["rnn_lm"]() == fns["keras"]()))  # also the warm-up call
        logging.info("%s %s: timing generation at batch %d", size.name, cell, batch_size)
        times, _ = timing.interleaved(fns, rounds, 1)
        ms = {name: [1000 * s / num_tokens for s in secs] for name, secs in times.items()}
        rows.append({"config": size.name, "cell": cell, "batch_size": batch_size, "tokens": num_tokens,
                     "ms_per_token": {name: timing.summarize(v) for name, v in ms.items()},
                     "first_call_s": first, "rnn_lm_vs_keras": timing.paired_ratio(ms["keras"], ms["rnn_lm"]),
                     "adaptive_vs_full": (timing.paired_ratio(ms["rnn_lm"], ms["rnn_lm_adaptive"])
                                          if "rnn_lm_adaptive" in ms else None),
                     "tokens_agree": agree})
    return rows


def benchmark_evaluation(cell, size, num_tokens=10_000, rounds=6, seed=0):
    """Evaluation tokens/s (``evaluation.Evaluator`` over ``num_tokens`` random ids, the windows of
    ``size``): the exact single stream (batch 1) against training's default, ``TrainConfig``'s
    eval_batch_size streams with eval_warmup, interleaved; one dict, with the paired speed-up and
    the two perplexities (they differ by the warm-up's approximation, on random ids by little)."""
    from rnn_lm.config import TrainConfig
    from rnn_lm.evaluation import Evaluator
    model = make_rnn_lm(cell, size, seed)
    ids = np.concatenate([x.ravel() for x, _ in random_batches(size, count=-(-num_tokens // size.tokens_per_step),
                                                               seed=seed)])[:num_tokens]
    default = TrainConfig(num_steps=size.num_steps)
    evaluators = {"batch_1": Evaluator(model, 1, size.num_steps, 0),
                  "batched": Evaluator.for_training(model, default, 0)}
    nats = {name: [] for name in evaluators}
    fns = {name: (lambda name=name, e=e: nats[name].append(e.mean_cross_entropy(ids)))
           for name, e in evaluators.items()}
    for fn in fns.values():
        fn()
    logging.info("%s %s: timing evaluation", size.name, cell)
    times, _ = timing.interleaved(fns, rounds, 1)
    return {"config": size.name, "cell": cell, "tokens": len(ids), "batch_size": default.eval_batch_size,
            "warmup": default.eval_warmup,
            "tokens_per_sec": {name: timing.summarize([len(ids) / s for s in secs]) for name, secs in times.items()},
            "batched_vs_batch_1": timing.paired_ratio(times["batch_1"], times["batched"]),
            "perplexity": {name: float(np.exp(v[0])) for name, v in nats.items()}}


NOTES = [
    "tokens/s and ms/token: median [min-max] over interleaved rounds; x keras: per-round paired ratio "
    "(>1 is faster than Keras)",
    "GFLOP/s counts matmuls only (input projection, recurrence, softmax), training = 3 x forward",
    "%limit: the time the step's own matmuls take, each timed alone on its shape (the recurrent weights' "
    "gradient as one product over the window), over the step's median time (float32, full softmax)",
    "memory: resident set (ru_maxrss high-water mark, and current); tracemalloc cannot see TensorFlow's "
    "C++ allocations. The mark only grows, so per-variant values are cumulative.",
    "rnn_lm differentiates the recurrence by autodiff, rnn_lm_bptt by the backward written out "
    "(rnn_lm/bptt.py), the 16-bit and adaptive variants as training does by default (--backward=auto); "
    "each row's 'backward' in the JSON says which",
    "rnn_lm generation runs num_tokens + 1 model steps (priming the 1-token prompt, and a final step "
    "whose logits are unused); Keras runs num_tokens",
]


def run(settings):
    """Runs everything ``settings`` asks for; returns the JSON-ready results."""
    settings.validate()
    results = {"machine": machine.machine_info(), "settings": dataclasses.asdict(settings), "train": [],
               "generate": [], "evaluate": [], "notes": list(NOTES)}
    if "torch" in settings.variants:
        results["notes"].append(
            "PyTorch is not installed here: its variants were skipped" if machine.torch_version() is None else
            "torch.nn.GRU is the reset-after GRU: a different function with the same matmuls")
    results["matmul_peak"], peak = None, None
    if settings.peak_size:
        logging.info("matmul peak, %d^3", settings.peak_size)
        results["matmul_peak"] = {"size": settings.peak_size,
                                  "gflops": machine.matmul_peak_gflops(settings.peak_size)}
        peak = results["matmul_peak"]["gflops"]["median"]
    for size in settings.sizes():
        for cell in settings.cells:
            results["train"] += benchmark_training(
                cell, size, settings.variants, settings.rounds, settings.steps_per_round, settings.warmup,
                settings.seed, peak)
            if settings.generate_tokens:
                results["generate"] += benchmark_generation(
                    cell, size, settings.generate_batch_sizes, settings.generate_tokens, settings.rounds,
                    settings.seed)
            if settings.eval_tokens:
                results["evaluate"].append(benchmark_evaluation(cell, size, settings.eval_tokens, settings.rounds,
                                                                settings.seed))
    results["max_rss_mb"] = machine.max_rss_mb()
    return results
