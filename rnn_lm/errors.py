"""The one exception type the binaries turn into a one-line error."""


class RnnLmError(ValueError):
    """Bad input or configuration; the message names the problem in one line."""


def reason(error):
    """The first line of what an OSError or a TensorFlow error says (its strerror or message)."""
    text = getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
