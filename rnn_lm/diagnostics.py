"""The lecture's claims as figures: what ``rnn-lm-diagnose`` computes and draws.

``diagnose`` measures one model (``rnn_lm.analysis``): the gradient norm
|dJ_T/dh_t| by lag, the largest singular value of every recurrent matrix, the
distribution of the keep gates (LSTM f, GRU z) and of the state's relative
change per step, and, for a model of the built-in corpus, subject-verb
agreement accuracy by distance.  The ``plot_*`` functions draw several such
results on one figure (matplotlib, written as PNG), and ``log_images`` puts the
PNGs into TensorBoard.

Two experiments produce the figures of docs/lecture.md ("The lecture, measured"):

* ``cell_experiment``: Elman, LSTM and GRU language models with (nearly) the
  same number of parameters, trained alike on the built-in corpus, each
  diagnosed at initialisation and after training;
* ``exploding_experiment``: an Elman RNN with relu and a large initial scale,
  trained with and without gradient clipping (loss and gradient-norm curves).
"""

import dataclasses
import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

from rnn_lm import adaptive, analysis, cells as cells_lib
from rnn_lm.config import CELL_TYPES, Config, DataConfig, ModelConfig, TrainConfig
from rnn_lm.data import layout, pipeline
from rnn_lm.errors import RnnLmError
from rnn_lm.model import RNNLanguageModel

AGREEMENT_DISTANCES = (0, 2, 3, 4, 6, 8, 10, 14)


# ----------------------------------------------------------------------------
# Measuring one model.

def diagnose(model, ids, num_steps=40, batch_size=20, vocab=None, agreement_pairs=0,
             agreement_distances=AGREEMENT_DISTANCES, start=None, grammar=None):
    """Everything ``rnn-lm-diagnose`` reports about ``model``, as plain Python (JSON-ready).

    ids: a token stream (the validation split), cut into ``batch_size`` rows of
    ``num_steps`` + 1 tokens.  With ``agreement_pairs`` > 0 (and the model's
    ``vocab``), also agreement accuracy by distance on the built-in ``grammar`` (a name; None: the first), each
    sentence from ``start`` ("agreement"; ``evaluation.boundary_state``'s) and,
    when ``start`` is given, from the zero state as well ("agreement_zero").
    """
    rows = layout.batchify(ids, batch_size)[:, :num_steps + 1]
    if rows.shape[1] < num_steps + 1:
        raise RnnLmError(f"the validation text's {len(ids)} tokens are too few for {batch_size} rows of "
                         f"{num_steps + 1} (--num_steps + 1): a smaller --num_steps or --batch_size, or more text")
    inputs, targets = rows[:, :-1], rows[:, 1:]
    flows = analysis.gradient_flow(model, inputs, targets)
    traces = analysis.gate_trace(model, inputs)
    result = {
        "model": model.config.describe(),
        "parameters": parameter_count(model.config),
        "gradient_flow": [f.tolist() for f in flows],  # per layer, index = lag
        "spectral_norms": analysis.spectral_norms(model),
        "gates": analysis.summarize_gates(traces),
        # Histograms (for the plots): 50 bins over [0, 1] for the keep gate,
        # over [0, 2] for the relative change of h.
        "keep_histogram": [np.histogram(t["keep"], bins=50, range=(0, 1))[0].tolist() if "keep" in t else None
                           for t in traces],
        "change_histogram": [np.histogram(np.clip(t["change"], 0, 2), bins=50, range=(0, 2))[0].tolist()
                             for t in traces],
    }
    if agreement_pairs:
        starts = {"agreement": start} if start is None else {"agreement": start, "agreement_zero": None}
        for key, state in starts.items():
            accuracy = analysis.agreement_accuracy(model, vocab, agreement_distances, agreement_pairs, start=state,
                                                   grammar=grammar)
            result[key] = {str(d): a for d, a in accuracy.items()}
    return result


def lag_ratio(result, lag, layer=0):
    """|dJ_T/dh_t| at ``lag`` relative to lag 1, for one layer of a ``diagnose`` result."""
    flow = result["gradient_flow"][layer]
    return flow[lag] / flow[1]


