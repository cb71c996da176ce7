"""rnn-lm-gradient-flow: how far back the gradient reaches, per cell type and layer.

    rnn-lm-gradient-flow                                  # fresh Elman, LSTM and GRU models
    rnn-lm-gradient-flow --model_dir=/tmp/lm --num_steps=50

Prints |dJ_T/dh_t| for each lag T - t (the lecture's vanishing and exploding
gradients), computed with tf.GradientTape in graph mode on one batch of the
built-in corpus (or the model's own corpus), the largest singular value of
each recurrent matrix, and how much the gates keep the state (the lecture's
h_t ~ h_{t-1}): the mean forget (LSTM) or update (GRU) gate and the relative
change of h per step.
"""

import json

from absl import flags

from rnn_lm.bin import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", "", "A trained model; empty: fresh models of each --cells.")
flags.DEFINE_list("cells", ["elman", "lstm", "gru"], "Cells of the fresh models.")
flags.DEFINE_integer("hidden_size", 200, "Fresh models: units per layer.")
flags.DEFINE_integer("num_layers", 2, "Fresh models: layers.")
flags.DEFINE_float("init_scale", 0.1, "Fresh models: uniform initialisation range.")
flags.DEFINE_integer("num_steps", 40, "The horizon: lags 0 .. num_steps - 1.")
flags.DEFINE_integer("batch_size", 20, "Rows of the batch.")
flags.DEFINE_integer("seed", 0, "Seed of the fresh models.")
flags.DEFINE_integer("every", 5, "Print every N-th lag.")
flags.DEFINE_string("json_out", "", "Also write the norms here.")


def main(argv):
    import keras
    import numpy as np
    from rnn_lm import analysis, training
    from rnn_lm.config import DataConfig, ModelConfig
    from rnn_lm.data import corpus as corpus_lib, layout
    from rnn_lm.model import RNNLanguageModel

    if FLAGS.model_dir:
        config, vocab, model = training.load_model(FLAGS.model_dir)
        models = {config.model.describe(): model}
        ids = corpus_lib.load_corpus(config.data, vocab).valid
    else:
        corpus = corpus_lib.load_corpus(DataConfig(grammar_train_tokens=50_000))
        ids, models = corpus.valid, {}
        for cell in FLAGS.cells:
            keras.utils.set_random_seed(FLAGS.seed)
            models[cell] = RNNLanguageModel(ModelConfig(
                vocab_size=len(corpus.vocab), cell=cell, num_layers=FLAGS.num_layers,
                hidden_size=FLAGS.hidden_size, embedding_size=FLAGS.hidden_size, init_scale=FLAGS.init_scale))
    rows = layout.batchify(ids, FLAGS.batch_size)[:, :FLAGS.num_steps + 1]
    inputs, targets = rows[:, :-1], rows[:, 1:]
    results = {}
    lags = list(range(0, FLAGS.num_steps, FLAGS.every))
    print("|dJ_T/dh_t| by lag T - t" + "".join(f"{lag:>10d}" for lag in lags))
    for name, model in models.items():
        flows = analysis.gradient_flow(model, inputs, targets)
        results[name] = {"flow": [f.tolist() for f in flows], "spectral_norms": analysis.spectral_norms(model),
                         "gates": analysis.gate_statistics(model, inputs)}
        for layer, flow in enumerate(flows, start=1):
            print(f"{name:16s} layer {layer}     " + "".join(f"{flow[lag]:10.2e}" for lag in lags))
    for name, r in results.items():
        print(f"{name}: largest singular values " +
              ", ".join(f"{k} {v:.2f}" for k, v in r["spectral_norms"].items()))
    for name, r in results.items():
        for layer, g in enumerate(r["gates"], start=1):
            keep = f", keep gate mean {g['keep']:.2f}, above 0.9 for {g['keep>0.9']:.1%}" if "keep" in g else ""
            print(f"{name} layer {layer}: |h_t - h_t-1| / |h_t-1| = {g['change']:.3f}{keep}")
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
