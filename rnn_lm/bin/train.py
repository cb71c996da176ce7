"""rnn-lm-train: train an RNN language model, or resume the one in --model_dir.

    rnn-lm-train --model_dir=/tmp/lm                        # built-in grammar corpus
    rnn-lm-train --model_dir=/tmp/ptb --data_dir=ptb/ --cell=gru --epochs=13
    rnn-lm-train --model_dir=/tmp/ptb --data_dir=ptb/ --preset=ptb_small --epochs=2
    rnn-lm-train --model_dir=/tmp/ptb                       # resume it exactly as it was started
    rnn-lm-train --model_dir=/tmp/ptb --epochs=4            # resume it, with a longer schedule

A resume takes the settings stored in --model_dir; flags given change only the
schedule (epochs, steps, learning rate, cadence of logs and checkpoints, ...).
Exit status: 0 trained with finite perplexities, 1 bad input, 3 diverged,
130 / 143 stopped by SIGINT / SIGTERM with a checkpoint written.
"""

import dataclasses
import signal
import sys

from absl import flags
from absl import logging

from rnn_lm import config as config_lib
from rnn_lm import model_dir as model_dir_lib
from rnn_lm import presets as presets_lib
from rnn_lm.bin import common
from rnn_lm.errors import RnnLmError, exit_status_for_signal

FLAGS = flags.FLAGS

flags.DEFINE_string("preset", "", "A shipped recipe: " + ", ".join(presets_lib.available()) +
                    ". Flags given on the command line override it.")
flags.DEFINE_string("model_dir", None, "Where config, vocabulary, checkpoints, logs and the SavedModel go; "
                    "an existing run there is resumed.", required=True)
# Data.
flags.DEFINE_enum("corpus", "", config_lib.CORPUS_NAMES, "A named corpus, found in --data_dir or in "
                  "$RNN_LM_DATA/NAME (downloaded there, checksum-verified, when missing); grammar: the "
                  "built-in corpus. Empty: --data_dir, else the built-in corpus.")
flags.DEFINE_string("data_dir", "", "Folder with train.txt, valid.txt, test.txt (UTF-8), or with the "
                    "files of --corpus. Empty: the built-in grammar corpus, or the --corpus cache.")
flags.DEFINE_enum("level", "word", config_lib.LEVELS, "Tokens are words (split on whitespace) or characters.")
flags.DEFINE_integer("vocab_size", 0, "Cap on the vocabulary size, <unk> and <eos> included; 0: no cap.")
flags.DEFINE_integer("min_count", 1, "Training-split words seen fewer times become <unk>.")
flags.DEFINE_enum("encoding_errors", "strict", ["strict", "replace"], "Bytes that are not UTF-8: an error "
                  "naming the file and offset, or replaced by U+FFFD.")
flags.DEFINE_boolean("stream_train", False, "For a --data_dir larger than memory: build the vocabulary in one "
                     "streaming pass, encode train.txt once into MODEL_DIR/data/train.ids and read training "
                     "windows from that file (valid and test are read into memory).")
flags.DEFINE_integer("grammar_train_tokens", 1_000_000, "Built-in corpus: training tokens.")
flags.DEFINE_integer("grammar_max_depth", 2, "Built-in corpus: how deep subject modifiers nest "
                     "(the distance of subject-verb agreement).")
flags.DEFINE_integer("grammar_seed", 0, "Built-in corpus: generator seed.")
# Model.
flags.DEFINE_enum("cell", "lstm", config_lib.CELL_TYPES, "Recurrent cell.")
flags.DEFINE_enum("activation", "tanh", config_lib.ACTIVATIONS, "Elman cell activation f.")
flags.DEFINE_integer("num_layers", 2, "Stacked recurrent layers.")
flags.DEFINE_integer("hidden_size", 200, "H, units per layer.")
flags.DEFINE_integer("embedding_size", 200, "Word embedding size; 0: one-hot input.")
flags.DEFINE_float("dropout", 0.0, "Dropout rate on the non-recurrent connections (between layers, before "
                   "the softmax, and on the first layer's input unless --input_dropout says otherwise).")
