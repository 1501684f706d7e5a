"""Placeholder: being written (issue 4)."""


def inspect() -> None:
    """Not implemented yet."""
    raise NotImplementedError
