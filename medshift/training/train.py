"""Placeholder: being written."""


def train() -> None:
    """Not implemented yet."""
    raise NotImplementedError