flags.DEFINE_float("input_dropout", -1.0, "Dropout rate on the first layer's input; negative: --dropout.")
flags.DEFINE_boolean("locked_dropout", False, "Variational dropout: one mask per stream for the whole "
                     "window instead of a new one per time step.")
flags.DEFINE_float("embedding_dropout", 0.0, "Drop whole word types from the input embedding (every "
                   "occurrence of a dropped word in the step reads zeros).")
flags.DEFINE_boolean("tie_embeddings", False, "Share the embedding with the softmax weights "
                     "(needs --embedding_size == --hidden_size).")
flags.DEFINE_float("init_scale", 0.1, "Weights start uniform in [-s, s]; 0: Keras' initialisers.")
# Optimisation.
flags.DEFINE_integer("batch_size", 20, "Contiguous streams per batch.")
flags.DEFINE_integer("num_steps", 20, "BPTT window: time steps per training step.")
flags.DEFINE_integer("epochs", 1, "Passes over the training split.")
flags.DEFINE_integer("max_steps", 0, "Stop after this many training steps in all; 0: no limit.")
flags.DEFINE_enum("optimizer", "sgd", config_lib.OPTIMIZERS, "SGD (the lecture's) or Adam.")
flags.DEFINE_float("learning_rate", 20.0, "Learning rate, for the cost averaged over time steps "
                   "(a tutorial's rate for the summed cost times --num_steps).")
flags.DEFINE_float("lr_decay", 1.0, "Learning rate factor per epoch from --decay_start_epoch.")
flags.DEFINE_integer("decay_start_epoch", 2, "First epoch (1-based) trained with a decayed rate.")
flags.DEFINE_enum("lr_schedule", "epoch", config_lib.LR_SCHEDULES, "epoch: times --lr_decay every epoch from "
                  "--decay_start_epoch; plateau: times --lr_decay after an epoch whose validation perplexity "
                  "did not improve on the best by more than --plateau_threshold.")
flags.DEFINE_float("plateau_threshold", 0.0, "Relative improvement of the validation perplexity below which "
                   "the plateau schedule decays the rate (0.01: less than 1 percent).")
flags.DEFINE_float("weight_decay", 0.0, "L2 regularisation: weight_decay * w is added to every weight's "
                   "gradient (that of (weight_decay / 2) |w|^2), before clipping.")
flags.DEFINE_integer("average_start_epoch", 0, "Averaged SGD: from this epoch (1-based) on, keep the mean of "
                     "the weights after every update; validation, test, samples and the export use it. 0: off.")
flags.DEFINE_float("max_grad_norm", 0.25, "Clip gradients to this global norm (of the time-averaged cost's "
                   "gradient); 0: no clipping.")
flags.DEFINE_enum("mixed_precision", "float32", config_lib.COMPUTE_DTYPES, "Mixed precision (Keras' "
                  "mixed_bfloat16 / mixed_float16): cells and softmax product in 16 bits; variables, state, "
                  "softmax and loss in float32; float16 with dynamic loss scaling. Pays only on GPUs and CPUs "
                  "with native bfloat16 (AVX512_BF16, AMX).")
flags.DEFINE_alias("compute_dtype", "mixed_precision")
# Distribution.
flags.DEFINE_enum("strategy", "default", config_lib.STRATEGIES, "tf.distribute strategy: one device; "
                  "mirrored (all local GPUs, or --num_cpu_devices); multi_worker (the cluster in TF_CONFIG); "
                  "tpu (--tpu). --batch_size is the global batch, split over the replicas.")
flags.DEFINE_integer("num_cpu_devices", 0, "--strategy=mirrored over this many logical CPU devices "
                     "(for testing); 0: the local GPUs.")
flags.DEFINE_string("tpu", "", "--strategy=tpu: the TPU's name or grpc:// address.")
flags.DEFINE_boolean("deterministic", False, "TensorFlow's op determinism: with the same --seed, an "
                     "interrupted and resumed run repeats the uninterrupted run's losses (slower on GPUs).")
flags.DEFINE_boolean("jit_compile", False, "Compile the train step and the decoding step with XLA (measure: "
                     "it does not always pay).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, dropout and samples.")