def lag_ratio_interval(result, lag, layer=0):
    """(ratio, low, high): ``lag_ratio`` over a result's seeds (``combine_seeds``), the geometric mean
    with the 95 % t interval of log10; one seed: the ratio three times."""
    ratios = [lag_ratio(r, lag, layer) for r in result.get("seeds", [result])]
    mean, low, high = t_interval(np.log10(np.maximum(ratios, 1e-300)))
    return 10 ** mean, 10 ** low, 10 ** high


def parameter_count(config):
    """Trainable parameters of a model of ``config`` (counted from the shapes, not from a model)."""
    E, H, V = config.embedding_size, config.hidden_size, config.vocab_size
    count = V * E if E else 0  # the embedding (one-hot input has none)
    inputs = E or V
    for _ in range(config.num_layers):
        count += cells_lib.CELLS[config.cell].GATES * (inputs * H + H * H + H)  # W_x., W_h., b_. per gate
        inputs = H
    if config.softmax == "adaptive":
        return count + adaptive.parameter_count(H, V, config.cutoffs, config.adaptive_factor)
    return count + (0 if config.tie_embeddings else H * V) + V  # V (unless tied), b_y


def equal_parameter_configs(reference, cells):
    """{cell: ModelConfig} with the hidden size whose parameter count is closest to ``reference``'s.

    Everything else (embedding size, layers, vocabulary) stays as in ``reference``.
    """
    target = parameter_count(reference)
    configs = {}
    for cell in cells:
        sizes = range(1, 8 * reference.hidden_size + 1)
        best = min(sizes, key=lambda h: abs(parameter_count(
            dataclasses.replace(reference, cell=cell, hidden_size=h)) - target))
        configs[cell] = dataclasses.replace(reference, cell=cell, hidden_size=best)
    return configs


# ----------------------------------------------------------------------------
# Several seeds: means and 95 % intervals.

# Student's t, the 97.5 % quantile by degrees of freedom (a two-sided 95 % interval), from the
# standard table; beyond 30 degrees of freedom the normal's 1.96.
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042)
Z_975 = 1.959964


# The gate statistics (analysis.gate_statistics) that cannot exceed 1: a gate's mean and the fractions.
BOUNDED_BY_ONE = ("keep", "keep>0.9", "change<0.1")


