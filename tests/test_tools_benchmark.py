"""The benchmark's parts in rnn_lm_tools (speed, timing, machine), importing rnn_lm as a user would: its
Keras step computes the same loss and gradient norm as rnn_lm's from the same weights (and a wrong gate
order would be caught), the step without the recurrence against NumPy, FLOP counts by hand, interleaved
timing rounds, /proc/cpuinfo parsing.  The binary, rnn-lm-benchmark, is in test_bin_benchmark.py.

Timings are never asserted: they depend on the machine and its load.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import cpu
from rnn_lm.errors import RnnLmError
from rnn_lm_tools import machine
from rnn_lm_tools import speed
from rnn_lm_tools import timing

TINY = speed.SIZES["tiny"]  # vocabulary 50, H 8, 2 layers, T 4, batch 4


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_keras_step_computes_what_rnn_lm_step_computes(cell):
    """Same weights in, same loss and gradient norm out, over two steps (state carried, SGD applied).

    This is what makes the speed comparison fair: the Keras layers, given
    rnn_lm's slide-named weights in their own fused gate order, are the same
    function, and the two steps apply the same update.
    """
    model = speed.make_rnn_lm(cell, TINY, seed=3)
    ours = speed.make_rnn_lm_step(model, TINY)
    _, theirs = speed.make_keras_step(cell, TINY, model)
    for inputs, targets in speed.random_batches(TINY, count=2, seed=1):
        a, b = ours(inputs, targets), theirs(inputs, targets)
        np.testing.assert_allclose(float(a["loss"]), float(b["loss"]), rtol=1e-5)
        np.testing.assert_allclose(float(a["grad_norm"]), float(b["grad_norm"]), rtol=1e-5)
    assert float(a["grad_norm"]) > speed.MAX_GRAD_NORM  # clipping was exercised too


def test_a_wrong_gate_order_would_be_caught():
    """The check above has teeth: LSTM weights copied in the slides' order i, f, o, g differ."""
    model = speed.make_rnn_lm("lstm", TINY, seed=3)
    keras_model = speed.KerasLM("lstm", TINY)
    keras_model.copy_from(model)
    kernel = keras_model.rnn_layers[0].cell.kernel
    i, f, g, o = tf.split(kernel, 4, axis=1)
    kernel.assign(tf.concat([i, f, o, g], axis=1))
    inputs, _ = speed.random_batches(TINY, count=1)[0]
    state = model.zero_state(TINY.batch_size)
    ours, _ = model(inputs, state)
    theirs, _ = keras_model(inputs, keras_model.zero_state(TINY.batch_size))
    assert np.max(np.abs(ours.numpy() - theirs.numpy())) > 1e-4


def test_flops_of_the_tiny_config_by_hand():
    # Tiny: H = E = 8, |V| = 50, 2 layers, B x T = 4 x 4 = 16 tokens.  Per token:
    #   LSTM  (4 gates, 32 columns): layer = 2*8*32 (input) + 2*8*32 (recurrent) = 1024, x2 = 2048
    #   GRU   (3 gates, 24 columns): layer = 2*8*24 + 2*8*24 = 768, x2 = 1536
    #   Elman (1 gate,   8 columns): layer = 2*8*8 + 2*8*8 = 256, x2 = 512
    #   softmax: 2*8*50 = 800
    # Training = 3 x forward.
    assert speed.forward_flops("lstm", TINY) == 16 * (2048 + 800) == 45_568
    assert speed.train_flops("lstm", TINY) == 136_704
    assert speed.train_flops("gru", TINY) == 3 * 16 * (1536 + 800) == 112_128
    assert speed.train_flops("elman", TINY) == 3 * 16 * (512 + 800) == 62_976
    # Medium LSTM: per token 2 * (2*650*2600 * 2) + 2*650*10000 = 26.52M, x 700 tokens x 3.
    assert speed.train_flops("lstm", speed.SIZES["medium"]) == 55_692_000_000


def test_softmax_only_step_is_the_cross_entropy_of_embedding_times_v():
    """The profile's no-recurrence step: loss = mean -log softmax(E[w] V + b_y)[target], in float64."""
    model = speed.make_rnn_lm("lstm", TINY, seed=2)
    E, V, b = (np.float64(v.numpy()) for v in (model.embedding, model.V, model.b_y))
    inputs, targets = speed.random_batches(TINY, count=1, seed=4)[0]
    logits = E[inputs] @ V + b
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_p, targets[..., None], -1).mean()
    step = speed.SoftmaxOnlyStep(model)
    np.testing.assert_allclose(float(step(inputs, targets)["loss"]), expected, rtol=1e-5)
    assert not np.allclose(model.V.numpy(), V)  # and it updated the output weights


