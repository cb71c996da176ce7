"""rnn-lm-eval end to end, in fresh processes, on a model rnn-lm-train wrote (the ``trained`` fixture):
its test perplexity equals the one training printed, through the SavedModel equals through the
checkpoint, per-sentence scores equal the SavedModel's ``score`` signature, unknown words are counted;
a directory that is not a model, or a config.json that is not a config, is one line."""

import json
import os

import pytest
import tensorflow as tf

from tests.helpers import assert_one_line_error, run


def test_eval_matches_training_test_perplexity(trained):
    model_dir, _, train_proc = trained
    proc = run("eval", f"--model_dir={model_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained_ppl = float(train_proc.stdout.split("test perplexity ")[1].split()[0])
    evaluated = float(proc.stdout.split("perplexity ")[1].split(",")[0])
    assert evaluated == pytest.approx(trained_ppl, rel=1e-3)


def test_eval_on_a_text_file_counts_unknown_words(trained, tmp_path):
    model_dir, _, _ = trained
    text = tmp_path / "mine.txt"
    text.write_text("the cake zebra was eaten\n", encoding="utf-8")
    proc = run("eval", f"--model_dir={model_dir}", f"--text_file={text}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "6 tokens" in proc.stdout and "<unk> 16.67%" in proc.stdout


def test_eval_through_the_saved_model_equals_the_checkpoint(trained):
    model_dir, data, _ = trained
    text = os.path.join(data, "test.txt")
    from_checkpoint = run("eval", f"--model_dir={model_dir}", f"--text_file={text}")
    from_saved_model = run("eval", f"--saved_model={model_dir}/saved_model", f"--text_file={text}")
    for proc in (from_checkpoint, from_saved_model):
        assert proc.returncode == 0, proc.stderr[-2000:]
    ppl = [float(p.stdout.split("perplexity ")[1].split(",")[0]) for p in (from_checkpoint, from_saved_model)]
    assert ppl[0] == pytest.approx(ppl[1], rel=1e-4)


def test_per_sentence_scores_agree_with_the_saved_model(trained, tmp_path):
    model_dir, _, _ = trained
    lines = ["the cake which the children like was eaten by two small dogs", "dogs small two by eaten"]
    text = tmp_path / "nbest.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run("eval", f"--model_dir={model_dir}", f"--text_file={text}", "--per_sentence")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    served = tf.saved_model.load(os.path.join(model_dir, "saved_model")).signatures["score"](
        sentences=tf.constant(lines))
    assert [r["text"] for r in rows] == lines
    assert [r["num_tokens"] for r in rows] == [13, 6] == served["num_tokens"].numpy().tolist()
    for row, log_prob in zip(rows, served["log_prob"].numpy()):
        assert row["log_prob"] == pytest.approx(float(log_prob), rel=1e-4)
    assert rows[0]["perplexity"] < rows[1]["perplexity"]  # the sentence it was trained on


def test_eval_of_a_missing_model_dir(tmp_path):
    assert_one_line_error(run("eval", f"--model_dir={tmp_path / 'nothing'}"), "not an rnn_lm model directory")


def test_eval_of_a_config_json_that_is_not_a_config(tmp_path):
    """The library's refusals of each wrong field are in test_config.py."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("[1, 2]")
    assert_one_line_error(run("eval", f"--model_dir={tmp_path / 'run'}"), "config.json", "not an rnn_lm config")
