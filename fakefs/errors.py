"""The errors every layer may raise to end an operation with one line for
the user. They import nothing, so any layer can use them."""


class CliError(Exception):
    """A one-line error for the user (the message is shown as is, already
    prefixed with ``fakefs:``); the CLI prints it and exits with ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Reason(Exception):
    """A one-line reason for the user, without the prefix: the CLI shows it
    as ``fakefs: <reason>``."""


class MountError(Reason):
    """A one-line reason a mount could not be made (no prefix)."""