def test_interleaving_reverses_the_order_every_other_round():
    calls = []
    fns = {name: (lambda name=name: calls.append(name) or name) for name in "ABC"}
    times, last = timing.interleaved(fns, rounds=3, calls_per_round=2)
    assert "".join(calls) == "AABBCC" "CCBBAA" "AABBCC"
    assert {name: len(t) for name, t in times.items()} == {"A": 3, "B": 3, "C": 3}
    assert last == {"A": "A", "B": "B", "C": "C"}


def test_cpu_info_reads_the_first_processors_name_and_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Chip A\nflags\t\t: fpu avx512f amx_bf16\n\n"
                       "processor\t: 1\nmodel name\t: Chip B\nflags\t\t: fpu\n")
    assert cpu.cpu_info(cpuinfo) == ("Chip A", {"fpu", "avx512f", "amx_bf16"})
    assert cpu.cpu_info(tmp_path / "absent") == ("", frozenset())


def test_large_vocabularies_draw_zipf_ids_and_time_the_adaptive_softmax():
    size = dataclasses.replace(TINY, name="tiny_zipf", vocab_size=2100, zipf=True)  # cutoffs (2000,)
    assert size.cutoffs == (2000,) and speed.SIZES["wt2"].cutoffs == (2000, 10000)
    ids = np.concatenate([x.ravel() for pair in speed.random_batches(size, count=200, seed=0) for x in pair])
    counts = np.bincount(ids, minlength=size.vocab_size)
    # p(r) ~ 1/r: id 0 about twice as frequent as id 1, and the head of 2000 ids holds most of the mass.
    assert 1.6 < counts[0] / counts[1] < 2.5
    head = (np.log(2000) + 0.5772) / (np.log(2100) + 0.5772)
    assert np.mean(ids < 2000) == pytest.approx(head, abs=0.02)
    rows = speed.benchmark_training("lstm", size, ("rnn_lm", "rnn_lm_adaptive", "keras"), rounds=1,
                                    steps_per_round=1, warmup=0)
    by_variant = {r["variant"]: r for r in rows}
    assert set(by_variant) == {"rnn_lm", "rnn_lm_adaptive", "keras"}
    assert by_variant["rnn_lm_adaptive"]["gflops"] is None and by_variant["rnn_lm"]["gflops"]["median"] > 0
    assert np.isfinite(by_variant["rnn_lm_adaptive"]["final_loss"])
    # At a small vocabulary the adaptive variants are skipped.
    assert {r["variant"] for r in speed.benchmark_training("lstm", TINY, ("rnn_lm", "rnn_lm_adaptive"), rounds=1,
                                                           steps_per_round=1, warmup=0)} == {"rnn_lm"}


def test_adaptive_cutoffs_reach_the_large_vocabularies_models_and_are_checked():
    """--adaptive_cutoffs changes the large vocabularies' adaptive softmax (the model built has them),
    not the small configs; cutoffs training would refuse are refused as training words it."""
    settings = speed.Settings(configs=("small", "wt2"), adaptive_cutoffs="4000,20000").validate()
    small, wt2 = settings.sizes()
    assert wt2.cutoffs == (4000, 20000) and small == speed.SIZES["small"]
    model = speed.make_rnn_lm("lstm", wt2, softmax="adaptive")
    assert model.config.cutoffs == (4000, 20000)
    # The two clusters' output matrices: ids 4000-19999 and 20000-33277.
    assert model.adaptive_softmax.V_1.shape[-1] == 16000 and model.adaptive_softmax.V_2.shape[-1] == 13278
    for configs, cutoffs, problem in ((("wt2",), "20000,4000", "positive and increasing"),
                                      (("wt2",), "40000", "below the vocabulary size"),
                                      (("small",), "4000", "for the large vocabularies")):
        with pytest.raises(RnnLmError, match=problem):
            speed.Settings(configs=configs, adaptive_cutoffs=cutoffs).validate()


