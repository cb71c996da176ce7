"""Learning-rate rules and weight averaging (rnn_lm.schedules), against sequences worked by hand: the
epoch schedule (constant, then × lr_decay an epoch), the plateau schedule (× lr_decay after an epoch
that improves validation perplexity by less than the threshold), and averaged SGD as the mean of the
updates."""

import numpy as np
import tensorflow as tf

from rnn_lm import schedules
from rnn_lm import training
from rnn_lm.config import TrainConfig
from rnn_lm.model_dir import prepare
from tests.helpers import tiny_config, write_corpus


def test_learning_rate_schedule():
    t = TrainConfig(learning_rate=20.0, lr_decay=0.5, decay_start_epoch=5)
    assert [schedules.learning_rate_at(t, e) for e in range(6)] == [20.0, 20.0, 20.0, 20.0, 10.0, 5.0]


def test_plateau_schedule_by_hand(tmp_path):
    """lr 20, x0.25 after an epoch that improves valid perplexity by less than 1 %, from epoch 4 on."""
    cfg = tiny_config(write_corpus(tmp_path / "data", (4, 1, 1)), learning_rate=20.0, lr_schedule="plateau",
                      lr_decay=0.25, plateau_threshold=0.01, decay_start_epoch=4)
    cfg, corpus = prepare(cfg, str(tmp_path / "run"))
    trainer = training.Trainer(cfg, str(tmp_path / "run"), corpus.vocab)
    rates = []
    # After epoch 1: the first best. 2: 0.5 % better, but epoch 3 keeps the rate. 3: 0.5 % better:
    # decay. 4: 10 % better. 5: worse than the best: decay. 6: 2 % better than the best (89.1).
    for epoch, ppl in enumerate([100.0, 99.5, 99.0, 89.1, 95.0, 87.3]):
        trainer.learning_rate.after_epoch(epoch, ppl)
        rates.append(trainer.learning_rate.at(epoch + 1))
    assert rates == [20.0, 20.0, 5.0, 5.0, 1.25, 1.25]
    assert float(trainer.learning_rate.plateau.best) == 87.3


def test_weight_average_is_the_mean_of_the_updates():
    v = tf.Variable([1.0, -2.0])
    average = schedules.WeightAverage([v])
    seen = []
    for value in ([3.0, 1.0], [5.0, 0.0], [-1.0, 2.0], [0.5, 0.25]):
        v.assign(value)
        average.update()
        seen.append(value)
    np.testing.assert_allclose(average.averages[0].numpy(), np.mean(seen, axis=0), rtol=1e-6)
    with average.applied():
        np.testing.assert_allclose(v.numpy(), np.mean(seen, axis=0), rtol=1e-6)
    np.testing.assert_array_equal(v.numpy(), [0.5, 0.25])  # the raw weights are back
