"""Shared fixtures for the storage tests."""

import random

import pytest


@pytest.fixture(scope="session")
def age_plaintext():
    """`age_plaintext(size, seed=0)`: deterministic pseudo-random bytes, cached for the session."""
    cache: dict[tuple[int, int], bytes] = {}

    def make(size: int, seed: int = 0) -> bytes:
        if (size, seed) not in cache:
            cache[size, seed] = random.Random(seed * 1_000_003 + size).randbytes(size)
        return cache[size, seed]

    return make
