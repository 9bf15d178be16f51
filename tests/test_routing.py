"""Routing: the hash is pinned by test vectors, cross-checked against a
plain-Python MurmurHash3, and the topology maps every bucket."""

import struct

import pytest
from hypothesis import given, strategies as st

from flowstate.errors import ParameterError
from flowstate.routing import BUCKETS, Topology, bucket_of, partition_hash

# Pinned: changing any of these moves stored rows to other partitions.
VECTORS = [
    (0, 1669671676, 11004),
    (1, 1392991556, 7492),
    (-1, 1651860712, 9448),
    (5085551234, 1836739810, 11490),
    (2**63 - 1, 2188461247, 1215),
    (-2**63, 1366273829, 12069),
    ("", 0, 0),
    ("a", 1009084850, 10674),
    ("CA", 1579804202, 9770),
    ("héllo", 3164577896, 8296),
    (b"", 0, 0),
    (b"\x00\xff", 3712929428, 3732),
]


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit, written out from its definition."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    rounded = len(data) & ~3
    for i in range(0, rounded, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    k = 0
    tail = data[rounded:]
    for i in reversed(range(len(tail))):
        k = (k << 8) | tail[i]
    if tail:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


@pytest.mark.parametrize("value, hashed, bucket", VECTORS)
def test_vectors(value, hashed, bucket):
    assert partition_hash(value) == hashed
    assert bucket_of(value) == bucket


@given(st.integers(min_value=-2**63, max_value=2**63 - 1))
def test_integers_hash_as_int64_little_endian(value):
    assert partition_hash(value) == murmur3_32(struct.pack("<q", value))


@given(st.text())
def test_strings_hash_as_utf8(value):
    assert partition_hash(value) == murmur3_32(value.encode("utf-8"))


@given(st.binary())
def test_bytes_hash_as_themselves(value):
    assert partition_hash(value) == murmur3_32(value) == partition_hash(bytearray(value))


@pytest.mark.parametrize("value", [True, 1.5, None, 2**63, (1,)])
def test_values_that_cannot_partition(value):
    with pytest.raises(ParameterError):
        partition_hash(value)


def test_default_topology_spreads_buckets_and_keys():
    topology = Topology(3)
    assert sorted(set(topology.bucket_map)) == [0, 1, 2]
    owners = [topology.partition_of(5085550000 + i) for i in range(3000)]
    assert all(owners.count(p) > 800 for p in range(3))
    assert topology.partition_of(5085551234) == topology.bucket_map[11490] == 11490 % 3


def test_topology_round_trips_and_refuses_what_it_does_not_know():
    topology = Topology(2, [1] * BUCKETS)
    again = Topology.from_wire(topology.to_wire())
    assert again.partitions == 2 and again.partition_of("anything") == 1
    with pytest.raises(ValueError, match="hash version"):
        Topology.from_wire({**topology.to_wire(), "hash_version": 99})
    with pytest.raises(ValueError):
        Topology(2, [2] * BUCKETS)
    with pytest.raises(ValueError):
        Topology(0)
