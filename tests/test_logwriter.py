"""The command log's native hot path (native/logwriter.pyx) against the
libraries it stands in for, and the async mode that uses its fsync thread.

* RecordBuffer.append_call must frame exactly what packing the record with
  msgpack-python and CRC'ing it with the crc32c package gives (hypothesis
  over the values a call's parameters are made of), and leave nothing
  behind for values it leaves to Python.
* The buffer's ranges (fitting, span, pwrite, discard) on a real file.
* Syncer: a real fdatasync on its thread, and its errno when it fails.
* write_back (sync_file_range) and write_zeros on a real file, and their errors.
* CommandLog in async mode: records reach the disk on the ticks, an answer
  held for them is released once they are synced, and the log reads back.
"""

import asyncio
import decimal
import enum
import errno
import os
import select
import struct
import threading

import crc32c
import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from flowstate.native.logwriter import (RecordBuffer, Syncer, crc32c as native_crc32c, write_back,
                                        write_zeros)
from flowstate.protocol import pack, unpack
from flowstate.server.commandlog import CALL, CommandLog, LogReader, result_digest
from flowstate.server.histogram import LatencyHistogram

from test_commandlog import FakeConnection, assert_clean, payload

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
    | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(
        st.text(max_size=8) | st.integers(-1000, 1000), inner, max_size=8),
    max_leaves=40)


def expected_record(fields: list) -> bytes:
    body = msgpack.packb(fields)
    return struct.pack("<II", len(body), crc32c.crc32c(body)) + body


@settings(max_examples=400, deadline=None)
@given(params=st.lists(values, max_size=6),
       txn_id=st.integers(0, 2**63 - 1), timestamp=st.integers(0, 2**63 - 1),
       key=st.none() | st.text(max_size=40) | st.binary(max_size=40),
       result=values,
       name=st.text(min_size=1, max_size=40), changes=st.integers(0, 2**64 - 1))
def test_append_call_frames_what_msgpack_and_crc32c_give(params, txn_id, timestamp, key,
                                                         result, name, changes):
    buffer = RecordBuffer()
    buffer.append_payload(b"\x91\x05")                      # one record before it
    assert buffer.append_call(txn_id, timestamp, name, params, key, result, changes)
    fields = [CALL, txn_id, timestamp, name, params, key, result_digest(result), changes]
    assert buffer.record(1) == expected_record(fields)
    assert unpack(buffer.record(1)[8:]) == fields
    assert len(buffer) == 2
    assert buffer.nbytes == 10 + len(buffer.record(1))


class Level(enum.IntEnum):
    HIGH = 7


@pytest.mark.parametrize("value", [
    2**64, -2**63 - 1, decimal.Decimal("1.5"), {1, 2}, object(), [[[[1]]] * 2, decimal.Decimal(0)],
    {"k": [1, 2, decimal.Decimal(3)]}, 1.0j, Level.HIGH])
def test_values_left_to_python_leave_nothing(value):
    buffer = RecordBuffer()
    assert buffer.append_call(1, 2, "P", [1], None, 3, 9)
    before = (len(buffer), buffer.nbytes, buffer.record(0))
    assert not buffer.append_call(1, 2, "P", [1, "x" * 100, value], None, 3, 9)
    assert (len(buffer), buffer.nbytes, buffer.record(0)) == before
    assert not buffer.append_call(1, 2, "P", [1], None, [value], 9)       # as a result too
    assert (len(buffer), buffer.nbytes, buffer.record(0)) == before
    assert buffer.append_call(4, 5, "P", [2], None, 6, 2**64 - 1)        # and it goes on
    assert buffer.record(1) == expected_record([CALL, 4, 5, "P", [2], None, 6, 2**64 - 1])


def test_deep_nesting_is_left_to_python():
    value = [1]
    for _ in range(100):
        value = [value]
    buffer = RecordBuffer()
    assert not buffer.append_call(1, 2, "P", [value], None, 3, 0)
    assert buffer.nbytes == 0


@given(st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_native_crc32c_is_crc32c(data, start):
    assert native_crc32c(data, start) == crc32c.crc32c(data, start)


def test_ranges_pwrite_and_discard(tmp_path):
    buffer = RecordBuffer()
    payloads = [payload(i, pad=i * 7) for i in range(40)]
    for p in payloads:
        buffer.append_payload(p)
    framed = [struct.pack("<II", len(p), crc32c.crc32c(p)) + p for p in payloads]
    assert [buffer.record(i) for i in range(40)] == framed
    assert buffer.span(3, 7) == sum(len(f) for f in framed[3:7])
    room = sum(len(f) for f in framed[5:9])
    assert buffer.fitting(5, room) == 9 and buffer.fitting(5, room - 1) == 8
    assert buffer.fitting(5, 0) == 5 and buffer.fitting(40, 10) == 40

    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert buffer.pwrite(fd, 0, 10, 100) == buffer.span(0, 10)
        assert os.pread(fd, buffer.span(0, 10), 100) == b"".join(framed[:10])
        buffer.discard(10)
        assert len(buffer) == 30 and buffer.record(0) == framed[10]
        assert buffer.pwrite(fd, 0, 30, 5) == buffer.span(0, 30)
        assert os.pread(fd, buffer.span(0, 30), 5) == b"".join(framed[10:])
    finally:
        os.close(fd)
    read_only = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as failure:
            buffer.pwrite(read_only, 0, 1, 0)
        assert failure.value.errno == errno.EBADF
    finally:
        os.close(read_only)
    with pytest.raises(IndexError):
        buffer.span(2, 31)
    buffer.clear()
    assert len(buffer) == 0 and buffer.nbytes == 0


def _wait_done(syncer: Syncer) -> None:
    ready, _, _ = select.select([syncer.done_fd], [], [], 30)
    assert ready, "the fsync thread did not answer"
    os.read(syncer.done_fd, 64)


def test_syncer_fdatasyncs_on_its_thread_and_reports_errors(tmp_path):
    syncer = Syncer()
    thread = threading.Thread(target=syncer.run, daemon=True)
    thread.start()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"x" * 4096, 0)
        syncer.request(fd)
        _wait_done(syncer)
        assert syncer.error == 0 and syncer.count == 1 and syncer.seconds > 0
        spare = os.dup(fd)
        os.close(spare)
        syncer.request(spare)                      # a closed descriptor
        _wait_done(syncer)
        assert syncer.error == errno.EBADF and syncer.count == 2
        histogram = syncer.histogram()          # every fdatasync timed, failed ones too
        assert len(histogram) == 32 and sum(histogram) == 2
    finally:
        os.close(fd)
        syncer.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_write_back_writes_a_range_and_reports_errors(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"x" * 10000, 0)
        write_back(fd, 0, 10000)
        write_back(fd, 4096, 0)                 # 0: to the end of the file
        with pytest.raises(OSError) as info:
            write_back(fd, -1, 10)
        assert info.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        write_back(fd, 0, 10)                   # closed
    assert info.value.errno == errno.EBADF