flags.DEFINE_integer("eval_batch_size", 1, "Streams when computing valid/test perplexity; 1 is exact, "
                     "more are faster.")
flags.DEFINE_integer("log_every_steps", 100, "Progress line and TensorBoard scalars every N steps.")
flags.DEFINE_integer("save_every_steps", 0, "Checkpoint every N steps as well as after each epoch.")
flags.DEFINE_float("save_every_secs", 0, "Checkpoint every N seconds as well; 0: not by time.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept (the best-validation one is kept apart, in "
                     "checkpoints/best).")
flags.DEFINE_enum("nan_policy", "skip", config_lib.NAN_POLICIES, "A non-finite loss or gradient norm: skip "
                  "that update (and stop after --max_nonfinite_steps in a row), or stop at once.")
flags.DEFINE_integer("max_nonfinite_steps", 10, "Skipped updates in a row that stop training.")
flags.DEFINE_integer("sample_tokens", 30, "Length of the sample printed after each epoch.")
flags.DEFINE_float("sample_temperature", 0.8, "Temperature of those samples; 0: greedy.")
flags.DEFINE_boolean("export", True, "Export the SavedModel at the end (--noexport: checkpoints only).")


# Config fields whose flag has another name.
FLAG_OF_FIELD = {"compute_dtype": "mixed_precision"}


def config_from_flags(stored=None):
    """The Config the flags ask for.  With ``stored`` (the run in --model_dir), a flag not given on
    the command line (or in a --flagfile / --preset) keeps the stored value instead of its default."""
    parts = {}
    for section, cls in config_lib.SECTIONS.items():
        values = {}
        for field in dataclasses.fields(cls):
            if (section, field.name) == ("model", "vocab_size"):  # filled in from the data
                continue
            flag = FLAGS[FLAG_OF_FIELD.get(field.name, field.name)]  # .present: given, also through an alias
            keep = stored is not None and not flag.present
            values[field.name] = getattr(getattr(stored, section), field.name) if keep else flag.value
        parts[section] = cls(**values)
    return config_lib.Config(**parts)


def main(argv):
    # Flags, files and the model directory are checked before TensorFlow loads.
    logging.set_verbosity(logging.INFO)
    stored = model_dir_lib.stored_config(FLAGS.model_dir)
    prepared = model_dir_lib.prepare(config_from_flags(stored), FLAGS.model_dir)
    from rnn_lm import training
    result = training.train(prepared[0], FLAGS.model_dir, export=FLAGS.export, prepared=prepared)
    if result.interrupted:
        print(f"{result.interrupted}: stopped at step {result.final_step} with a checkpoint in "
              f"{FLAGS.model_dir}; run the same command to resume")
        return exit_status_for_signal(signal.Signals[result.interrupted])
    print(f"valid perplexity {result.valid_perplexity:.2f} "
          f"(unigram {result.unigram_valid_perplexity:.2f}), test perplexity {result.test_perplexity:.2f}")
    if result.tokens_per_sec == result.tokens_per_sec:  # not NaN: enough steps were timed
        print(f"training speed {result.tokens_per_sec:.0f} tokens/s")
    print(f"sample: {result.sample}")
    print(f"model directory: {FLAGS.model_dir} (TensorBoard: tensorboard --logdir {FLAGS.model_dir}/logs --host localhost)")


def expand_preset(argv):
    """Replaces ``--preset=NAME`` by the preset's ``--flagfile``, placed first so that
    flags given on the command line override the preset's."""
    args, presets, i = [], [], 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--preset="):
            presets.append(arg.split("=", 1)[1])
        elif arg == "--preset" and i + 1 < len(argv):
            presets.append(argv[i + 1])
            i += 1
        else:
            args.append(arg)
        i += 1
    return argv[:1] + [f"--flagfile={presets_lib.preset_path(name)}" for name in presets] + args


def run():
    try:
        sys.argv = expand_preset(sys.argv)
    except RnnLmError as e:
        common.fail(e)
    common.run_main(main)


if __name__ == "__main__":
    run()
