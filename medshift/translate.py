"""Placeholder: being written."""


def translate() -> None:
    """Not implemented yet."""
    raise NotImplementedError
