"""Placeholder: being written."""


def train_vae() -> None:
    """Not implemented yet."""
    raise NotImplementedError