def t_interval(values):
    """(mean, low, high): the 95 % t interval of the mean of ``values`` (one value: the value itself)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    df = len(values) - 1
    half = (_T_975[df - 1] if df <= len(_T_975) else Z_975) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def wilson_interval(successes, trials):
    """(fraction, low, high): the 95 % Wilson score interval of a binomial proportion."""
    if trials == 0:
        return math.nan, math.nan, math.nan
    p, z2 = successes / trials, Z_975 ** 2
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z_975 * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials ** 2)) / (1 + z2 / trials)
    # In exact arithmetic low <= p <= high and both in [0, 1]; in floating point, at p = 0 or 1,
    # a bound can miss p by a rounding error (and an error bar would be negative).
    return p, max(min(centre - half, p), 0.0), min(max(centre + half, p), 1.0)


def combine_seeds(results, agreement_pairs=0):
    """One ``diagnose`` result per seed of the same model -> their summary, in the same format (so that
    the figures and tables read it) plus intervals and the seeds' own results:

    - agreement by distance: the fraction over all seeds' pairs, with its Wilson interval
      ("agreement_interval"; ``agreement_pairs`` pairs per distance and seed);
    - the gradient's norm by lag: the geometric mean over seeds, with the t interval of log10
      ("gradient_flow_interval", per layer and lag: [low, high]);
    - gate statistics, perplexities: the mean with its t interval ("gates_interval",
      "<name>_interval").
    """
    first = results[0]
    out = {"model": first["model"], "parameters": first["parameters"], "seeds": results,
           "keep_histogram": [None if h is None else np.sum([r["keep_histogram"][i] for r in results], 0).tolist()
                              for i, h in enumerate(first["keep_histogram"])],
           "change_histogram": [np.sum([r["change_histogram"][i] for r in results], 0).tolist()
                                for i in range(len(first["change_histogram"]))],
           "spectral_norms": {k: t_interval([r["spectral_norms"][k] for r in results])[0]
                              for k in first["spectral_norms"]}}
    flows, intervals = [], []
    for layer in range(len(first["gradient_flow"])):
        logs = np.log10(np.maximum([r["gradient_flow"][layer] for r in results], 1e-300))  # [seeds, lags]
        stats = [t_interval(logs[:, lag]) for lag in range(logs.shape[1])]
        flows.append([10 ** m for m, _, _ in stats])
        intervals.append([[10 ** lo, 10 ** hi] for _, lo, hi in stats])
    out["gradient_flow"], out["gradient_flow_interval"] = flows, intervals
    out["gates"], out["gates_interval"] = [], []
    for layer, row in enumerate(first["gates"]):
        stats = {k: t_interval([r["gates"][layer][k] for r in results]) for k in row}
        out["gates"].append({k: m for k, (m, _, _) in stats.items()})
        # Every gate statistic is a mean of gates, of norms' ratios or a fraction: the interval stays
        # within what it can be (>= 0; a gate's mean and a fraction <= 1).
        out["gates_interval"].append({k: [max(lo, 0.0), min(hi, 1.0) if k in BOUNDED_BY_ONE else hi]
                                      for k, (_, lo, hi) in stats.items()})
    for key in ("agreement", "agreement_zero"):
        if key in first:
            stats = {d: wilson_interval(round(sum(r[key][d] for r in results) * agreement_pairs),
                                        agreement_pairs * len(results)) for d in first[key]}
            out[key] = {d: p for d, (p, _, _) in stats.items()}
            out[key + "_interval"] = {d: [lo, hi] for d, (_, lo, hi) in stats.items()}
    for key in ("valid_perplexity", "test_perplexity"):
        if key in first:
            mean, lo, hi = t_interval([r[key] for r in results])
            out[key], out[key + "_interval"] = mean, [lo, hi]
    for key in ("learning_rate", "learning_rate_trials"):
        if key in first:
            out[key] = first[key]
    if "epochs" in first:
        out["epochs"] = [r["epochs"] for r in results]
    return out


# ----------------------------------------------------------------------------
# Figures.

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def plot_gradient_flow(results, path, title="Gradient flow back through time"):
    """|dJ_T/dh_t| by lag, log scale: one panel per layer, one line per result (a band: its 95 %
    interval over seeds, where it has one).

    results: {label: diagnose result}; labels ending in "(init)" are drawn dashed.
    """
    plt = _pyplot()
    num_layers = max(len(r["gradient_flow"]) for r in results.values())
    fig, axes = plt.subplots(1, num_layers, figsize=(5.5 * num_layers, 4.2), squeeze=False)
    styles = _styles(results)
    for layer, ax in enumerate(axes[0]):
        for label, r in results.items():
            if layer < len(r["gradient_flow"]):
                flow = np.asarray(r["gradient_flow"][layer])
                ax.semilogy(np.arange(len(flow)), np.maximum(flow, 1e-30), **styles[label])
                if "gradient_flow_interval" in r:  # several seeds: the 95 % interval as a band
                    low, high = np.maximum(np.asarray(r["gradient_flow_interval"][layer]).T, 1e-30)
                    ax.fill_between(np.arange(len(flow)), low, high, color=styles[label]["color"], alpha=0.15)
        ax.set_xlabel("lag T - t (time steps)")
        ax.set_ylabel("|dJ_T / dh_t|")
        ax.set_title(f"layer {layer + 1}")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_agreement(results, path, title="Subject-verb agreement by distance"):
    """Accuracy (grammatical verb preferred) by the number of tokens between subject and verb, with
    error bars where a result has intervals (several seeds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    styles = _styles(results)
    for label, r in results.items():
        if "agreement" in r:
            distances = sorted(int(d) for d in r["agreement"])
            values = [100 * r["agreement"][str(d)] for d in distances]
            if "agreement_interval" in r:  # several seeds: 95 % Wilson intervals as error bars
                low, high = (np.array([100 * r["agreement_interval"][str(d)][i] for d in distances]) for i in (0, 1))
                ax.errorbar(distances, values, yerr=[np.array(values) - low, high - np.array(values)], marker="o",
                            capsize=3, **styles[label])
            else:
                ax.plot(distances, values, marker="o", **styles[label])
    ax.axhline(50, color="gray", linewidth=0.8, linestyle=":", label="chance")
    _label_axes(ax, "tokens between subject and verb", "grammatical verb preferred (%)")
    ax.set_ylim(0, 102)
    ax.set_title(title)
    return _save(fig, path)


def plot_gates(results, path, title="Do the gates keep the state? (h_t ~ h_(t-1))"):
    """Histograms: the keep gate (LSTM f, GRU z) and ||h_t - h_(t-1)|| / ||h_(t-1)||, top layer."""
    plt = _pyplot()
    fig, (ax_keep, ax_change) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = _styles(results)
    for label, r in results.items():
        keep = r["keep_histogram"][-1]
        if keep is not None:
            ax_keep.stairs(_fractions(keep), np.linspace(0, 1, 51), **styles[label])
        ax_change.stairs(_fractions(r["change_histogram"][-1]), np.linspace(0, 2, 51), **styles[label])
    _label_axes(ax_keep, "keep gate value (LSTM forget gate f, GRU update gate z)", "fraction")
    _label_axes(ax_change, "||h_t - h_(t-1)|| / ||h_(t-1)||  (2 = 2 or more)", "fraction")
    fig.suptitle(title + ", top layer")
    return _save(fig, path)


def plot_losses(curves, path, title="Exploding gradients: Elman RNN, relu, large initial weights"):
    """curves: {label: {"loss": [...], "grad_norm": [...]}} per step; log scales.  Several seeds
    (``combine_exploding``): the first seed's curve bold, the others thin."""
    plt = _pyplot()
    fig, (ax_loss, ax_norm) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = _styles(curves)
    for label, c in curves.items():
        steps = np.arange(1, len(c["loss"]) + 1)
        bad = np.flatnonzero(~np.isfinite(np.asarray(c["loss"], dtype=float)))
        if "seeds" in c and len(c["seeds"]) > 1:
            legend = f"{label} ({c['broke_down']} of {c['runs']} seeds NaN or inf)"
            for other in c["seeds"][1:]:
                thin = {**styles[label], "label": None, "linewidth": 0.8, "alpha": 0.4}
                ax_loss.semilogy(steps, _finite(other["loss"]), **thin)
                ax_norm.semilogy(steps, _finite(other["grad_norm"]), **thin)
        else:
            legend = f"{label} (NaN or inf from step {bad[0] + 1})" if len(bad) else label
        style = {**styles[label], "label": legend}
        ax_loss.semilogy(steps, _finite(c["loss"]), **style)
        ax_norm.semilogy(steps, _finite(c["grad_norm"]), **style)
    _label_axes(ax_loss, "training step", "training cost J (nats, log scale)")
    _label_axes(ax_norm, "training step", "global gradient norm before clipping")
    fig.suptitle(title)
    return _save(fig, path)


def _label_axes(ax, xlabel, ylabel):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _styles(results):
    """{label: line keywords}: one color per model, the same for its "(init)" line, which is dashed."""
    palette = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]
    bases = list(dict.fromkeys(label.removesuffix(" (init)") for label in results))
    return {label: {"label": label, "color": palette[bases.index(label.removesuffix(" (init)")) % len(palette)],
                    "linestyle": "--" if label.endswith("(init)") else "-"} for label in results}


