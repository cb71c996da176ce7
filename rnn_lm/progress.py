"""Progress a person can watch: a live tqdm bar, with an ETA, when stderr is a terminal.

When stderr is not a terminal (a log file, a pipe, CI) the bar is off and the
callers write plain periodic log lines instead (``on_terminal``).  Log lines
written while a bar is shown go above it instead of through it (``logs_above_bars``).
"""

import contextlib
import sys

from tqdm import tqdm


def on_terminal():
    return sys.stderr.isatty()


def bar(total, desc, unit="step", initial=0, **kwargs):
    """A tqdm bar on stderr; a no-op object with the same methods when stderr is not a terminal."""
    kwargs["disable"] = kwargs.get("disable", False) or not on_terminal()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, **kwargs)


class _AboveBars:
    """A stream for log handlers: each write goes above the bars (tqdm.write)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        tqdm.write(text, file=self.stream, end="")

    def flush(self):
        self.stream.flush()


@contextlib.contextmanager
def logs_above_bars(shown_bar):
    """While ``shown_bar`` is on the terminal, absl's log lines are written above it, not through it."""
    if shown_bar.disable:
        yield
        return
    from absl import logging
    handler = logging.get_absl_handler().python_handler
    old = handler.setStream(_AboveBars(handler.stream))
    try:
        yield
    finally:
        handler.setStream(old)
