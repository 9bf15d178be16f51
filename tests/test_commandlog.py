"""The command log: its on-disk format against real files, torn tails,
damage in the middle, and recovery end to end with real servers.

Unit tests drive CommandLog on a real asyncio loop (or ``write_now``) and
read the files back with LogReader. The end-to-end tests run `flowstate
serve`, crash it with SIGKILL (supervisor and children), damage the logs
and restart; one fills a small tmpfs to make the log unwritable.

No assertion depends on timing: sleeps and timeouts only pace the tests
or keep a broken server from hanging the run.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import crc32c
import pytest

from flowstate.client import AsyncClient, Client
from flowstate.errors import UnavailableError
from flowstate.protocol import pack, unpack
from flowstate.routing import Topology
from flowstate.server.commandlog import (CALL, HEADER_BYTES, CommandLog, LogCorruptError,
                                         LogReader, segment_paths)
from flowstate.server.files import WRITE_OUT_BYTES
from flowstate.server.recovery import log_directory

from server_harness import ServerProcess, owned_by, pid_alive

TOPOLOGY = Topology(2)


# -- helpers -------------------------------------------------------------------------

def payload(i: int, pad: int = 0) -> bytes:
    """A CALL record's payload, as a partition logs it (``pad`` makes it longer)."""
    return pack([CALL, i + 1, 1_700_000_000_000_000 + i, "Vote",
                 [5085550000 + i, 1 + i % 6, 2, "x" * pad], None, crc32c.crc32c(b"%d" % i)])


class _Transport:
    def __init__(self, conn):
        self.conn = conn

    def write(self, data: bytes) -> None:
        self.conn.received.append(data)
        self.conn.event.set()


class FakeConnection:
    """Stands in for a client connection whose answer the log holds."""

    def __init__(self):
        self.closed = False
        self.received: list[bytes] = []
        self.event = asyncio.Event()
        self.transport = _Transport(self)


