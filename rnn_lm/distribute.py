"""tf.distribute: the strategy a run trains under, its share of the input, and its workers.

With R replicas the global batch of B streams is split by rows: replica r
trains streams [r * B/R, (r + 1) * B/R) of every window, so each replica's
rows of one window continue its rows of the previous one and the state it
carries stays its own streams' state:

    global window w       rows 0 .. B/R-1   ->  replica 0
    [B, num_steps]        rows B/R .. 2B/R-1 ->  replica 1     ...

The carried state lives in the same [B, H] variables whatever the strategy
(``rnn_lm.training.DistributedTrainStep`` slices and gathers them), so a
checkpoint restores under any other strategy.

    default       one device, the code path of ``rnn_lm.training.TrainStep``
    mirrored      all local GPUs, or ``num_cpu_devices`` logical CPU devices
    multi_worker  MultiWorkerMirroredStrategy, the cluster read from TF_CONFIG
    tpu           TPUStrategy on the TPU at ``tpu`` (untested: no TPU here)
"""

import json
import os
import shutil
import tempfile

import tensorflow as tf

from rnn_lm.errors import RnnLmError, field_ref, reason


def make_strategy(config):
    """The tf.distribute strategy of a ``rnn_lm.config.DistributeConfig``.

    Logical CPU devices and the multi-worker runtime must be set up before
    TensorFlow initialises its devices: call this first in a process.
    """
    name = config.strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if config.num_cpu_devices:
            return tf.distribute.MirroredStrategy(_logical_cpus(config.num_cpu_devices))
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise RnnLmError(f"{field_ref('distribute', 'strategy')}=multi_worker reads the cluster from the "
                             "TF_CONFIG environment variable, which is not set (see docs/scaling.md)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as e:
            raise RnnLmError(f"TF_CONFIG is not JSON ({e})") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=config.tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            where = config.tpu or f"(none given: {field_ref('distribute', 'tpu')})"
            raise RnnLmError(f"{field_ref('distribute', 'strategy')}=tpu: no TPU found at {where} "
                             f"({reason(e)})") from None
    raise RnnLmError(f"unknown strategy {name!r}")


def _logical_cpus(n):
    """The first CPU split into ``n`` logical devices; returns their names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:
            raise RnnLmError(f"{field_ref('distribute', 'num_cpu_devices')}={n}: TensorFlow's devices were already "
                             f"initialised with {have} CPU device(s) in this process; start a new one") from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def is_default(strategy):
    """Whether ``strategy`` is TensorFlow's default one (no distribution)."""
    with strategy.scope():
        return not tf.distribute.has_strategy()


def check_global_batch(batch_size, num_replicas):
    if batch_size % num_replicas:
        raise RnnLmError(f"{field_ref('train', 'batch_size')}={batch_size} does not split over {num_replicas} "
                         "replicas: use a multiple of the replica count (it is the global batch)")


def distribute_windows(strategy, windows, batch_size):
    """The global ``windows`` dataset ([B, T] pairs) as a distributed dataset, rows split by replica.

    Each input pipeline (one per worker) reads the global windows and keeps
    the rows of its own replicas; its elements alternate between those
    replicas, which is the order in which the distributed iterator hands
    them out (one element per local replica, in replica order).
    """
    num_replicas = strategy.num_replicas_in_sync
    check_global_batch(batch_size, num_replicas)
    rows = batch_size // num_replicas

    def dataset_fn(context):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        first = context.input_pipeline_id * local * rows

        def split(inputs, targets):  # [B, T] -> [local, B/R, T]: this pipeline's replicas' rows
            take = lambda x: tf.reshape(x[first:first + local * rows], [local, rows, x.shape[1]])
            return take(inputs), take(targets)

        return windows.map(split).unbatch()

    return strategy.distribute_datasets_from_function(
        dataset_fn, tf.distribute.InputOptions(experimental_fetch_to_device=True))


def is_chief(strategy):
    """Whether this worker writes the model directory (the only worker, or the chief of a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_dir(strategy):
    """Where a worker that is not the chief writes its checkpoints and logs: a temporary folder.

    Every worker writes checkpoints at the same steps (tf.distribute's
    multi-worker pattern); only the chief's land in the model directory.
    Returns None for the chief.
    """
    if is_chief(strategy):
        return None
    resolver = strategy.cluster_resolver
    return tempfile.mkdtemp(prefix=f"rnn_lm_{resolver.task_type}{resolver.task_id}_")


def remove_worker_dir(path):
    if path:
        shutil.rmtree(path, ignore_errors=True)