def test_write_zeros_zeroes_a_range_in_pieces(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"\xff" * 50_000)
    fd = os.open(path, os.O_RDWR)
    try:
        write_zeros(fd, 100, 40_123, 4096)      # pieces, the last one short
        write_zeros(fd, 7, 7, 4096)             # nothing
        with pytest.raises(ValueError):
            write_zeros(fd, 10, 5, 4096)
        with pytest.raises(ValueError):
            write_zeros(fd, 0, 10, 0)
    finally:
        os.close(fd)
    data = path.read_bytes()
    assert data == b"\xff" * 100 + bytes(40_023) + b"\xff" * (50_000 - 40_123)
    with pytest.raises(OSError) as info:
        write_zeros(fd, 0, 10, 4096)            # closed
    assert info.value.errno == errno.EBADF


def test_async_log_syncs_on_ticks_and_releases_held_answers(tmp_path):
    payloads = [payload(i) for i in range(300)]
    calls = {}                         # every other record goes in as a call and its result
    for i in range(0, 200, 2):
        fields = unpack(payloads[i])
        result = i if i % 4 else [decimal.Decimal(i)]     # the second: msgpack-python's way
        calls[i] = fields[1:6] + [result, 2**63 + i]
        payloads[i] = pack([CALL, *fields[1:6], result_digest(result), 2**63 + i])

    async def main():
        log = CommandLog(tmp_path, 0, "async", fsync_interval_ms=5, segment_bytes=4096)
        log.open(asyncio.get_running_loop(), None)
        try:
            for i, p in enumerate(payloads[:200]):
                if i in calls:
                    log.append_call(*calls[i])
                else:
                    log.append(p)
            assert not log.must_hold                 # async answers do not wait
            conn = FakeConnection()
            log.hold(conn, b"after 200")             # e.g. the coordinator's channel
            await asyncio.wait_for(conn.event.wait(), 30)
            assert conn.received == [b"after 200"] and log.durable == 200
            for p in payloads[200:]:
                log.append(p)
            while log.durable < 300:                 # the ticks write the rest
                await asyncio.sleep(0.005)
            stats = log.statistics()
            assert stats["fsyncs"] >= 2 and stats["records"] == 300 and not log.busy
            timed = sum(stats["fsync_latency"]["counts"])     # the Syncer's group fsyncs
            assert 1 <= timed <= stats["fsyncs"] and stats["fsync_p99_under_us"] >= 1
            assert stats["segment"] > 1              # 300 records rotated 4 KiB segments
        finally:
            log.close()
    asyncio.run(main())
    reader = LogReader(tmp_path, 0)
    assert [body for _, _, body in reader.records()] == payloads
    assert_clean(tmp_path)


@settings(max_examples=300, deadline=None)
@given(result=values)
def test_the_native_result_digest_is_result_digest(result):
    buffer = RecordBuffer()
    assert buffer.append_call(1, 2, "P", [], None, result, 0)
    assert unpack(buffer.record(0)[8:])[6] == result_digest(result)


def test_latency_histogram_buckets_and_quantiles():
    histogram = LatencyHistogram()
    for seconds in [0.0000004] + [0.0003] * 97 + [0.003, 0.05]:     # 0.4 us, 300 us, 3 ms, 50 ms
        histogram.add_seconds(seconds)
    assert histogram.counts[0] == 1 and histogram.counts[9] == 97      # 300 us: [256, 512)
    assert histogram.quantile(0.5) == 512 and histogram.quantile(0.98) == 512
    assert histogram.quantile(0.99) == 4096 and histogram.quantile(1.0) == 65536
    histogram.merge([1] + [0] * 31)
    wire = histogram.to_wire()
    assert wire["counts"][0] == 2 and wire["bucket_upper_bounds"][-1] == 65536
    assert len(wire["counts"]) == len(wire["bucket_upper_bounds"]) == 17
    assert LatencyHistogram().quantile(0.99) is None
    assert LatencyHistogram().to_wire()["counts"] == []
