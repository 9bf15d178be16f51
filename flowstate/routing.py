"""Routing: which partition owns a value of a partitioning column.

One implementation, shared by the client driver (client affinity) and
every server process (forwarding), so both always agree.

    value --partition_hash--> 32-bit hash --% BUCKETS--> bucket
    bucket --Topology.bucket_map--> partition id

Hash (format version 1, fixed: changing it moves every row):
  * integers (any integer column type, so an INTEGER 5 and a BIGINT 5 land
    together): the value as 8 bytes, little-endian two's complement;
  * str (VARCHAR): its UTF-8 bytes;
  * bytes (VARBINARY): the bytes themselves;
  hashed with MurmurHash3 x86 32-bit, seed 0, read as unsigned.
  The bucket is that hash modulo BUCKETS (16384).

The bucket map assigns buckets to partitions; partitions can later be
added by moving buckets, without rehashing any value. The default map
deals buckets round-robin.

Test vectors pin the hash (tests/test_routing.py); a change that alters
them breaks every stored data folder and every client.
"""

from __future__ import annotations

import os
import struct

import mmh3

from flowstate.errors import ParameterError

__all__ = ["BUCKETS", "HASH_VERSION", "partition_hash", "bucket_of", "Topology",
           "default_partitions"]

HASH_VERSION = 1
BUCKETS = 16384

_INT64 = struct.Struct("<q")


def partition_hash(value) -> int:
    """The 32-bit routing hash of a partitioning value (see module doc)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            data = _INT64.pack(value)
        except struct.error:
            raise ParameterError(f"partitioning value {value} is out of range for BIGINT") from None
    elif isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise ParameterError(f"a partitioning value must be an int, str or bytes, "
                             f"got {type(value).__name__} {value!r:.60}")
    return mmh3.hash(data, 0, signed=False)


def bucket_of(value) -> int:
    return partition_hash(value) % BUCKETS


class Topology:
    """The bucket -> partition map of a cluster."""

    __slots__ = ("partitions", "bucket_map")

    def __init__(self, partitions: int, bucket_map: list[int] | None = None):
        if partitions < 1:
            raise ValueError("a cluster has at least one partition")
        if bucket_map is None:
            bucket_map = [b % partitions for b in range(BUCKETS)]
        if len(bucket_map) != BUCKETS:
            raise ValueError(f"a bucket map has {BUCKETS} entries, got {len(bucket_map)}")
        if any(not 0 <= p < partitions for p in bucket_map):
            raise ValueError(f"a bucket map names partitions 0..{partitions - 1} only")
        self.partitions = partitions
        self.bucket_map = list(bucket_map)

    def partition_of(self, value) -> int:
        """The partition that owns ``value`` of a partitioning column."""
        return self.bucket_map[partition_hash(value) % BUCKETS]

    def to_wire(self) -> dict:
        return {"hash_version": HASH_VERSION, "buckets": BUCKETS,
                "partitions": self.partitions, "bucket_map": self.bucket_map}

    @classmethod
    def from_wire(cls, data: dict) -> Topology:
        if data.get("hash_version") != HASH_VERSION or data.get("buckets") != BUCKETS:
            raise ValueError(f"unsupported topology: hash version {data.get('hash_version')}, "
                             f"{data.get('buckets')} buckets (this driver knows version "
                             f"{HASH_VERSION}, {BUCKETS} buckets)")
        return cls(data["partitions"], data["bucket_map"])


def default_partitions() -> int:
    """One partition per core this process may run on, but one, and at
    least one. A partition is a single-threaded process that keeps its
    core busy at saturation; the rest of a server needs CPU too (the
    kernel's network stack and its writeback and journal threads, the
    coordinator, and often clients on the same machine). With a partition
    on every core they all compete, and a partition waiting for a core
    holds up every call it has. Measured on a 2-core VM with the Voter
    client on the same machine: 1 partition answers 173k calls/s without
    durability and 113k in sync mode, 2 partitions 148k and 80k."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)
