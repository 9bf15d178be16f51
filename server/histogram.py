"""Latency histograms in power-of-two microsecond buckets, as @Statistics
reports them (a procedure's execution times, the command log's fsyncs).

Bucket i holds durations in [2**(i-1), 2**i) microseconds (bucket 0: under
1 us; the last, 31, everything from 2**30 us up). Adding is one
bit_length and one list increment, cheap enough for every call. On the
wire (``to_wire``): ``{"unit": "microseconds", "bucket_upper_bounds":
[1, 2, 4, ...], "counts": [...]}``, cut after the last non-empty bucket.
The native fsync thread (flowstate.native.logwriter.Syncer) buckets the
same way, so its counts merge with ``merge``.
"""

from __future__ import annotations

import math

__all__ = ["LatencyHistogram", "BUCKETS"]

BUCKETS = 32


class LatencyHistogram:
    """Durations in power-of-two microsecond buckets (see the module doc)."""

    __slots__ = ("counts",)

    def __init__(self):
        self.counts = [0] * BUCKETS

    def add(self, nanoseconds: int) -> None:
        self.counts[min((nanoseconds // 1000).bit_length(), BUCKETS - 1)] += 1

    def add_seconds(self, seconds: float) -> None:
        self.counts[min(int(seconds * 1e6).bit_length(), BUCKETS - 1)] += 1

    def merge(self, counts) -> None:
        """Add another histogram's counts (same buckets)."""
        for i, n in enumerate(counts):
            self.counts[i] += n

    def quantile(self, q: float) -> int | None:
        """The upper bound (us) of the bucket that holds quantile ``q``;
        None when empty."""
        total = sum(self.counts)
        if not total:
            return None
        rank = max(1, math.ceil(q * total))          # nearest rank
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return 1 << i
        return 1 << (BUCKETS - 1)

    def to_wire(self) -> dict:
        last = max((i for i, c in enumerate(self.counts) if c), default=-1)
        return {"unit": "microseconds", "bucket_upper_bounds": [1 << i for i in range(last + 1)],
                "counts": self.counts[:last + 1]}
