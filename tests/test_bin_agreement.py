"""rnn-lm-agreement end to end, on a (barely trained) built-in-corpus model: each distance's accuracy is
the fraction of the grammar's sentence pairs (same pairs, same seed) in which the model gives the
grammatical sentence the higher log-probability, recomputed here from one full-sequence call of the
model per sentence (independent of the binary's batched scorer) and equal to
rnn_lm.analysis.agreement_accuracy in this process; a distance the grammar cannot build is one line."""

import json

import pytest

from rnn_lm import analysis, checkpoints
from rnn_lm.data import grammar
from tests.helpers import TINY, assert_one_line_error, run, sentence_log_prob


@pytest.mark.parametrize("name", ["cakes", "pilots"])
def test_agreement_binary_reports_the_fraction_of_pairs_scored_right(tmp_path, name):
    """Each grammar's model is probed with its own grammar's pairs."""
    model_dir = tmp_path / "run"
    train = run("train", f"--model_dir={model_dir}", "--grammar_train_tokens=3000", "--max_steps=3",
                f"--grammar={name}", *TINY)
    assert train.returncode == 0, train.stderr[-2000:]
    distances, pairs, seed = [0, 4], 10, 5
    proc = run("agreement", f"--model_dir={model_dir}", "--distances=0,4", f"--pairs={pairs}", f"--seed={seed}",
               "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["distance"] for r in rows] == distances and all(r["pairs"] == pairs for r in rows)
    _, vocab, model = checkpoints.load_model(str(model_dir))
    for row in rows:
        scored_right = [sentence_log_prob(model, vocab, good)[0] > sentence_log_prob(model, vocab, bad)[0]
                        for good, bad in grammar.agreement_pairs(row["distance"], pairs, seed, name)]
        assert len(scored_right) == pairs
        assert row["accuracy"] == sum(scored_right) / pairs, row
    assert {r["distance"]: r["accuracy"] for r in rows} == analysis.agreement_accuracy(model, vocab, distances,
                                                                                         pairs, seed, grammar=name)
    assert ("pilot" in vocab.index) == (name == "pilots")
    assert_one_line_error(run("agreement", f"--model_dir={model_dir}", "--distances=1"), "distance 1")