def _fractions(counts):
    counts = np.asarray(counts, dtype=float)
    return counts / max(counts.sum(), 1)


def _finite(values):
    """Non-finite values (a NaN loss) are not drawn."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def log_images(log_dir, paths, step=0):
    """Writes the PNG files ``paths`` as TensorBoard images (tab "Images") under ``log_dir``."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for path in paths:
            with open(path, "rb") as f:
                image = tf.image.decode_png(f.read(), channels=4)
            tf.summary.image(os.path.splitext(os.path.basename(path))[0], image[None], step=step)
    writer.close()


def write_json(data, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, allow_nan=True)
    return path


# ----------------------------------------------------------------------------
# Experiments.

def cell_experiment(out_dir, cells=CELL_TYPES, reference_hidden=200, embedding_size=200,
                    num_layers=2, train_tokens=1_000_000, epochs=2, batch_size=32, num_steps=35,
                    learning_rates=(0.003,), patience=0, seed=0, horizon=40, agreement_pairs=200, seeds=1,
                    log=print, grammar=DataConfig.grammar):
    """Trains one model per cell at the parameter count of an LSTM of ``reference_hidden`` units on the
    built-in corpus of ``grammar``, with ``seeds`` seeds each (``seed``, ``seed`` + 1, ...; model directories
    ``out_dir/<cell>``, or ``out_dir/<cell>_seed<s>`` for several), and diagnoses each at
    initialisation and after training; agreement is scored from the boundary state over the training
    text and from zero.  Returns {label: result} with labels "<cell> H=<n>" and "... (init)": a
    ``diagnose`` result for one seed, ``combine_seeds``' summary (intervals, each seed's result) for
    several.

    Adam, at the one rate of ``learning_rates``; given several, each cell gets its own: the first
    epoch of the seed-``seed`` run is trained at each, and the run of the best validation perplexity
    goes on (the others stay as a record; every directory is then ``out_dir/<cell>_seed<s>_lr<rate>``,
    so that the same call again resumes each run where it is).  ``patience`` > 0 trains to
    convergence: ``epochs`` is then the most, the rate halves after an epoch that does not improve
    on the best validation perplexity, and training stops after ``patience`` such epochs in a row
    (``TrainConfig.patience``), the best weights kept.
    """
    from rnn_lm import checkpoints, evaluation, training
    from rnn_lm.data import corpus as corpus_lib

    data = DataConfig(corpus="grammar", grammar=grammar, grammar_train_tokens=train_tokens, grammar_seed=seed)
    corpus = corpus_lib.load_corpus(data)
    reference = ModelConfig(vocab_size=len(corpus.vocab), cell="lstm", num_layers=num_layers,
                            hidden_size=reference_hidden, embedding_size=embedding_size, init_scale=0.1)
    schedule = (dict(lr_schedule="plateau", lr_decay=0.5, decay_start_epoch=1, patience=patience) if patience
                else dict(decay_start_epoch=epochs + 1))

    def config(model_config, s, rate, run_epochs=epochs):
        return Config(model=model_config, data=data, train=TrainConfig(
            optimizer="adam", learning_rate=rate, batch_size=batch_size, num_steps=num_steps, epochs=run_epochs,
            max_grad_norm=0.25, seed=s, eval_batch_size=32, sample_tokens=0, **schedule))

    def run_dir(cell, s, rate=None):
        if rate is not None:
            return os.path.join(out_dir, f"{cell}_seed{s}_lr{rate:g}")
        return os.path.join(out_dir, cell if seeds == 1 else f"{cell}_seed{s}")

    per_seed = {}
    for cell, model_config in equal_parameter_configs(reference, cells).items():
        label = f"{cell} H={model_config.hidden_size}"
        trials = {}
        if len(learning_rates) > 1:
            for rate in learning_rates:
                log(f"{label}: one epoch at learning rate {rate:g}")
                trial_dir = run_dir(cell, seed, rate)
                trial = stop_if_interrupted(training.train(config(model_config, seed, rate, 1), trial_dir,
                                                           export=False), trial_dir)
                trials[rate] = trial.valid_perplexity
            log(f"{label}: validation perplexity after one epoch " +
                ", ".join(f"{p:.3f} at {r:g}" for r, p in trials.items()))
        rate = min(trials, key=trials.get) if trials else learning_rates[0]
        for s in range(seed, seed + seeds):
            keras.utils.set_random_seed(s)  # as the Trainer does: this is the model it starts from
            fresh = RNNLanguageModel(model_config)
            per_seed.setdefault(label + " (init)", []).append(
                diagnose(fresh, corpus.valid, horizon, vocab=corpus.vocab, grammar=grammar))
            model_dir = run_dir(cell, s, rate if trials else None)
            log(f"{label}, seed {s}: {parameter_count(model_config):,} parameters; training at {rate:g}")
            outcome = stop_if_interrupted(training.train(config(model_config, s, rate), model_dir, export=False),
                                          model_dir)
            _, vocab, model = checkpoints.load_model(model_dir, checkpoint="best" if patience else "latest")
            start = evaluation.boundary_state(model, corpus.train, vocab.eos_id)
            result = diagnose(model, corpus.valid, horizon, vocab=vocab, agreement_pairs=agreement_pairs, start=start,
                              grammar=grammar)
            result.update(valid_perplexity=outcome.valid_perplexity, test_perplexity=outcome.test_perplexity,
                          model_dir=model_dir, seed=s, learning_rate=rate, epochs=outcome.final_epoch)
            if trials:
                result["learning_rate_trials"] = {f"{r:g}": p for r, p in trials.items()}
            per_seed.setdefault(label, []).append(result)
            log(f"{label}, seed {s}: valid perplexity {outcome.valid_perplexity:.2f} after {result['epochs']} "
                f"epochs" + (" (stopped early)" if outcome.stopped_early else ""))
    if seeds == 1:
        return {label: results[0] for label, results in per_seed.items()}
    return {label: combine_seeds(results, agreement_pairs) for label, results in per_seed.items()}


