"""Placeholder: being written (issue 3)."""


def phantom() -> None:
    """Not implemented yet."""
    raise NotImplementedError
