"""Timing for the harnesses: callables interleaved, round after round, in one process, where absolute
speed drifts: each round gives every callable's seconds per call, and two are compared by the per-round
ratio (paired, so drift common to both cancels).  ``run_timed`` times another binary's output lines."""

import gc
import statistics
import subprocess
import time

# Pause when switching between TensorFlow and PyTorch: the other runtime's
# spinning worker threads otherwise slow the next variant (measured ~20 %).
RUNTIME_SWITCH_PAUSE_S = 0.25


def summarize(values):
    """{median, min, max} of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def first_call_and_warmup(fn, warmup):
    """Seconds of the first call (tracing, XLA compiling), then ``warmup`` untimed calls."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup):
        fn()
    return first


def interleaved(fns, rounds, calls_per_round, runtimes=None):
    """Times ``fns`` (name -> no-argument callable) interleaved.

    Returns (name -> [seconds per call, one per round], name -> what its last call returned).

    Round r runs every callable ``calls_per_round`` times, in the given order
    when r is even and reversed when odd, so that no variant always follows
    the same neighbour.  ``runtimes`` (name -> "tf" or "torch") adds an
    untimed pause where the runtime changes.
    """
    names = list(fns)
    times, last = {name: [] for name in names}, {}
    previous = None
    # Building graphs leaves many Python objects behind; a full garbage
    # collection landing inside a timed round cost up to 0.2 s.  Collect
    # now and not while timing (as timeit does).
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                runtime = (runtimes or {}).get(name, "tf")
                if previous is not None and runtime != previous:
                    time.sleep(RUNTIME_SWITCH_PAUSE_S)
                previous = runtime
                start = time.perf_counter()
                for _ in range(calls_per_round):
                    last[name] = fns[name]()
                times[name].append((time.perf_counter() - start) / calls_per_round)
    finally:
        gc.enable()
    return times, last


def paired_ratio(base, other):
    """Per-round base/other: how many times faster ``other`` is than ``base``."""
    return summarize([b / o for b, o in zip(base, other)])


def run_timed(cmd, env=None):
    """Runs ``cmd`` with its stderr merged into its stdout, reading the output as it comes.

    Returns (exit status, [(seconds after the start, line)], seconds in all).
    """
    start = time.monotonic()
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line))
    return proc.returncode, lines, time.monotonic() - start
