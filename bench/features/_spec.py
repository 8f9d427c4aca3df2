"""What both sides agree on: the data's shape and the lookups' keys (standard library only)."""

from __future__ import annotations

import random

SEED = 20261204
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
DAY_US = 86_400 * 1_000_000
DAYS = 30
TTL_DAYS = 2
FEATURES = ("f0", "f1", "f2", "f3", "f4")


def lookup_batches(ids: int, size: int, count: int) -> list[list[int]]:
    """``count`` batches of ``size`` entity ids, the same on both sides (2% are unknown ids)."""
    rng = random.Random(SEED + size)
    return [[rng.randrange(int(ids * 1.02)) for _ in range(size)] for _ in range(count)]


def sample_ids(ids: int) -> list[int]:
    """The entity ids whose online values are compared between the two sides."""
    rng = random.Random(SEED)
    return sorted(rng.sample(range(int(ids * 1.01)), min(1000, ids)))
