"""tf.distribute (rnn_lm.distribute): a mirrored run over 2 logical CPU devices and a real 2-worker run give one device's losses.

Each distributed run is a fresh process of ``rnn-lm-train`` (logical devices
and the multi-worker runtime must be set up before TensorFlow starts); its
per-step losses are read back from its TensorBoard events and compared with
an in-process run on one device with the same global batch.  Checkpoints
move between the two: one device's run is resumed under the mirrored
strategy, and the 2-worker run's checkpoint is resumed on one device.

Tolerance: a distributed step sums the replicas' losses and gradients
instead of reducing over the whole batch at once, so float32 rounding
differs (measured: at most a few 1e-7 relative over 10 steps); the test
allows 1e-5 relative.
"""

import glob
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import distribute, training
from rnn_lm.config import flag_name
from rnn_lm.errors import RnnLmError
from tests.helpers import tiny_config, write_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-5
# tiny_config's model and schedule as flags of rnn-lm-train, with a loss logged at every step.
FLAGS = ["--num_layers=1", "--hidden_size=24", "--embedding_size=16", "--batch_size=4", "--num_steps=5",
         "--optimizer=adam", "--learning_rate=0.01", "--sample_tokens=5", "--eval_batch_size=3",
         "--log_every_steps=1", "--deterministic", "--noexport"]


def config(data, max_steps):
    return tiny_config(data, max_steps=max_steps, num_steps=5, log_every_steps=1, deterministic=True)


def run_train(model_dir, data, max_steps, *extra, env=None):
    """rnn-lm-train in a fresh process (this checkout first on the path)."""
    env = dict(env or os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "rnn_lm.bin.train", f"--model_dir={model_dir}", f"--data_dir={data}",
           f"--max_steps={max_steps}", *FLAGS, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)


def finish(proc, timeout=240):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def logged_losses(model_dir):
    """step -> loss, from the TensorBoard events of every run in ``model_dir``."""
    losses = {}
    for path in glob.glob(os.path.join(model_dir, "logs", "train", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "loss":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def assert_same_losses(got, want, steps):
    assert sorted(got) == list(steps), sorted(got)
    np.testing.assert_allclose([got[s] for s in steps], [want[s] for s in steps], rtol=RTOL)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The corpus and one device's run of 10 steps (40 lines: 26 windows of 4 x 5, the state carried)."""
    tmp = tmp_path_factory.mktemp("distribute")
    data = write_corpus(tmp / "data", (40, 4, 4))
    result = training.train(config(data, 10), str(tmp / "one_device"), export=False)
    return tmp, data, result.step_losses


def test_mirrored_over_two_cpu_devices_resumes_one_device_and_matches_it(reference):
    tmp, data, want = reference
    run = str(tmp / "mirrored")
    first = training.train(config(data, 3), run, export=False)  # one device, steps 1-3
    assert_same_losses(first.step_losses, want, range(1, 4))
    out = finish(run_train(run, data, 6, "--strategy=mirrored", "--num_cpu_devices=2"))
    assert "--strategy=mirrored: 2 replicas, 2 streams each" in out
    assert_same_losses(logged_losses(run), want, range(1, 7))


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(run, data, max_steps, *extra):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        tf_config = '{"cluster": %s, "task": {"type": "worker", "index": %d}}' % (
            str(cluster).replace("'", '"'), index)
        procs.append(run_train(run, data, max_steps, "--strategy=multi_worker", *extra,
                               env=dict(os.environ, TF_CONFIG=tf_config)))
    try:
        return [finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_two_workers_train_checkpoint_resume_and_restore_on_one_device(reference):
    tmp, data, want = reference
    run = str(tmp / "two_workers")
    chief, other = run_two_workers(run, data, 4, "--save_every_steps=2")
    assert "--strategy=multi_worker: 2 replicas, 2 streams each" in chief
    assert {"ckpt-2.index", "ckpt-4.index"} <= set(os.listdir(os.path.join(run, "checkpoints")))
    chief, other = run_two_workers(run, data, 8)  # both resume from the chief's ckpt-4
    assert "resumed from" in chief and "resumed from" in other
    assert_same_losses(logged_losses(run), want, range(1, 9))
    # The 2-replica checkpoint, resumed on one device.
    rest = training.train(config(data, 10), run, export=False)
    assert_same_losses(rest.step_losses, want, range(9, 11))
    # The worker that is not the chief wrote nothing into the model directory.
    assert not glob.glob(os.path.join(run, "*worker*"))


def test_global_batch_must_split_over_the_replicas():
    distribute.check_global_batch(20, 4)
    with pytest.raises(RnnLmError, match="train.batch_size=20 does not split over 3 replicas") as e:
        distribute.check_global_batch(20, 3)
    # rnn-lm-train names the field by its flag.
    assert e.value.naming_flags(flag_name).startswith("--batch_size=20 does not split over 3 replicas")


def test_multi_worker_without_tf_config_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    from rnn_lm.config import DistributeConfig
    with pytest.raises(RnnLmError, match="TF_CONFIG"):
        distribute.make_strategy(DistributeConfig(strategy="multi_worker"))
