"""Placeholder: being written (issue 4)."""


def push() -> None:
    """Not implemented yet."""
    raise NotImplementedError