def stop_if_interrupted(outcome, model_dir):
    """``outcome`` of ``training.train``, or an RnnLmError when a signal stopped that run (with its checkpoint):
    the experiment stops there, and the same command resumes it."""
    if outcome.interrupted:
        raise RnnLmError(f"{outcome.interrupted}: stopped with a checkpoint in {model_dir}; run the same "
                         "command to resume the experiment")
    return outcome


def exploding_experiment(steps=300, hidden_size=200, init_scale=0.2, learning_rate=1.0, max_grad_norm=0.25,
                         batch_size=20, num_steps=35, seed=0, train_tokens=200_000):
    """An Elman RNN with relu (f(a) = max(0, a)) and weights uniform in [-init_scale, init_scale],
    trained by SGD on the built-in corpus for ``steps`` steps, once without clipping and once clipped
    to ``max_grad_norm``: {label: {"loss": [...], "grad_norm": [...]}} per step, from the same start.
    """
    from rnn_lm import train_step
    from rnn_lm.data import corpus as corpus_lib

    corpus = corpus_lib.load_corpus(DataConfig(corpus="grammar", grammar_train_tokens=train_tokens,
                                               grammar_seed=seed))
    config = ModelConfig(vocab_size=len(corpus.vocab), cell="elman", activation="relu", num_layers=1,
                         hidden_size=hidden_size, embedding_size=hidden_size, init_scale=init_scale)
    windows = list(pipeline.train_windows(corpus.train, batch_size, num_steps).take(steps).as_numpy_iterator())
    curves = {}
    for clip in (0.0, max_grad_norm):
        keras.utils.set_random_seed(seed)
        model = RNNLanguageModel(config)
        step = train_step.TrainStep(model, keras.optimizers.SGD(learning_rate), batch_size, clip, seed)
        losses, norms = [], []
        for inputs, targets in windows:
            out = step(inputs, targets)
            losses.append(float(out["loss"]))
            norms.append(float(out["grad_norm"]))
        label = f"clipped at {clip:g}" if clip else "no clipping"
        curves[label] = {"loss": losses, "grad_norm": norms,
                         "non_finite_steps": int(sum(not math.isfinite(v) for v in losses))}
    return curves


