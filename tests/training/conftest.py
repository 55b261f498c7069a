"""Fixtures of the training tests."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def deterministic_torch() -> Iterator[None]:
    """Torch's deterministic algorithms for one test (a resumed run must match bit for bit),
    and the setting as it was afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(mode=True)
    yield
    torch.use_deterministic_algorithms(mode=before)
