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
common.define_config_flags(__name__, skip={("model", "vocab_size")})  # the rest: one flag per config field
flags.DEFINE_alias("compute_dtype", "mixed_precision")  # the field's name, an older name of the flag
flags.DEFINE_boolean("export", True, "Export the SavedModel at the end (--noexport: checkpoints only).")


def config_from_flags(stored=None):
    """The Config the flags ask for.  With ``stored`` (the run in --model_dir), a flag not given on
    the command line (or in a --flagfile / --preset) keeps the stored value instead of its default."""
    parts = {}
    for section, cls in config_lib.SECTIONS.items():
        values = {}
        for field in dataclasses.fields(cls):
            if (section, field.name) == ("model", "vocab_size"):  # filled in from the data
                continue
            flag = FLAGS[config_lib.flag_name(section, field.name)]  # .present: given, also through an alias
            keep = stored is not None and not flag.present
            values[field.name] = getattr(getattr(stored, section), field.name) if keep else flag.value
        parts[section] = cls(**values)
    return config_lib.Config(**parts)


def main(argv):
    # Flags, files and the model directory are checked before TensorFlow loads.
    logging.set_verbosity(logging.INFO)
    stored = model_dir_lib.stored_config(FLAGS.model_dir)
    prepared = model_dir_lib.prepare(config_from_flags(stored), FLAGS.model_dir)
    common.load_tensorflow()
    from rnn_lm import training
    result = training.train(prepared[0], FLAGS.model_dir, export=FLAGS.export, prepared=prepared)
    if result.interrupted:
        print(f"{result.interrupted}: stopped at step {result.final_step} with a checkpoint in "
              f"{FLAGS.model_dir}; run the same command to resume")
        return exit_status_for_signal(signal.Signals[result.interrupted])
    print(f"valid perplexity {result.valid_perplexity:.2f} "
          f"(unigram {result.unigram_valid_perplexity:.2f}), test perplexity {result.test_perplexity:.2f}")
    if result.stopped_early:
        print(f"stopped early after epoch {result.stopped_early}: --patience={FLAGS.patience} epochs without a "
              f"better validation perplexity")
    print(f"weights: {result.final_weights} (--final_weights={FLAGS.final_weights})"
          + ("; the SavedModel holds them" if FLAGS.export else ""))
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
