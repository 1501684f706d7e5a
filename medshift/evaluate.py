"""Placeholder: being written."""


def evaluate() -> None:
    """Not implemented yet."""
    raise NotImplementedError
