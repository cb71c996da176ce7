"""rnn-lm-generate: continue prompts with a trained model.

    rnn-lm-generate --model_dir=/tmp/lm --prompt="the cake which" --temperature=0.8 --seed=1
"""

from absl import flags

from rnn_lm.bin import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "A model directory written by rnn-lm-train.", required=True)
flags.DEFINE_multi_string("prompt", [""], "Text to continue (repeatable); empty: a new sentence.")
flags.DEFINE_integer("max_tokens", 50, "Stop after this many tokens if no <eos> came.")
flags.DEFINE_float("temperature", 1.0, "Divide the logits by this before sampling; 0: greedy.")
flags.DEFINE_integer("num_samples", 1, "Continuations per prompt.")
flags.DEFINE_integer("seed", 0, "Sampling seed: the same seed gives the same text.")


def main(argv):
    from rnn_lm.errors import RnnLmError
    if FLAGS.max_tokens <= 0 or FLAGS.num_samples <= 0:
        raise RnnLmError("--max_tokens and --num_samples must be positive")
    if FLAGS.temperature < 0:
        raise RnnLmError(f"--temperature must be >= 0, got {FLAGS.temperature}")
    from rnn_lm.config import Config
    Config.load(FLAGS.model_dir)  # a wrong directory is reported before TensorFlow loads
    import numpy as np
    import tensorflow as tf
    from rnn_lm import decoding, training
    from rnn_lm.data.tokenizers import get_tokenizer

    config, vocab, model = training.load_model(FLAGS.model_dir)
    tokenizer = get_tokenizer(config.data.level)
    prompts = [p for p in FLAGS.prompt for _ in range(FLAGS.num_samples)]
    encoded = [[vocab.eos_id] + list(vocab.encode(tokenizer.tokenize_prompt(p))) for p in prompts]
    width = max(map(len, encoded))
    prompt_ids = np.zeros([len(encoded), width], np.int32)
    for row, ids in zip(prompt_ids, encoded):
        row[:len(ids)] = ids
    run_sample = tf.function(lambda ids, lengths: decoding.sample(
        model, ids, lengths, FLAGS.max_tokens, FLAGS.temperature, FLAGS.seed, vocab.eos_id))
    ids, lengths = run_sample(tf.constant(prompt_ids), tf.constant([len(e) for e in encoded]))
    for prompt, row, n in zip(prompts, ids.numpy(), lengths.numpy()):
        continuation = tokenizer.detokenize(vocab.decode(row[:n])).rstrip("\n")
        print((prompt + tokenizer.separator + continuation).strip() if prompt else continuation)


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
