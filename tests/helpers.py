"""What several test modules share: the CUDA parameter and a ``prefrl`` subprocess's environment."""

from __future__ import annotations

import os

import pytest
import torch

CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
)
"""A ``device`` parameter that runs where torch sees a CUDA device and is skipped elsewhere."""


def child_env() -> dict[str, str]:
    """The environment for a ``prefrl`` subprocess in a test: this checkout first on its path, then whatever
    path the tests run with (a machine whose packages are not installed in the interpreter's own prefix)."""
    path = [os.getcwd(), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
