"""rnn-lm-diagnose end to end, in fresh processes: fresh models' diagnostics as JSON (the Elman gradient
shrinking with the lag), PNG figures and TensorBoard images; the three-cell experiment at toy size
(models of nearly equal size, each drawn untrained and trained, with agreement accuracies); bad flags are
one line.  The quantities themselves are checked in test_diagnostics.py and test_analysis.py."""

import json

import numpy as np
import pytest

import tensorflow as tf

from rnn_lm import diagnostics
from tests.helpers import assert_one_line_error, run


def test_diagnose_binary_fresh_models(tmp_path):
    proc = run("diagnose", f"--out_dir={tmp_path}", "--hidden_size=8", "--num_steps=6", "--batch_size=4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "diagnose.json").read_text())
    assert sorted(results) == ["elman (init)", "gru (init)", "lstm (init)"]
    for result in results.values():
        assert [len(layer) for layer in result["gradient_flow"]] == [6, 6]
    elman = results["elman (init)"]["gradient_flow"][0]
    assert elman[5] < elman[0]  # the simple RNN's gradient shrinks with the lag
    assert results["elman (init)"]["keep_histogram"] == [None, None]
    for png in ("gradient_flow.png", "gates.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "lag 5" in proc.stdout
    # The figures as TensorBoard images.
    tags = set()
    for event_file in (tmp_path / "tensorboard").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
    assert tags == {"gradient_flow", "gates"}


def test_diagnose_binary_bad_input(tmp_path):
    assert_one_line_error(run("diagnose", f"--out_dir={tmp_path}", "--num_steps=1"), "--num_steps")
    assert_one_line_error(run("diagnose", f"--out_dir={tmp_path}", f"--model_dir={tmp_path}/none"), "none")
    assert_one_line_error(run("diagnose", f"--out_dir={tmp_path}", "--cells=lstm,rnn"), "rnn")
    assert_one_line_error(run("diagnose", f"--out_dir={tmp_path}", "--model_dir=x", "--experiment=cells"),
                          "exclude")
    # A corpus too small for a validation batch: the one line alone, no warning about an empty split before it.
    tiny = run("diagnose", f"--out_dir={tmp_path}", "--experiment=cells", "--train_tokens=10")
    assert_one_line_error(tiny, "too few")
    assert "Warning" not in tiny.stderr, tiny.stderr


def test_diagnose_binary_cell_experiment(tmp_path):
    """The experiment end to end at toy size: three trained models of nearly equal size, each drawn twice."""
    proc = run("diagnose", f"--out_dir={tmp_path}", "--experiment=cells", "--hidden_size=8", "--num_layers=1",
               "--train_tokens=3000", "--epochs=1", "--num_steps=5", "--agreement_pairs=4", "--seeds=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "diagnose.json").read_text())
    trained = {label: r for label, r in results.items() if not label.endswith("(init)")}
    assert len(results) == 6 and len(trained) == 3
    counts = [r["parameters"] for r in trained.values()]
    assert max(counts) - min(counts) < 0.05 * max(counts)
    for label, r in trained.items():
        assert results[label + " (init)"]["parameters"] == r["parameters"]
        assert set(r["agreement"]) == {str(d) for d in diagnostics.AGREEMENT_DISTANCES}
        assert 1 < r["valid_perplexity"] < 200
        assert (tmp_path / label.split()[0] / "config.json").exists()
    assert (tmp_path / "agreement.png").exists()


def test_diagnose_binary_cell_experiment_with_seeds(tmp_path):
    """--seeds=2: each cell trained twice (its own model directories); the JSON holds both seeds' results
    and the summary with its intervals, agreement from the boundary state and from zero; the table
    prints the intervals.  On the second grammar (--grammar=pilots), which every model is trained on."""
    proc = run("diagnose", f"--out_dir={tmp_path}", "--experiment=cells", "--cells=lstm,elman", "--hidden_size=8",
               "--num_layers=1", "--train_tokens=3000", "--epochs=1", "--num_steps=5", "--agreement_pairs=4",
               "--seeds=2", "--seed=5", "--grammar=pilots")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "diagnose.json").read_text())
    trained = {label: r for label, r in results.items() if not label.endswith("(init)")}
    assert len(results) == 4 and len(trained) == 2
    for label, r in trained.items():
        cell = label.split()[0]
        assert [s["seed"] for s in r["seeds"]] == [5, 6]
        assert [s["model_dir"] for s in r["seeds"]] == [str(tmp_path / f"{cell}_seed{s}") for s in (5, 6)]
        assert json.loads((tmp_path / f"{cell}_seed5" / "config.json").read_text())["data"]["grammar"] == "pilots"
        assert r["valid_perplexity"] == pytest.approx(np.mean([s["valid_perplexity"] for s in r["seeds"]]))
        low, high = r["valid_perplexity_interval"]
        assert low <= r["valid_perplexity"] <= high
        for key in ("agreement", "agreement_zero"):
            for d, (lo, hi) in r[key + "_interval"].items():
                assert lo <= r[key][d] <= hi
                assert r[key][d] == pytest.approx(np.mean([s[key][d] for s in r["seeds"]]))
    assert "[" in proc.stdout and "agreement by distance (from the boundary state)" in proc.stdout
    assert (tmp_path / "agreement.png").exists()


def trained_result(out_dir):
    """The one trained model's result of an experiment's diagnose.json."""
    results = json.loads((out_dir / "diagnose.json").read_text())
    (label,) = [label for label in results if not label.endswith("(init)")]
    return results[label]


def test_diagnose_binary_cell_experiment_chooses_each_cells_rate_and_converges(tmp_path):
    """--learning_rates: one epoch at each, the best run goes on (its first epoch kept); --patience:
    up to --epochs, stopped after epochs without a better validation perplexity, the best weights kept.
    The same command again resumes every run and gives the same figures."""
    args = ["diagnose", f"--out_dir={tmp_path}", "--experiment=cells", "--cells=gru", "--hidden_size=8",
            "--num_layers=1", "--train_tokens=3000", "--epochs=4", "--num_steps=5", "--agreement_pairs=4",
            "--seeds=1", "--learning_rates=0.0001,0.01", "--patience=1"]
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = trained_result(tmp_path)
    trials = r["learning_rate_trials"]
    assert set(trials) == {"0.0001", "0.01"} and trials["0.01"] < trials["0.0001"] and r["learning_rate"] == 0.01
    run_dir = tmp_path / "gru_seed0_lr0.01"
    assert r["model_dir"] == str(run_dir) and (tmp_path / "gru_seed0_lr0.0001").is_dir()
    stored = json.loads((run_dir / "config.json").read_text())["train"]
    assert stored["patience"] == 1 and stored["lr_schedule"] == "plateau" and 1 < r["epochs"] <= 4
    assert r["valid_perplexity"] <= trials["0.01"] + 1e-9  # the best weights, the first epoch's included
    assert "Adam at 0.01" in proc.stdout
    again = run(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert trained_result(tmp_path)["valid_perplexity"] == pytest.approx(r["valid_perplexity"], rel=1e-6)


def test_diagnose_binary_exploding_experiment_with_seeds(tmp_path):
    """The clipping experiment end to end, two seeds: each label keeps both runs, counts the runs that
    broke down (consistent with their curves) and prints one line per label; the clipped runs stay finite."""
    proc = run("diagnose", f"--out_dir={tmp_path}", "--experiment=exploding", "--exploding_steps=4", "--seeds=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "diagnose.json").read_text())
    assert sorted(results) == ["clipped at 0.25", "no clipping"]
    for label, r in results.items():
        assert r["runs"] == 2 and len(r["seeds"]) == 2 and r["loss"] == r["seeds"][0]["loss"]
        bad = [next((i + 1 for i, v in enumerate(c["loss"]) if not np.isfinite(v)), None) for c in r["seeds"]]
        assert r["first_non_finite_step"] == bad and r["broke_down"] == sum(b is not None for b in bad)
        assert f"{label:16s} NaN or inf in {r['broke_down']} of 2 runs" in proc.stdout
    assert results["clipped at 0.25"]["broke_down"] == 0 and "last_cost" in results["clipped at 0.25"]
    assert results["no clipping"]["seeds"][0]["loss"][0] == results["clipped at 0.25"]["seeds"][0]["loss"][0]
    assert (tmp_path / "exploding.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