def combine_exploding(runs):
    """``exploding_experiment`` curves of several seeds -> per label the first seed's curve (what the
    figure draws boldly), each seed's under "seeds", and the claim's figures over the seeds: how many
    runs broke down (a non-finite cost at some step; Wilson interval of the fraction), each run's first
    non-finite step (None: none), its largest gradient norm, and the last cost of the runs that stayed
    finite (mean with its t interval)."""
    out = {}
    for label in runs[0]:
        curves = [r[label] for r in runs]
        first_bad = [next((i + 1 for i, v in enumerate(c["loss"]) if not math.isfinite(v)), None) for c in curves]
        broke = sum(step is not None for step in first_bad)
        finite_last = [c["loss"][-1] for c, step in zip(curves, first_bad) if step is None]
        _, low, high = wilson_interval(broke, len(curves))
        out[label] = {**curves[0], "seeds": curves, "broke_down": broke, "runs": len(curves),
                      "broke_down_interval": [low, high], "first_non_finite_step": first_bad,
                      "largest_grad_norm": [max(_finite_values(c["grad_norm"]), default=math.nan) for c in curves]}
        if finite_last:
            mean, low, high = t_interval(finite_last)
            out[label].update(last_cost=mean, last_cost_interval=[low, high])
    return out


def _finite_values(values):
    return [v for v in values if math.isfinite(v)]
