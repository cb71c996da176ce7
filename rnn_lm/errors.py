"""The one exception type the binaries turn into a one-line error."""


class RnnLmError(ValueError):
    """Bad input or configuration; the message names the problem in one line."""
