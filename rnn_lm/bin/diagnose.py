"""rnn-lm-diagnose: the lecture's claims, measured and drawn.

    rnn-lm-diagnose --out_dir=/tmp/diag                       # fresh Elman, LSTM and GRU models
    rnn-lm-diagnose --out_dir=/tmp/diag --model_dir=/tmp/a,/tmp/b
    rnn-lm-diagnose --out_dir=/tmp/lecture --experiment=cells      # 3 cells x 3 seeds, ~45 min on 2 cores
    rnn-lm-diagnose --out_dir=/tmp/lecture --experiment=cells --seeds=1   # one training per cell
    rnn-lm-diagnose --out_dir=/tmp/lecture --experiment=exploding  # relu Elman, with and without clipping

For each model (fresh, or trained in --model_dir): the norm of dJ_T/dh_t for
every lag T - t (vanishing and exploding gradients; tf.GradientTape in graph
mode), the largest singular value of each recurrent matrix, the distribution of
the forget gate f (LSTM) or update gate z (GRU) and of ||h_t - h_(t-1)|| /
||h_(t-1)|| (the lecture's "h_t ~ h_(t-1)"), and, for models of the built-in
corpus, subject-verb agreement accuracy by distance.  Writes to --out_dir:
diagnose.json (every number), PNG figures (gradient_flow, gates, agreement,
exploding) and the same figures as TensorBoard images in tensorboard/.

--experiment=cells trains Elman, LSTM and GRU models of (nearly) the same
parameter count alike on the built-in corpus, --seeds times each (model
directories under --out_dir), and draws each at initialisation (dashed) and
after training, with 95 % intervals over the seeds (Wilson intervals for
agreement, t intervals for the rest); agreement is scored from the boundary
state (the state a stream-trained model carries into a sentence) and from zero.
"""

import os

from absl import flags

from rnn_lm.bin import common
from rnn_lm.config import CELL_TYPES
from rnn_lm.data.grammar import DEFAULT_GRAMMAR, GRAMMARS
from rnn_lm.errors import RnnLmError

FLAGS = flags.FLAGS

flags.DEFINE_string("out_dir", None, "Where the JSON, the PNG figures and tensorboard/ go.", required=True)
flags.DEFINE_list("model_dir", [], "Trained models to diagnose; empty: fresh models of each --cells.")
flags.DEFINE_enum("experiment", "none", ["none", "cells", "exploding"],
                  "cells: train Elman, LSTM and GRU at equal parameter count on the built-in corpus, then "
                  "diagnose; exploding: relu Elman trained with and without clipping.")
flags.DEFINE_list("cells", list(CELL_TYPES), "Cells of the fresh models and of --experiment=cells.")
flags.DEFINE_integer("hidden_size", 200, "Fresh models: units per layer; --experiment=cells: the LSTM's "
                     "(the others get the hidden size that matches its parameter count).")
flags.DEFINE_integer("num_layers", 2, "Fresh models and --experiment=cells: layers.")
flags.DEFINE_float("init_scale", 0.1, "Fresh models: uniform initialisation range.")
flags.DEFINE_integer("num_steps", 40, "The horizon: gradient norms for lags 0 .. num_steps - 1.")
flags.DEFINE_integer("batch_size", 20, "Rows of the batch the gradients and gates are measured on.")
flags.DEFINE_integer("agreement_pairs", 200, "Sentence pairs per distance (built-in-corpus models); 0: none.")
flags.DEFINE_enum("grammar", DEFAULT_GRAMMAR, list(GRAMMARS), "Fresh models and --experiment=cells: the "
                  "built-in corpus' grammar (data/README.md); a --model_dir's is its own.")
flags.DEFINE_integer("train_tokens", 1_000_000, "--experiment=cells: built-in corpus training tokens.")
flags.DEFINE_integer("epochs", 2, "--experiment=cells: epochs (the most, with --patience).")
flags.DEFINE_list("learning_rates", ["0.003"], "--experiment=cells: Adam's learning rate; several: each cell's "
                  "is chosen on validation after one epoch at each (that run goes on).")
flags.DEFINE_integer("patience", 0, "--experiment=cells: train to convergence: the rate halves after an epoch "
                     "with no better validation perplexity, and training stops after this many in a row (the "
                     "best weights kept); 0: --epochs exactly.")
