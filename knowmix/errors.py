"""Errors a user can cause: the CLI prints the one-line message and exits with status 2."""


class UserError(Exception):
    """A bad path, a config typo, a malformed option: the message names the file/key and what is wrong."""
