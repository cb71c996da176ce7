"""rnn-lm-export: write the SavedModel, or the TFLite model, of a trained model (its latest checkpoint,
or --checkpoint).

    rnn-lm-export --model_dir=/tmp/lm                          # to /tmp/lm/saved_model
    rnn-lm-export --model_dir=/tmp/lm --output_dir=/srv/lm/1   # e.g. a TF Serving version folder
    rnn-lm-export --model_dir=/tmp/lm --checkpoint=best        # the best validation perplexity's weights
    rnn-lm-export --model_dir=/tmp/lm --format=tflite          # /tmp/lm/tflite/model.tflite, vocab.txt
    rnn-lm-export --model_dir=/tmp/lm --format=tflite --measure   # and its size and ms per token
"""

import os
import sys

from absl import flags

from rnn_lm.bin import common
from rnn_lm.errors import RnnLmError

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "A model directory written by rnn-lm-train.", required=True)
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"],
                  "saved_model: the SavedModel (strings in and out, for TF Serving and Python); tflite: the "
                  "one-step model for the LiteRT interpreter (ids and state in and out), vocab.txt beside it.")
flags.DEFINE_string("output_dir", "", "Where to write it; empty: MODEL_DIR/saved_model or MODEL_DIR/tflite.")
flags.DEFINE_boolean("measure", False, "--format=tflite: then print the model's size and the median time of "
                     "one step (batch 1) over 200 steps in the LiteRT interpreter.")
common.define_checkpoint_flag(__name__)


def main(argv):
    from rnn_lm.config import Config
    from rnn_lm.model_dir import SAVED_MODEL_DIR, TFLITE_DIR
    if FLAGS.measure and FLAGS.format != "tflite":
        raise RnnLmError("--measure needs --format=tflite")
    Config.load(FLAGS.model_dir)  # a wrong directory is reported before TensorFlow loads
    common.load_tensorflow()
    from rnn_lm import checkpoints
    config, vocab, model = checkpoints.load_model(FLAGS.model_dir, checkpoint=FLAGS.checkpoint)
    if FLAGS.format == "saved_model":
        from rnn_lm import evaluation, export
        try:
            start = evaluation.sentence_start(config, vocab, model, FLAGS.model_dir)
        except RnnLmError as e:  # the training text is elsewhere now: score from zero, and say so
            start = None
            print(f"score's sentences start from the zero state: the boundary state needs the training text ({e})",
                  file=sys.stderr)
        path = export.export_saved_model(model, vocab, config,
                                         FLAGS.output_dir or os.path.join(FLAGS.model_dir, SAVED_MODEL_DIR), start,
                                         FLAGS.model_dir)
        print(f"SavedModel written to {path}")
        return
    from rnn_lm import tflite
    path = tflite.export_tflite(model, vocab, config, FLAGS.output_dir or os.path.join(FLAGS.model_dir, TFLITE_DIR),
                                FLAGS.model_dir)
    print(f"TFLite model written to {path} (vocabulary beside it)")
    if FLAGS.measure:
        with common.native_output_held():  # LiteRT's delegate notice
            ms = tflite.step_latency(path)
        print(f"{path}: {os.path.getsize(path):,} bytes, {ms:.4f} ms per token "
              f"(median of {tflite.LATENCY_STEPS} steps, batch 1)")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