def append_records(directory: Path, payloads, owner: int = 0, segment_bytes: int = 1 << 20,
                   groups: int = 1, resume: LogReader | None = None) -> CommandLog:
    """Append ``payloads`` with CommandLog on a real loop (sync mode), in
    ``groups`` groups, each waited for through a held answer; return the
    closed log (for its statistics)."""
    async def main():
        log = CommandLog(directory, owner, "sync", segment_bytes=segment_bytes)
        log.open(asyncio.get_running_loop(), resume.tail if resume else None,
                 resume.torn if resume else None)
        try:
            size = max(1, -(-len(payloads) // groups))
            for start in range(0, len(payloads), size):
                for p in payloads[start:start + size]:
                    log.append(p)
                assert log.must_hold
                conn = FakeConnection()
                log.hold(conn, b"answer")
                await asyncio.wait_for(conn.event.wait(), 30)   # released once on disk
                assert conn.received == [b"answer"]
            assert not log.must_hold and log.failed is None
        finally:
            log.close()
        return log
    return asyncio.run(main())


def write_now_records(directory: Path, payloads, owner: int = -1,
                      segment_bytes: int = 1 << 20) -> None:
    log = CommandLog(directory, owner, "sync", segment_bytes=segment_bytes)
    log.open(None, None)
    try:
        for p in payloads:
            log.write_now(p)
    finally:
        log.close()


def read_all(directory: Path, owner: int = 0) -> tuple[LogReader, list]:
    reader = LogReader(directory, owner)
    return reader, list(reader.records())


def assert_clean(directory: Path, owner: int = 0) -> None:
    """After each segment's last record, only zeros (nothing stale)."""
    reader, records = read_all(directory, owner)
    assert reader.torn is None
    ends: dict[int, int] = {}
    for number, offset, body in records:
        ends[number] = offset + 8 + len(body)
    for path in segment_paths(directory):
        data = path.read_bytes()
        end = ends.get(int(path.stem), HEADER_BYTES)
        assert data.count(0, end) == len(data) - end, f"stale bytes after {path}:{end}"


def header(owner: int, number: int, version: int = 2, magic: bytes = b"FSCMDLOG") -> bytes:
    head = struct.pack("<8sIiQI", magic, version, owner, number, 0)
    return head + struct.pack("<I", crc32c.crc32c(head))


def flip_bit(path: Path, offset: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


# -- the format ------------------------------------------------------------------------

def test_appended_records_read_back_in_order(tmp_path):
    payloads = [payload(i, pad=i % 7) for i in range(200)]
    log = append_records(tmp_path, payloads, groups=5)
    assert log.appended == 200 and 1 <= log.fsyncs <= 5 + 1

    paths = segment_paths(tmp_path)
    assert [p.name for p in paths] == ["00000000000000000001.fslog"]
    data = paths[0].read_bytes()
    assert len(data) == 1 << 20                       # preallocated
    assert data[:32] == header(0, 1)

    reader, records = read_all(tmp_path)
    assert [body for _, _, body in records] == payloads
    assert [unpack(body)[1] for _, _, body in records] == list(range(1, 201))
    offsets = [offset for _, offset, _ in records]
    assert offsets[0] == HEADER_BYTES
    assert all(b == a + 8 + len(p) for a, b, p in zip(offsets, offsets[1:], payloads))
    end = offsets[-1] + 8 + len(payloads[-1])
    assert reader.tail == (1, end) and reader.torn is None
    assert data.count(0, end) == len(data) - end

    # reopened at its tail, the log goes on where it ended
    more = [payload(i) for i in range(200, 230)]
    append_records(tmp_path, more, resume=reader)
    assert [body for _, _, body in read_all(tmp_path)[1]] == payloads + more


def test_write_now_and_rotation(tmp_path):
    """The coordinator's synchronous path: small segments, many records,
    one record bigger than a segment."""
    big = payload(10_000, pad=10_000)                  # > 4096: a segment of its own
    payloads = [payload(i, pad=i % 50) for i in range(300)]
    payloads[150:150] = [big]
    write_now_records(tmp_path, payloads, owner=-1, segment_bytes=4096)
    paths = segment_paths(tmp_path)
    assert len(paths) > 5
    assert [int(p.stem) for p in paths] == list(range(1, len(paths) + 1))
    for path in paths:
        data = path.read_bytes()
        assert data[:32] == header(-1, int(path.stem))
        assert len(data) >= 4096

    reader, records = read_all(tmp_path, owner=-1)
    assert [body for _, _, body in records] == payloads
    numbers = [number for number, _, _ in records]
    assert numbers == sorted(numbers)
    big_segment = records[150][0]
    assert [b for n, _, b in records if n == big_segment] == [big]
    assert records[150][1] == HEADER_BYTES
    assert segment_paths(tmp_path)[big_segment - 1].stat().st_size >= HEADER_BYTES + 8 + len(big) + 8
    assert reader.tail[0] == len(paths)
    assert_clean(tmp_path, owner=-1)


def test_appends_rotate_segments(tmp_path):
    """The group-commit path rotates too, inside one group and across groups."""
    big = payload(99, pad=6000)
    payloads = [payload(i, pad=30) for i in range(400)]
    payloads[123:123] = [big]
    append_records(tmp_path, payloads, segment_bytes=4096, groups=7)
    reader, records = read_all(tmp_path)
    assert [body for _, _, body in records] == payloads
    assert len(segment_paths(tmp_path)) == records[-1][0] > 5
    assert_clean(tmp_path)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failed_rotation_is_retried_without_repeats(tmp_path, monkeypatch, mode):
    """No room for the next segment: the group's answers wait, the log says
    why, and once there is room every record is there exactly once (in
    async mode too, where the loop writes and the native thread syncs)."""
    full = [True]
    real_fallocate = os.posix_fallocate

    def fallocate(fd, offset, length):
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fallocate(fd, offset, length)

    first = [payload(i, pad=60) for i in range(30)]              # ~3 KiB of a 4 KiB segment
    second = [payload(i, pad=60) for i in range(30, 50)]         # straddles its end
    during = [payload(i, pad=60) for i in range(50, 53)]

    async def main():
        log = CommandLog(tmp_path, 0, mode, segment_bytes=4096)
        log.open(asyncio.get_running_loop(), None)
        # from now on no segment can be made, not even the next one the log
        # builds ahead in the background once the current one is half full
        monkeypatch.setattr(os, "posix_fallocate", fallocate)
        for p in first:
            log.append(p)
        conn = FakeConnection()
        log.hold(conn, b"first")
        await conn.event.wait()
        for p in second:
            log.append(p)
        conn = FakeConnection()
        log.hold(conn, b"second")
        while log.failed is None:
            await asyncio.sleep(0.005)
        assert isinstance(log.failed, OSError) and log.failed.errno == errno.ENOSPC
        assert "command log cannot be written" in log.refusal()
        assert log.statistics()["failing"]
        assert conn.received == [] and not log.must_hold     # held; other answers are not
        for p in during:                                      # e.g. a keyed call's outcome
            log.append(p)
        await asyncio.sleep(0.05)
        assert conn.received == []
        full[0] = False
        await asyncio.wait_for(conn.event.wait(), 30)          # the retry, a second later
        assert conn.received == [b"second"] and log.failed is None and log.refusal() is None
        while log.busy:
            await asyncio.sleep(0.005)
        log.close()                                            # its file is still open
    asyncio.run(main())
    reader, records = read_all(tmp_path)
    assert [body for _, _, body in records] == first + second + during
    assert len(segment_paths(tmp_path)) == 2
    assert_clean(tmp_path)


def test_write_now_after_a_failed_rotation(tmp_path, monkeypatch):
    log = CommandLog(tmp_path, -1, "sync", segment_bytes=4096)
    log.build_ahead = False         # every rotation builds its segment, and can fail, here
    log.open(None, None)
    payloads = [payload(i, pad=200) for i in range(40)]
    real_fallocate = os.posix_fallocate
    failures = 0
    for p in payloads:
        monkeypatch.setattr(os, "posix_fallocate", lambda *a: (_ for _ in ()).throw(
            OSError(errno.ENOSPC, "No space left on device")))
        try:
            log.write_now(p)
        except OSError:
            failures += 1
            monkeypatch.setattr(os, "posix_fallocate", real_fallocate)
            log.write_now(p)
    log.close()
    assert failures >= 2
    assert [b for _, _, b in read_all(tmp_path, owner=-1)[1]] == payloads
    assert_clean(tmp_path, owner=-1)


@pytest.mark.parametrize("size", [4096, WRITE_OUT_BYTES * 2 + 4096 + 13])
def test_a_built_segment_is_its_header_then_zeros(tmp_path, size):
    """Built piece by piece (WRITE_OUT_BYTES at a time, each written out), a
    new segment is exactly its header and zeros, whatever its size."""
    log = CommandLog(tmp_path, 3, "sync", segment_bytes=4096)
    path = log._build_segment(7, size)
    data = path.read_bytes()
    assert len(data) == size and path.suffix == ".new"
    assert data[:HEADER_BYTES] == header(3, 7)
    assert data.count(0, HEADER_BYTES) == size - HEADER_BYTES


def test_header_checks(tmp_path):
    write_now_records(tmp_path, [payload(i) for i in range(3)], owner=0)
    path = segment_paths(tmp_path)[0]
    original = path.read_bytes()

    def rewrite(head: bytes):
        path.write_bytes(head + original[32:])

    with pytest.raises(LogCorruptError, match="expected owner 1 segment 1") as info:
        list(LogReader(tmp_path, 1).records())
    assert str(path) in str(info.value) and "owner 0 segment 1" in str(info.value)

    rewrite(header(0, 1, magic=b"NOTALOG!"))
    with pytest.raises(LogCorruptError, match="not a Flowstate command log segment") as info:
        list(LogReader(tmp_path, 0).records())
    assert str(path) in str(info.value)

    rewrite(header(0, 1, version=3))
    with pytest.raises(LogCorruptError,
                       match="command log format version 3; this server reads versions 1, 2"):
        list(LogReader(tmp_path, 0).records())

    rewrite(header(0, 7))                              # the file is segment 1
    with pytest.raises(LogCorruptError, match="segment 7, expected owner 0 segment 1"):
        list(LogReader(tmp_path, 0).records())

    rewrite(original[:32])
    flip_bit(path, 13, 0)                              # owner, without fixing the CRC
    with pytest.raises(LogCorruptError, match="bad header"):
        list(LogReader(tmp_path, 0).records())

    path.write_bytes(original[:20])
    with pytest.raises(LogCorruptError, match="shorter than a segment header"):
        list(LogReader(tmp_path, 0).records())

    path.write_bytes(original)
    assert len(read_all(tmp_path)[1]) == 3


def test_no_log_reads_as_empty(tmp_path):
    reader, records = read_all(tmp_path / "nothing")
    assert records == [] and reader.tail is None and reader.torn is None


# -- a torn tail ---------------------------------------------------------------------

N = 5


@pytest.fixture(scope="module")
def intact_log(tmp_path_factory):
    """A log of N records (segment 4 KiB) and where its last record is."""
    directory = tmp_path_factory.mktemp("intact")
    payloads = [payload(i, pad=20 + i) for i in range(N)]
    append_records(directory, payloads, segment_bytes=4096, groups=2)
    _, records = read_all(directory)
    number, offset, body = records[-1]
    assert number == 1 and body == payloads[-1]
    return directory, payloads, offset, 8 + len(body)


@pytest.mark.parametrize("how", ["truncate", "zero"])
def test_torn_tail_at_every_byte(intact_log, tmp_path, how, caplog):
    directory, payloads, offset, length = intact_log
    original = (directory / "00000000000000000001.fslog").read_bytes()
    more = [payload(i, pad=3) for i in range(1000, 1004)]
    for cut in range(length):
        case = tmp_path / f"{how}-{cut}"
        shutil.copytree(directory, case)
        path = case / "00000000000000000001.fslog"
        if how == "truncate":
            os.truncate(path, offset + cut)
        else:                       # a preallocated file after a torn write
            path.write_bytes(original[:offset + cut] + bytes(len(original) - offset - cut))
        kept = original[offset:offset + cut]

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="flowstate"):
            reader, records = read_all(case)
        assert [body for _, _, body in records] == payloads[:-1], (how, cut)
        assert reader.tail == (1, offset), (how, cut)
        if kept.strip(b"\0"):
            # something of the record is there: reported, and how far it goes
            assert reader.torn is not None, (how, cut)
            torn_path, torn_offset, garbage_end = reader.torn
            assert (torn_path, torn_offset) == (path, offset)
            assert garbage_end >= offset + len(kept.rstrip(b"\0"))
            assert f"torn record at offset {offset}" in caplog.text
        else:
            assert reader.torn is None, (how, cut)     # nothing of it reached the disk

        # appending resumes at the tail; the torn bytes are gone
        append_records(case, more, segment_bytes=4096, resume=reader)
        reader, records = read_all(case)
        assert [body for _, _, body in records] == payloads[:-1] + more, (how, cut)
        assert_clean(case)
        shutil.rmtree(case)


def test_torn_last_record_of_a_later_segment(tmp_path):
    """The torn record is in the last segment, earlier segments are full."""
    payloads = [payload(i, pad=200) for i in range(40)]
    append_records(tmp_path, payloads, segment_bytes=4096, groups=3)
    _, records = read_all(tmp_path)
    number, offset, body = records[-1]
    assert number > 1
    path = segment_paths(tmp_path)[-1]
    with open(path, "r+b") as f:                    # the record's second half never landed
        f.seek(offset + 8 + len(body) // 2)
        f.write(bytes(len(body) - len(body) // 2))
    reader, records = read_all(tmp_path)
    assert [b for _, _, b in records] == payloads[:-1]
    assert reader.torn[:2] == (path, offset) and reader.tail == (number, offset)
    append_records(tmp_path, [payload(7)], segment_bytes=4096, resume=reader)
    assert [b for _, _, b in read_all(tmp_path)[1]] == payloads[:-1] + [payload(7)]
    assert_clean(tmp_path)


# -- damage in the middle --------------------------------------------------------------

def test_flipped_bit_in_the_middle_is_an_error(tmp_path):
    directory = tmp_path / "log"
    payloads = [payload(i, pad=300) for i in range(30)]
    append_records(directory, payloads, segment_bytes=4096, groups=3)
    _, records = read_all(directory)
    segments = sorted({number for number, _, _ in records})
    assert len(segments) >= 3
    # the first, a middle one, the last of a non-last segment, the one before the very last
    last_of_first = max(i for i, r in enumerate(records) if r[0] == segments[0])
    victims = sorted({0, len(records) // 2, last_of_first, last_of_first + 1, len(records) - 2})
    places = [("length", 0, 0), ("length", 1, 3), ("length", 3, 7), ("crc", 4, 0), ("crc", 7, 5),
              ("payload", 8, 2), ("payload", "middle", 4), ("payload", "end", 6)]
    checked = 0
    for index in victims:
        number, offset, body = records[index]
        for what, where, bit in places:
            position = {"middle": 8 + len(body) // 2, "end": 8 + len(body) - 1}.get(where, where)
            case = tmp_path / f"case-{index}-{what}-{position}-{bit}"
            shutil.copytree(directory, case)
            path = case / f"{number:020d}.fslog"
            flip_bit(path, offset + position, bit)
            reader = LogReader(case, 0)
            seen = []
            with pytest.raises(LogCorruptError) as info:
                for _, _, b in reader.records():
                    seen.append(b)
            message = str(info.value)
            assert f"{path}: " in message and f"at offset {offset}," in message, message
            assert "damaged in the middle" in message and "Restore the data folder" in message
            assert seen == payloads[:index]              # nothing after it, nothing skipped
            shutil.rmtree(case)
            checked += 1
    assert checked == len(victims) * len(places)


def test_data_after_the_end_marker_is_an_error(tmp_path):
    """Zeros where a record header should be, then data: not a torn tail."""
    write_now_records(tmp_path, [payload(i) for i in range(4)], owner=0, segment_bytes=4096)
    reader, records = read_all(tmp_path)
    path = segment_paths(tmp_path)[0]
    end = reader.tail[1]
    with open(path, "r+b") as f:
        f.seek(end + 100)
        f.write(b"\x01")
    with pytest.raises(LogCorruptError, match=f"data after the end marker at offset {end}"):
        read_all(tmp_path)


def test_short_garbage_in_a_non_last_segment_is_an_error(tmp_path):
    """A non-last segment cut inside a record header is damage, not a tail."""
    write_now_records(tmp_path, [payload(i, pad=500) for i in range(12)], owner=0,
                      segment_bytes=4096)
    _, records = read_all(tmp_path)
    first = [r for r in records if r[0] == 1]
    _, offset, body = first[-1]
    path = segment_paths(tmp_path)[0]
    for cut in (3, 8, 8 + len(body) // 2):
        data = path.read_bytes()
        os.truncate(path, offset + cut)
        with pytest.raises(LogCorruptError, match=f"at offset {offset}"):
            read_all(tmp_path)
        path.write_bytes(data)


# -- recovery end to end ---------------------------------------------------------------

SERVE_EXTRA = ("--log-segment-mb", "1")


def phones(partition: int, start: int, count: int) -> list[int]:
    """``count`` phone numbers from ``start`` up that ``partition`` owns."""
    return owned_by(partition, start, count)


def crash(server: ServerProcess) -> None:
    """SIGKILL the supervisor and every child: nothing gets to drain."""
    for pid in [server.process.pid, *server.children.values()]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.kill()
    deadline = time.monotonic() + 30
    while any(pid_alive(pid) for pid in server.children.values()):
        assert time.monotonic() < deadline, "the server's processes outlived SIGKILL"
        time.sleep(0.02)


def totals(client) -> dict[int, int]:
    return {number: total for _, number, total in client.call("Results").result}


def partition_stats(client) -> list[dict]:
    return client.call("@Statistics").result["partitions"]


def vote_rows(client) -> list[int]:
    return [p["tables"]["votes"]["rows"] for p in partition_stats(client)]


def last_record(data: Path, partition: int):
    reader = LogReader(log_directory(data, partition), partition)
    records = list(reader.records())
    assert reader.torn is None
    return records, segment_paths(log_directory(data, partition))


def serve_once(data: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `flowstate serve` on ``data`` expecting it to fail to start."""
    return subprocess.run([sys.executable, "-m", "flowstate", "serve", "--port", "0",
                           "--partitions", "2", "--data", str(data), *SERVE_EXTRA],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def test_recovery_after_a_crash_torn_tail_and_damage(tmp_path):
    p0 = phones(0, 5085550000, 40)
    p1 = phones(1, 5085550000, 40)
    with ServerProcess(tmp_path, partitions=2, extra=SERVE_EXTRA) as server:
        with Client(server.address) as c:
            assert c.call("Initialize", 6).result == 6
            expected: dict[int, int] = {}
            for i, phone in enumerate(p0[:-1] + p1):
                contestant = 1 + i % 5                  # contestant 6 gets only the last vote
                assert c.call("Vote", phone, contestant, 2).result == 0
                expected[contestant] = expected.get(contestant, 0) + 1
            assert c.call("Vote", p0[0], 1, 1).result == 2      # over the limit: not logged
            assert c.call("Vote", p0[1], 99, 2).result == 1     # no such contestant
            assert c.call("Vote", p0[-1], 6, 2).result == 0     # partition 0's last record
            assert totals(c) == {**expected, 6: 1}
            rows_before = vote_rows(c)
            for stats in partition_stats(c):     # sync: each answer waited for a timed fsync
                timed = sum(stats["command_log"]["fsync_latency"]["counts"])
                assert 1 <= timed <= stats["command_log"]["fsyncs"]
                assert stats["command_log"]["fsync_p99_under_us"] >= 1
        crash(server)
    assert rows_before == [len(p0), len(p1)]

    # cut partition 0's last record in the middle
    data = tmp_path / "data"
    records, paths = last_record(data, 0)
    number, offset, body = records[-1]
    assert unpack(body)[3:5] == ["Vote", [p0[-1], 6, 2]]
    assert paths[-1].name == f"{number:020d}.fslog"
    os.truncate(paths[-1], offset + 8 + len(body) // 2)

    with ServerProcess(tmp_path, partitions=2, extra=SERVE_EXTRA) as server:
        assert f"{paths[-1]}: torn record at offset {offset}" in server.log
        with Client(server.address) as c:
            # every vote but the torn one; nothing else touched
            assert totals(c) == expected
            assert vote_rows(c) == [len(p0) - 1, len(p1)]
            assert all(p["determinism_faults"] == 0 for p in partition_stats(c))
            # the log goes on after the torn record
            assert c.call("Vote", p0[-1], 6, 2).result == 0
            assert c.call("Vote", p0[0], 6, 2).result == 0
            expected[6] = 2
            assert totals(c) == expected
        assert server.stop() == 0
    with ServerProcess(tmp_path, partitions=2, extra=SERVE_EXTRA) as server:
        assert "torn record" not in server.log
        with Client(server.address) as c:
            assert totals(c) == expected
            assert vote_rows(c) == [len(p0) + 1, len(p1)]
        assert server.stop() == 0

    # a flipped bit in the middle of partition 1's log: the server refuses to start
    records, paths = last_record(data, 1)
    number, offset, body = records[len(records) // 2]
    path = log_directory(data, 1) / f"{number:020d}.fslog"
    flip_bit(path, offset + 8 + len(body) // 2, 3)
    failed = serve_once(data)
    assert failed.returncode != 0, failed.stdout
    assert f"{path}: a record fails its checksum at offset {offset}" in failed.stdout
    assert "damaged in the middle" in failed.stdout
    assert "Restore the data folder from a backup" in failed.stdout
    assert "partition 1 failed to start" in failed.stdout
    assert "ready:" not in failed.stdout


# -- a full disk -------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """tmp_path/data on an 8 MiB tmpfs (three 1 MiB segments fit, with room to spare)."""
    mount_point = tmp_path / "data"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stdout.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    chunk = b"\xee" * (64 << 10)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    with open(path, "ab", buffering=0) as f:      # and the last partial chunk's room
        try:
            while True:
                f.write(b"\xee" * 512)
        except OSError as e:
            assert e.errno == errno.ENOSPC


class VoteStream:
    """Votes for partition 0 from a background thread's event loop, many in
    flight, until one is refused; the rest of them may stay held."""

    def __init__(self, address: str, phone_list: list[int]):
        import threading
        self.address = address
        self.phones = phone_list
        self.answers: dict[int, object] = {}        # phone -> result or error
        self.refused = threading.Event()
        self.finished = threading.Event()
        self.sent = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),),
                                       daemon=True)
        self.thread.start()

    async def run(self):
        async with AsyncClient(self.address, timeout=120) as client:
            pending = set()

            async def vote(phone):
                try:
                    self.answers[phone] = (await client.call("Vote", phone, 1 + phone % 6, 10)).result
                except UnavailableError as e:
                    self.answers[phone] = e
                    self.refused.set()
                except Exception as e:          # noqa: BLE001 -- reported by the test
                    self.answers[phone] = e

            for phone in self.phones:
                if self.refused.is_set():
                    break
                while len(pending) >= 300:
                    # (the whole window may be held: then send more anyway, to be refused)
                    done, pending = await asyncio.wait(pending, timeout=0.2,
                                                       return_when=asyncio.FIRST_COMPLETED)
                    if not done:
                        break
                pending.add(asyncio.ensure_future(vote(phone)))
                self.sent += 1
            if pending:
                await asyncio.wait(pending)
        self.finished.set()


def test_disk_full_refuses_writes_and_recovers(small_disk, tmp_path):
    data = small_disk
    with ServerProcess(tmp_path, partitions=2, extra=SERVE_EXTRA) as server:
        with Client(server.address, timeout=60) as c:
            assert c.call("Initialize", 6).result == 6
            fill(data / "filler")
            # partition 0 fills its preallocated 1 MiB segment, then cannot get another
            stream = VoteStream(server.address, phones(0, 2125550000, 60_000))
            assert stream.refused.wait(60), (
                f"no vote was refused after {stream.sent} sent; "
                f"{partition_stats(c)[0]['command_log']}")
            assert server.process.poll() is None

            # writes are refused on partition 0, with the reason; nothing is applied
            extra = phones(0, 6175550000, 3)
            for phone in extra:
                with pytest.raises(UnavailableError, match="command log cannot be written"):
                    c.call("Vote", phone, 1, 10)
            error = next(a for a in stream.answers.values() if isinstance(a, UnavailableError))
            assert "No space left on device" in str(error) and "reads still work" in str(error)
            # reads work; so do writes on partition 1, whose segment has room
            assert c.call("@Ping").result == 0
            during = totals(c)
            stats = partition_stats(c)
            assert "No space left on device" in stats[0]["command_log"]["failing"]
            assert stats[1]["command_log"]["failing"] is None
            assert c.call("Vote", phones(1, 6175550000, 1)[0], 2, 10).result == 0
            assert "the command log cannot be written" in server.log

            # room again: the held calls complete, writes work again
            (data / "filler").unlink()
            assert stream.finished.wait(60), "held votes were never answered"
            stream.thread.join(10)
            assert "the command log is writable again" in server.log
            assert c.call("Vote", extra[0], 2, 10).result == 0
            assert partition_stats(c)[0]["command_log"]["failing"] is None

            accepted = [p for p, a in stream.answers.items() if a == 0] + [extra[0]]
            refused = [p for p, a in stream.answers.items() if isinstance(a, UnavailableError)]
            others = {p: a for p, a in stream.answers.items()
                      if a != 0 and not isinstance(a, UnavailableError)}
            assert not others
            assert len(accepted) > 15_000 and refused
            expected: dict[int, int] = {}
            for phone in accepted:
                contestant = 2 if phone == extra[0] else 1 + phone % 6
                expected[contestant] = expected.get(contestant, 0) + 1
            expected[2] += 1                          # partition 1's vote
            assert totals(c) == expected              # the refused ones left no trace
            assert all(during[k] <= expected[k] for k in during)
            rows = vote_rows(c)
            assert rows == [len(accepted), 1]
        crash(server)

    # everything acknowledged survives a crash; nothing is replayed twice
    with ServerProcess(tmp_path, partitions=2, extra=SERVE_EXTRA) as server:
        with Client(server.address) as c:
            assert totals(c) == expected
            assert vote_rows(c) == rows
            assert all(p["determinism_faults"] == 0 for p in partition_stats(c))
        assert server.stop() == 0


# -- the determinism guard ---------------------------------------------------------------

APP_SCHEMA = """
CREATE TABLE events
(
  id    BIGINT NOT NULL PRIMARY KEY
, value BIGINT NOT NULL
);
PARTITION TABLE events ON COLUMN id;

CREATE PROCEDURE FROM CLASS clockwork.Draw;
CREATE PROCEDURE FROM CLASS clockwork.Stamp;
CREATE PROCEDURE FROM CLASS clockwork.Value;
CREATE PROCEDURE FROM CLASS clockwork.Quiet;
PARTITION PROCEDURE Draw ON TABLE events COLUMN id;
PARTITION PROCEDURE Quiet ON TABLE events COLUMN id;
PARTITION PROCEDURE Stamp ON TABLE events COLUMN id;
PARTITION PROCEDURE Value ON TABLE events COLUMN id;
"""

APP_CODE = '''
import time

from flowstate.procedures import Procedure


class Draw(Procedure):
    """Deterministic: the transaction's random generator and timestamp."""

    def run(self, event_id):
        value = self.random.randrange(1 << 62)
        self.db.events.insert(event_id, value)
        return [value, self.random.random(), self.now().isoformat(), self.timestamp_us]


class Stamp(Procedure):
    """Not deterministic: the wall clock, and an object's address."""

    def run(self, event_id):
        self.db.events.insert(event_id, time.time_ns())
        return [time.time_ns(), id(object())]


class Quiet(Procedure):
    """Not deterministic, and its result does not show it: only the change
    digest can tell."""

    def run(self, event_id):
        self.db.events.insert(event_id, time.time_ns())
        return 0


class Value(Procedure):
    def run(self, event_id):
        row = self.db.events.get(event_id)
        return None if row is None else row.value
'''


def test_determinism_guard(tmp_path):
    app = tmp_path / "clockapp"
    app.mkdir()
    (app / "schema.sql").write_text(APP_SCHEMA)
    (app / "clockwork.py").write_text(textwrap.dedent(APP_CODE))
    drawn = phones(0, 1, 10) + phones(1, 1, 10)
    stamped = phones(0, 1000, 3)
    quiet = phones(1, 1000, 4)
    with ServerProcess(tmp_path, app=app, partitions=2, extra=SERVE_EXTRA) as server:
        with Client(server.address) as c:
            draws = {i: c.call("Draw", i).result for i in drawn}
            for i in stamped:
                c.call("Stamp", i)
            for i in quiet:
                assert c.call("Quiet", i).result == 0
            values = {i: c.call("Value", i).result for i in drawn}
            assert values == {i: draws[i][0] for i in drawn}
        crash(server)
    with ServerProcess(tmp_path, app=app, partitions=2, extra=SERVE_EXTRA) as server:
        assert "determinism fault: replaying Stamp" in server.log
        assert "determinism fault: replaying Draw" not in server.log
        assert server.log.count("determinism fault: replaying Quiet") == len(quiet)
        assert "changed the rows differently than when it first ran" in server.log
        with Client(server.address) as c:
            stats = partition_stats(c)
            assert stats[0]["determinism_faults"] == len(stamped)
            assert stats[1]["determinism_faults"] == len(quiet)   # Draw replays exactly
            assert {i: c.call("Value", i).result for i in drawn} == values
            assert all(c.call("Value", i).result is not None for i in stamped)
        assert server.stop() == 0


def test_a_data_folder_keeps_its_partition_count(tmp_path):
    # Without --partitions a server starts with as many partitions as its
    # data folder was written with (its votes are all there); a new folder
    # gets the machine's default; another count is refused, data untouched.
    from flowstate.routing import default_partitions
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with ServerProcess(fresh, partitions=None) as server:
        assert server.partitions == default_partitions()
    written = 2 if default_partitions() != 2 else 3
    with ServerProcess(tmp_path, partitions=written) as server:
        with Client(server.address) as c:
            assert c.call("Initialize", 6).result == 6
            for i, phone in enumerate(phones(0, 5085550000, 5) + phones(1, 5085550000, 5)):
                assert c.call("Vote", phone, 1 + i % 6, 2).result == 0
    with ServerProcess(tmp_path, partitions=None) as server:
        assert server.partitions == written
        with Client(server.address) as c:
            assert sum(totals(c).values()) == 10
    refused = subprocess.run(
        [sys.executable, "-m", "flowstate", "serve", "--port", "0", "--partitions",
         str(written + 1), "--data", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert refused.returncode == 2
    assert f"was written with {written} partition(s); start with --partitions {written}" \
        in refused.stdout