flags.DEFINE_integer("exploding_steps", 300, "--experiment=exploding: training steps per run.")
flags.DEFINE_float("exploding_init_scale", 0.2, "--experiment=exploding: uniform initialisation range.")
flags.DEFINE_integer("seed", 0, "Seed of the fresh models and the experiments.")
flags.DEFINE_integer("seeds", 3, "--experiment=cells: trainings per cell; --experiment=exploding: pairs of "
                     "runs; with seeds --seed, --seed + 1, ...; every figure is then the mean with its 95 % "
                     "interval (Wilson for agreement and break-downs, t for the rest).")


def main(argv):
    for name in ("num_steps", "batch_size", "hidden_size", "num_layers", "epochs", "train_tokens",
                 "exploding_steps", "seeds"):
        if getattr(FLAGS, name) < 1:
            raise RnnLmError(f"--{name} must be positive, got {getattr(FLAGS, name)}")
    try:
        learning_rates = [float(r) for r in FLAGS.learning_rates]
    except ValueError:
        learning_rates = []
    if not learning_rates or not all(r > 0 for r in learning_rates):
        raise RnnLmError(f"--learning_rates must be positive numbers, got {','.join(FLAGS.learning_rates)}")
    if FLAGS.patience < 0:
        raise RnnLmError(f"--patience must be >= 0, got {FLAGS.patience}")
    if FLAGS.num_steps < 2:
        raise RnnLmError("--num_steps must be at least 2 (lags 0 and 1)")
    if FLAGS.model_dir and FLAGS.experiment != "none":
        raise RnnLmError("--model_dir and --experiment exclude each other")
    unknown = sorted(set(FLAGS.cells) - set(CELL_TYPES))
    if unknown:
        raise RnnLmError(f"--cells: unknown cell {unknown[0]} ({', '.join(CELL_TYPES)})")
    from rnn_lm.config import Config
    for model_dir in FLAGS.model_dir:
        Config.load(model_dir)  # a one-line error for a directory that holds no model
    os.makedirs(FLAGS.out_dir, exist_ok=True)

    common.load_tensorflow()
    from rnn_lm import diagnostics
    out = lambda name: os.path.join(FLAGS.out_dir, name)  # noqa: E731
    figures = []
    if FLAGS.experiment == "exploding":
        curves = diagnostics.combine_exploding([
            diagnostics.exploding_experiment(steps=FLAGS.exploding_steps, init_scale=FLAGS.exploding_init_scale,
                                             seed=s) for s in range(FLAGS.seed, FLAGS.seed + FLAGS.seeds)])
        figures.append(diagnostics.plot_losses(curves, out("exploding.png")))
        diagnostics.write_json(curves, out("diagnose.json"))
        for label, c in curves.items():
            low, high = c["broke_down_interval"]
            last = (f"; last cost of the finite runs {c['last_cost']:.3g}"
                    + (f" [{c['last_cost_interval'][0]:.3g}, {c['last_cost_interval'][1]:.3g}]" if c["runs"] > 1
                       else "") if "last_cost" in c else "")
            print(f"{label:16s} NaN or inf in {c['broke_down']} of {c['runs']} runs [{low:.0%}, {high:.0%}] "
                  f"(first at step {', '.join('-' if s is None else str(s) for s in c['first_non_finite_step'])})"
                  f"; largest gradient norm {', '.join(f'{g:.3g}' for g in c['largest_grad_norm'])}{last}")
    else:
        if FLAGS.experiment == "cells":
            results = diagnostics.cell_experiment(
                FLAGS.out_dir, FLAGS.cells, reference_hidden=FLAGS.hidden_size, num_layers=FLAGS.num_layers,
                embedding_size=FLAGS.hidden_size, train_tokens=FLAGS.train_tokens, epochs=FLAGS.epochs,
                seed=FLAGS.seed, horizon=FLAGS.num_steps, agreement_pairs=FLAGS.agreement_pairs, seeds=FLAGS.seeds,
                grammar=FLAGS.grammar, learning_rates=learning_rates, patience=FLAGS.patience)
        else:
            results = _diagnose_models()
        diagnostics.write_json(results, out("diagnose.json"))
        figures.append(diagnostics.plot_gradient_flow(results, out("gradient_flow.png")))
        figures.append(diagnostics.plot_gates(results, out("gates.png")))
        if any("agreement" in r for r in results.values()):
            figures.append(diagnostics.plot_agreement(results, out("agreement.png")))
        _print_table(results)
    diagnostics.log_images(out("tensorboard"), figures)
    print(f"wrote {out('diagnose.json')}, {', '.join(os.path.basename(f) for f in figures)} and "
          f"TensorBoard images in {out('tensorboard')}")


