"""rnn-lm-export: write the SavedModel of a trained model (its latest checkpoint, or --checkpoint).

    rnn-lm-export --model_dir=/tmp/lm                          # to /tmp/lm/saved_model
    rnn-lm-export --model_dir=/tmp/lm --output_dir=/srv/lm/1   # e.g. a TF Serving version folder
    rnn-lm-export --model_dir=/tmp/lm --checkpoint=best        # the best validation perplexity's weights
"""

import os

from absl import flags

from rnn_lm.bin import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "A model directory written by rnn-lm-train.", required=True)
flags.DEFINE_string("output_dir", "", "Where to write the SavedModel; empty: MODEL_DIR/saved_model.")
common.define_checkpoint_flag(__name__)


def main(argv):
    from rnn_lm.config import Config
    from rnn_lm.model_dir import SAVED_MODEL_DIR
    Config.load(FLAGS.model_dir)  # a wrong directory is reported before TensorFlow loads
    common.load_tensorflow()
    from rnn_lm import checkpoints, export
    config, vocab, model = checkpoints.load_model(FLAGS.model_dir, checkpoint=FLAGS.checkpoint)
    path = export.export_saved_model(model, vocab, config,
                                     FLAGS.output_dir or os.path.join(FLAGS.model_dir, SAVED_MODEL_DIR))
    print(f"SavedModel written to {path}")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
