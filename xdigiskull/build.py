"""Placeholder: being written (issue 4)."""


def build() -> None:
    """Not implemented yet."""
    raise NotImplementedError