def _diagnose_models():
    import keras
    from rnn_lm import checkpoints, diagnostics
    from rnn_lm.config import DataConfig, ModelConfig
    from rnn_lm.data import corpus as corpus_lib
    from rnn_lm.model import RNNLanguageModel

    results = {}
    if FLAGS.model_dir:
        for model_dir in FLAGS.model_dir:
            config, vocab, model = checkpoints.load_model(model_dir)
            ids = corpus_lib.load_split(config.data, vocab, "valid", model_dir)
            label = f"{os.path.basename(os.path.normpath(model_dir))} ({config.model.describe()})"
            results[label] = diagnostics.diagnose(
                model, ids, FLAGS.num_steps, FLAGS.batch_size, vocab=vocab,
                agreement_pairs=FLAGS.agreement_pairs if config.data.agreement_ready else 0,
                grammar=config.data.grammar)
        return results
    corpus = corpus_lib.load_corpus(DataConfig(grammar=FLAGS.grammar, grammar_train_tokens=50_000))
    for cell in FLAGS.cells:
        keras.utils.set_random_seed(FLAGS.seed)
        model = RNNLanguageModel(ModelConfig(
            vocab_size=len(corpus.vocab), cell=cell, num_layers=FLAGS.num_layers, hidden_size=FLAGS.hidden_size,
            embedding_size=FLAGS.hidden_size, init_scale=FLAGS.init_scale))
        results[f"{cell} (init)"] = diagnostics.diagnose(model, corpus.valid, FLAGS.num_steps, FLAGS.batch_size)
    return results


def _print_table(results):
    import numpy as np
    from rnn_lm.diagnostics import lag_ratio_interval
    lags = [lag for lag in (1, 5, 10, 20, 30, 50) if lag < FLAGS.num_steps]
    seeds = max(len(r.get("seeds", [r])) for r in results.values())
    print("|dJ_T/dh_t| relative to lag 1, top layer" + (f" (geometric mean of {seeds} seeds [95 % interval])"
                                                         if seeds > 1 else "")
          + "".join(f"{f'lag {lag}':>10s}" for lag in lags))
    for label, r in results.items():
        cells = [lag_ratio_interval(r, lag, layer=len(r["gradient_flow"]) - 1) for lag in lags]
        print(f"  {label:38s}" + "".join(f"{m:10.2e}" for m, _, _ in cells))
        if "seeds" in r:
            print(f"  {'':38s}" + "".join(f"  [{lo:.0e}, {hi:.0e}]" for _, lo, hi in cells))
    interval = lambda r, key, fmt: (f" [{fmt.format(r[key][0])}, {fmt.format(r[key][1])}]" if key in r else "")
    for label, r in results.items():
        perplexity = (f"; valid perplexity {r['valid_perplexity']:.2f}"
                      + interval(r, "valid_perplexity_interval", "{:.2f}") if "valid_perplexity" in r else "")
        recipe = (f"; Adam at {r['learning_rate']:g}" if "learning_rate" in r else "") + (
            f", epochs {', '.join(map(str, np.atleast_1d(r['epochs'])))}" if "epochs" in r else "")
        print(f"{label}: {r['parameters']:,} parameters{perplexity}{recipe}; largest singular values "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["spectral_norms"].items()))
        for layer, g in enumerate(r["gates"], start=1):
            ci = r["gates_interval"][layer - 1] if "gates_interval" in r else {}
            keep = (f"keep gate mean {g['keep']:.2f}" + interval(ci, "keep", "{:.2f}")
                    + f", above 0.9 for {g['keep>0.9']:.1%}" + interval(ci, "keep>0.9", "{:.1%}") + "; "
                    if "keep" in g else "")
            print(f"  layer {layer}: {keep}|h_t - h_t-1| / |h_t-1| mean {g['change']:.3f}"
                  + interval(ci, "change", "{:.3f}") + f", below 0.1 for {g['change<0.1']:.1%}"
                  + interval(ci, "change<0.1", "{:.1%}"))
        for key, start in (("agreement", "the boundary state" if "agreement_zero" in r else "zero"),
                           ("agreement_zero", "zero")):
            if key in r:
                ci = r.get(key + "_interval", {})
                print(f"  agreement by distance (from {start}): " + ", ".join(
                    f"{d}: {a:.1%}" + interval(ci, d, "{:.1%}") for d, a in r[key].items()))


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
