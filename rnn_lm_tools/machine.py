"""What the numbers were measured on: the CPU (one read of /proc/cpuinfo), the versions, TensorFlow's
fp32 matmul rate, and this process' memory (the resident set: TensorFlow allocates in C++, where
tracemalloc sees nothing)."""

import importlib.metadata
import os
import platform
import resource
import time

import keras
import tensorflow as tf

from rnn_lm.cpu import cpu_info
from rnn_lm_tools import timing


def torch_version():
    """PyTorch's installed version, or None (it is optional).  Read from the package's metadata, not
    by importing it: PyTorch is only ever imported in a process of its own (rnn_lm_tools.torch_steps)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info():
    """What the numbers were measured on."""
    cpu, flags = cpu_info()
    return {"cpu": cpu or platform.processor(), "cpus": os.cpu_count(), "avx512f": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags, "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "torch": torch_version(),
            "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}


def matmul_peak_gflops(n=2048, repeats=3, rounds=3):
    """The fp32 rate TensorFlow reaches on n x n x n matmuls: {median, min, max} GFLOP/s over rounds."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    mm = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))  # a scalar out: no copy to time
    float(mm(a, b))
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            float(mm(a, b))
        rates.append(2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9)
    return timing.summarize(rates)


def rss_mb():
    """Current resident set of this process (Linux), MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def max_rss_mb():
    """High-water mark of the resident set, MB (ru_maxrss is in KB on Linux).  It only grows: measured
    after each variant, it says how high the process had gone by then, not what that variant needs alone."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
