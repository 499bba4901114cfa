"""The error a user can act on: the command line prints its message on one line."""


class PrunenetError(ValueError):
    """Bad input or an impossible request; the message says what was wrong and what to do."""


class NonFiniteError(PrunenetError):
    """A loss or parameter became NaN or Inf."""