def test_adaptive_factor_reaches_the_large_vocabularies_models_and_is_checked():
    """--adaptive_factor: the clusters' projections H / factor^i (at H = 200, factor 2: 100 and 50 units);
    unset, training's default (4: 50 and 12); refused as training refuses it, or without a large config."""
    wt2, = speed.Settings(configs=("wt2",), adaptive_factor=2.0).validate().sizes()
    assert wt2.factor == 2.0 and speed.SIZES["wt2"].factor == 4.0
    assert speed.make_rnn_lm("lstm", wt2, softmax="adaptive").adaptive_softmax.sizes == [100, 50]
    assert speed.make_rnn_lm("lstm", speed.SIZES["wt2"], softmax="adaptive").adaptive_softmax.sizes == [50, 12]
    for configs, factor, problem in ((("wt2",), 0.5, ">= 1"), (("small",), 2.0, "--adaptive_factor is for")):
        with pytest.raises(RnnLmError, match=problem):
            speed.Settings(configs=configs, adaptive_factor=factor).validate()

def test_the_torch_worker_is_skipped_in_one_line_where_torch_does_not_import(tmp_path, monkeypatch):
    """A PyTorch that fails to import (here a stand-in module that raises) ends in TorchUnavailable
    naming the error, and the benchmark's process never imported torch."""
    import os
    import sys

    from rnn_lm_tools.torch_steps import TorchUnavailable, TorchWorker
    (tmp_path / "torch.py").write_text("raise ImportError('this PyTorch is broken')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    with pytest.raises(TorchUnavailable, match="ImportError: this PyTorch is broken"):
        TorchWorker("lstm", TINY)
    assert "torch" not in sys.modules


@pytest.mark.skipif(machine.torch_version() is None, reason="PyTorch is not installed (the torch extra)")
@pytest.mark.parametrize("adaptive", [False, True])
def test_the_torch_worker_trains_in_its_own_process(adaptive):
    """The first loss of a fresh model is about ln |V| (PyTorch's small initial weights predict nearly
    uniformly); SGD with clipping then lowers it on the repeated batches."""
    from rnn_lm_tools.torch_steps import TorchWorker
    size = dataclasses.replace(speed.SIZES["wt2"], adaptive_factor=2.0) if adaptive else TINY  # div_value 2
    worker = TorchWorker("lstm", size, seed=0, adaptive=adaptive)
    try:
        losses = [worker() for _ in range(12)]
    finally:
        worker.close()
    assert worker.version.startswith(machine.torch_version())  # the metadata drops the local "+cu130"
    assert losses[0] == pytest.approx(np.log(size.vocab_size), rel=0.05)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("size", ["tiny", "small", "medium", "wt2"])
def test_the_step_matmuls_add_up_to_the_counted_flops(cell, size):
    """The limit times exactly the FLOPs the analytic count has, for the whole step and its softmax part."""
    size = speed.SIZES[size]
    flops = lambda counts: sum(2 * m * k * n * c for (m, k, n), c in counts.items())
    assert flops(speed.step_matmuls(cell, size)) == speed.train_flops(cell, size)
    assert flops(speed.step_matmuls(cell, size, "softmax")) == speed.softmax_train_flops(size)
    assert flops(speed.step_matmuls(cell, size, "recurrence")) == (speed.train_flops(cell, size)
                                                                   - speed.softmax_train_flops(size))


def test_the_matmul_limit_times_every_shape():
    counts = speed.step_matmuls("lstm", TINY)
    limit = speed.matmul_limit(counts, min_gflop=0.001, rounds=1)
    assert set(limit["rates"]) == {f"{m}x{k}x{n}" for m, k, n in counts} and min(limit["rates"].values()) > 0
    assert limit["gflops"] * limit["seconds"] * 1e9 == pytest.approx(speed.train_flops("lstm", TINY))


def test_matmuls_at_given_rates_by_hand():
    """2 products of [2, 3] x [3, 4] (48 FLOPs each) at 1 GFLOP/s and 1 of [5, 1] x [1, 2] (20) at 4."""
    limit = speed.at_rates({(2, 3, 4): 2, (5, 1, 2): 1}, {"2x3x4": 1.0, "5x1x2": 4.0, "9x9x9": 7.0})
    assert limit["seconds"] == pytest.approx(96e-9 + 5e-9)
    assert limit["gflops"] == pytest.approx(116 / 101)
    assert limit["rates"] == {"2x3x4": 1.0, "5x1x2": 4.0}
    with pytest.raises(ValueError, match="part"):
        speed.step_matmuls("lstm", TINY, "logits")
