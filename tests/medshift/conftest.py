"""Shared by every MedShift test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' models are tiny: threads gain nothing, and on a busy 2-core machine their spin-waiting
    slows such models down 10-30x."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
