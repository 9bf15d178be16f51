"""Snapshots end to end: real `flowstate serve` processes (two partitions),
real files, real kill -9.

What is checked:
  * @SnapshotSave (and `flowstate snapshot save`) while a workload runs,
    more writes, kill -9 of every process, restart: the state is exactly
    the one before the kill (@StateHash, Results, the tests' own model of
    every call) and the partitions say they loaded the snapshot;
    `flowstate verify` prints the same hash, twice; `flowstate snapshot
    list` reads the folder;
  * a damaged newest snapshot (no MANIFEST, a truncated or a bit-flipped
    partition file): recovery warns and falls back to the snapshot before
    plus the log, exactly; a snapshot taken after that is exact too;
  * a crash during a snapshot (the writer child killed, or the whole
    server killed while a writer is busy): the unfinished snapshot does
    not count, recovery is exact, and later snapshots are too;
  * automatic snapshots by log size (old log segments deleted, at most
    KEEP snapshots kept) and by interval;
  * with pruned log segments and no usable snapshot left, recovery refuses
    rather than start from a partial log;
  * without durability @SnapshotSave is refused with a clear error.

To hold a snapshot writer at a known point (deterministically, whatever
the machine's speed) a test makes its file's temporary name
(``p<i>.fssnap.tmp`` in the next cut's folder) a FIFO: the forked writer
blocks opening it until the test kills it.

No assertion depends on timing: waits and timeouts only keep a broken
server from hanging the run.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flowstate.client import AsyncClient, Client
from flowstate.errors import UnavailableError
from flowstate.server.commandlog import segment_paths
from flowstate.server.recovery import COORDINATOR_OWNER, log_directory
from flowstate.server.snapshot_folder import KEEP, partition_file, snapshot_directory

from server_harness import ServerProcess, owned_by, pid_alive, wait_until

BANK = Path(__file__).resolve().parent / "apps" / "bank"
#: 1 MiB log segments; no snapshot by time unless a test asks for one.
SERVE = ("--log-segment-mb", "1", "--snapshot-interval", "0")
MAX_VOTES = 2


# -- helpers ------------------------------------------------------------------------



def crash(server: ServerProcess, *more_pids: int) -> None:
    """SIGKILL the supervisor, every child (and ``more_pids``): nothing drains."""
    pids = [server.process.pid, *server.children.values(), *more_pids]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.kill()
    wait_until(lambda: not any(pid_alive(pid) for pid in pids[1:]), 30,
               "the server's processes to die")


def flowstate(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """The `flowstate` command line, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "flowstate", *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, cwd="/")


def verify(data: Path) -> tuple[str, dict]:
    """`flowstate verify DATA`: its output (the timing masked) and the hashes."""
    done = flowstate("verify", data)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    hashes = {}
    for line in lines[1:]:
        name, *_, digest = line.split()
        hashes[name] = digest
    return re.sub(r"in \d+\.\d+ s", "in _ s", done.stdout), hashes


def state_hashes(state_hash: dict) -> dict:
    """@StateHash's answer as `flowstate verify` prints it."""
    return {**{name: t["hash"] for name, t in state_hash["tables"].items()},
            "total": state_hash["total"]}


def partition_stats(client) -> list[dict]:
    return client.call("@Statistics").result["partitions"]


def snapshot_status(client) -> list[dict]:
    return client.call("@SnapshotStatus").result["snapshots"]


def manifest(directory) -> dict:
    return json.loads((Path(directory) / "MANIFEST.json").read_text())


def loaded(server_log: str, partition: int) -> int | None:
    found = re.findall(rf"partition {partition} loaded snapshot (\d+):", server_log)
    return int(found[-1]) if found else None


def next_cut(client) -> int:
    """The cut of the next snapshot: the multi-partition transaction after
    the last one (nothing else multi-partition may run in between)."""
    return max(p["last_mp_seq"] for p in partition_stats(client)) + 1


def block_writer(data: Path, cut: int, partition: int) -> Path:
    """Make the writer of ``partition``'s file of snapshot ``cut`` block
    when it opens its temporary file (a FIFO nobody reads)."""
    directory = snapshot_directory(data, cut)
    directory.mkdir(parents=True, exist_ok=True)
    fifo = Path(str(partition_file(directory, partition)) + ".tmp")
    os.mkfifo(fifo)
    return fifo


def writer_pid(server: ServerProcess, cut: int, partition: int) -> int:
    pattern = re.compile(rf"partition-{partition}\[\d+\]: snapshot {cut}: forked writer (\d+)")
    match = wait_until(lambda: pattern.search(server.log), 30,
                       f"partition {partition} to fork the writer of snapshot {cut}")
    return int(match.group(1))


def has_file(data: Path, cut: int, partition: int) -> bool:
    return partition_file(snapshot_directory(data, cut), partition).is_file()


def as_crashed_writer_left_it(fifo: Path, like: Path) -> None:
    """Replace a FIFO by what a writer killed mid-file leaves: a part of a file."""
    fifo.unlink()
    fifo.write_bytes(like.read_bytes()[:like.stat().st_size // 3])


class Call(threading.Thread):
    """One call from a thread of its own (for calls that wait long)."""

    def __init__(self, address: str, procedure: str, *params):
        super().__init__(daemon=True)
        self.address, self.procedure, self.params = address, procedure, params
        self.result = self.error = None
        self.start()

    def run(self):
        try:
            with Client(self.address, timeout=120) as c:
                self.result = c.call(self.procedure, *self.params).result
        except Exception as e:          # noqa: BLE001 -- the test looks at it
            self.error = e

    def outcome(self, timeout: float = 120):
        self.join(timeout)
        assert not self.is_alive(), f"{self.procedure} never returned"
        return self.result, self.error


# -- the Voter workload and its model --------------------------------------------------

class Ballot:
    """Votes with many in flight, and the state they must leave: each
    answer is checked against this model, which the final state must match.
    A batch votes with each phone at most once (so its order does not
    matter)."""

    def __init__(self):
        self.votes = collections.Counter()       # phone -> accepted votes
        self.totals = collections.Counter()      # contestant -> accepted votes
        self.next_phone = 2_125_550_000
        self.answered = 0

    def new_phones(self, count: int) -> list[int]:
        phones = list(range(self.next_phone, self.next_phone + count))
        self.next_phone += count
        return phones

    def cast(self, address: str, phones: list[int], window: int = 256) -> None:
        assert len(set(phones)) == len(phones)
        results = asyncio.run(self._send(address, phones, window))
        expected = []
        for phone in phones:
            if self.votes[phone] >= MAX_VOTES:
                expected.append(2)
            else:
                expected.append(0)
                self.votes[phone] += 1
                self.totals[1 + phone % 6] += 1
        assert results == expected

    def cast_in_background(self, address: str, phones: list[int]) -> threading.Thread:
        thread = threading.Thread(target=self.cast, args=(address, phones), daemon=True)
        thread.start()
        return thread

    async def _send(self, address: str, phones: list[int], window: int) -> list:
        results = [None] * len(phones)
        todo = iter(enumerate(phones))
        async with AsyncClient(address, timeout=120) as client:
            async def sender():
                for i, phone in todo:
                    results[i] = (await client.call("Vote", phone, 1 + phone % 6,
                                                    MAX_VOTES)).result
                    self.answered += 1
            await asyncio.gather(*(sender() for _ in range(window)))
        return results


def totals(client) -> dict[int, int]:
    return {number: total for _, number, total in client.call("Results").result}


def observe(client) -> dict:
    """Everything compared across a crash."""
    return {"hash": client.call("@StateHash").result, "totals": totals(client),
            "rows": [p["tables"]["votes"]["rows"] for p in partition_stats(client)]}


def assert_recovered(server: ServerProcess, client, before: dict, ballot: Ballot,
                     snapshot: int | None) -> None:
    after = observe(client)
    assert after == before
    assert after["totals"] == dict(ballot.totals)
    assert sum(after["rows"]) == sum(ballot.votes.values())
    assert all(p["determinism_faults"] == 0 for p in partition_stats(client))
    assert "determinism fault" not in server.log
    if snapshot is not None:
        assert [loaded(server.log, p) for p in range(2)] == [snapshot, snapshot], server.log


# -- 1. save under load, kill -9, recover -------------------------------------------------

def test_snapshot_under_load_survives_kill_9(tmp_path):
    ballot = Ballot()
    data = tmp_path / "data"
    with ServerProcess(tmp_path, extra=SERVE) as server:
        with Client(server.address, timeout=60) as c:
            assert c.call("Initialize", 6).result == 6
            first = ballot.new_phones(8000)
            load = ballot.cast_in_background(server.address, first)
            wait_until(lambda: ballot.answered >= 1000 or not load.is_alive(), 60,
                       "the workload to get going")
            saved = c.call("@SnapshotSave").result
            load.join(120)
            assert not load.is_alive()

            directory = Path(saved["path"])
            assert directory == snapshot_directory(data, saved["cut"])
            assert saved["reason"] == "requested"
            assert sorted(p.name for p in directory.iterdir()) == [
                "MANIFEST.json", "p0.fssnap", "p1.fssnap"]
            assert saved["bytes"] == sum(f.stat().st_size for f in directory.glob("*.fssnap"))
            assert saved["rows"] >= 305 + 6 + 2 * 1000    # and views of the votes
            written = manifest(directory)
            assert {k: v for k, v in saved.items() if k != "pruned"} == written
            assert saved["pruned"] == {"snapshots": [], "segments": 0, "coordinator_segments": 0}

            # more writes: second votes (the first is in the snapshot), refused
            # third ones, new phones; then a snapshot from the command line
            ballot.cast(server.address, first[:3000])
            ballot.cast(server.address, first[:400])
            ballot.cast(server.address, ballot.new_phones(2000))
            done = flowstate("snapshot", "save", "--server", server.address, "--json")
            assert done.returncode == 0, done.stderr
            second = json.loads(done.stdout)
            assert second["cut"] > saved["cut"]
            assert manifest(second["path"])["cut"] == second["cut"]
            done = flowstate("snapshot", "list", "--server", server.address)
            assert done.returncode == 0, done.stderr
            assert [int(line.split()[0]) for line in done.stdout.splitlines()] == [
                second["cut"], saved["cut"]]
            ballot.cast(server.address, first[3000:5000])
            ballot.cast(server.address, ballot.new_phones(3000))
            before = observe(c)
            assert before["totals"] == dict(ballot.totals)
        crash(server)

    # the folder, offline: verify (twice) and list
    printed, hashes = verify(data)
    assert hashes == state_hashes(before["hash"])
    assert verify(data)[0] == printed
    done = flowstate("snapshot", "list", "--data", data)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [int(line.split()[0]) for line in lines] == [second["cut"], saved["cut"]]
    assert all(" complete " in line and "INCOMPLETE" not in line for line in lines)

    with ServerProcess(tmp_path, extra=SERVE) as server:
        with Client(server.address, timeout=60) as c:
            assert_recovered(server, c, before, ballot, second["cut"])
            ballot.cast(server.address, first[5000:] + ballot.new_phones(500))
            assert totals(c) == dict(ballot.totals)
        assert server.stop() == 0


# -- 2. a damaged newest snapshot: fall back to the one before ---------------------------



class Bank:
    """Pairs of accounts (one on each partition) opened by OpenPair, moved by
    Transfer (multi-partition) and Deposit (single-partition): every
    procedure used is deterministic, so replay gives the same state."""

    def __init__(self, client, pairs: int = 12, balance: int = 10_000):
        self.balances: dict[int, int] = {}
        for first, second in zip(owned_by(0, 7_000_000, pairs), owned_by(1, 7_000_000, pairs)):
            assert client.call("OpenPair", first, second, balance).result == 2
            self.balances[first] = self.balances[second] = balance
        self.ids = sorted(self.balances)
        self.step = 0

    def work(self, address: str, calls: int) -> None:
        """``calls`` transfers and deposits (amounts small: none aborts)."""
        with Client(address, timeout=60) as c:
            for _ in range(calls):
                self.step += 1
                a = self.ids[self.step * 7 % len(self.ids)]
                b = self.ids[(self.step * 11 + 1) % len(self.ids)]
                if self.step % 3 == 0 or a == b:
                    c.call("Deposit", a, self.step % 50 + 1)
                    self.balances[a] += self.step % 50 + 1
                else:
                    c.call("Transfer", a, b, self.step % 40 + 1)
                    self.balances[a] -= self.step % 40 + 1
                    self.balances[b] += self.step % 40 + 1

    def accounts(self) -> list:
        return [[i, self.balances[i], 0] for i in self.ids]


def bank_state(client) -> dict:
    return {"hash": client.call("@StateHash").result, "accounts": client.call("Accounts").result}


def delete_manifest(directory: Path) -> int | None:
    (directory / "MANIFEST.json").unlink()
    return None                    # no partition can tell: the snapshot is just not there


def truncate_p1(directory: Path) -> int | None:
    path = partition_file(directory, 1)
    os.truncate(path, path.stat().st_size // 2)
    return 1


def flip_bit_in_p0(directory: Path) -> int | None:
    path = partition_file(directory, 0)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x10]))
    return 0


def test_a_damaged_newest_snapshot_falls_back_to_the_one_before(tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    with ServerProcess(origin, app=BANK, extra=SERVE) as server:
        with Client(server.address, timeout=60) as c:
            bank = Bank(c)
            assert c.call("SetSetting", "limit", 1).result == 2      # and "pair"
            load = threading.Thread(target=bank.work, args=(server.address, 150), daemon=True)
            load.start()
            wait_until(lambda: bank.step >= 20 or not load.is_alive(), 60, "transfers")
            older = c.call("@SnapshotSave").result["cut"]
            load.join(120)
            bank.work(server.address, 60)
            newer = c.call("@SnapshotSave").result["cut"]
            assert newer > older
            bank.work(server.address, 60)
            assert c.call("SetSetting", "limit", 2).result == 2
            before = bank_state(c)
            assert before["accounts"] == bank.accounts()
        crash(server)

    for damage in (delete_manifest, truncate_p1, flip_bit_in_p0):
        home = tmp_path / damage.__name__
        shutil.copytree(origin / "data", home / "data")
        unusable = damage(snapshot_directory(home / "data", newer))
        expected = [newer if p != unusable else older for p in range(2)]
        if unusable is None:
            expected = [older, older]
        if damage is flip_bit_in_p0:        # the offline audit falls back the same way
            done = flowstate("verify", home / "data")
            assert done.returncode == 0, done.stderr
            assert f"snapshot {newer} is unusable for partition 0" in done.stderr
            assert done.stdout.split()[-1] == before["hash"]["total"]

        with ServerProcess(home, app=BANK, extra=SERVE) as server:
            for p in range(2):
                warned = f"snapshot {newer} is unusable for partition {p}" in server.log
                assert warned == (p == unusable), server.log
            assert [loaded(server.log, p) for p in range(2)] == expected, server.log
            with Client(server.address, timeout=60) as c:
                assert c.call("@StateHash").result == before["hash"]
                if damage is not delete_manifest:
                    assert bank_state(c) == before
                    continue
                # snapshots go on after a fall-back, and recover exactly (this one
                # first: no other multi-partition call has used a number yet)
                again = c.call("@SnapshotSave").result["cut"]
                assert again > newer
                assert bank_state(c) == before
                bank.work(server.address, 40)
                assert c.call("SetSetting", "limit", 3).result == 2
                after = bank_state(c)
                assert after["accounts"] == bank.accounts()
            crash(server)
        with ServerProcess(home, app=BANK, extra=SERVE) as server:
            assert [loaded(server.log, p) for p in range(2)] == [again, again], server.log
            assert "unusable" not in server.log and "determinism fault" not in server.log
            with Client(server.address, timeout=60) as c:
                assert bank_state(c) == after
            assert server.stop() == 0


# -- 3. a crash during a snapshot -------------------------------------------------------

def test_a_crash_during_a_snapshot_leaves_an_unfinished_one_that_does_not_count(tmp_path):
    ballot = Ballot()
    data = tmp_path / "data"
    with ServerProcess(tmp_path, extra=SERVE) as server:
        with Client(server.address, timeout=60) as c:
            assert c.call("Initialize", 6).result == 6
            ballot.cast(server.address, ballot.new_phones(6000))
            good = c.call("@SnapshotSave").result["cut"]
            phones = ballot.new_phones(6000)
            ballot.cast(server.address, phones[:3000])

            # (a) partition 0's writer is killed: the snapshot fails, the server goes on
            killed = next_cut(c)
            fifo_a = block_writer(data, killed, 0)
            save = Call(server.address, "@SnapshotSave")
            pid = writer_pid(server, killed, 0)
            load = ballot.cast_in_background(server.address, phones[3000:])
            wait_until(lambda: has_file(data, killed, 1), 60, "partition 1's file")
            assert pid_alive(pid)
            os.kill(pid, signal.SIGKILL)
            result, error = save.outcome()
            assert isinstance(error, UnavailableError), (result, error)
            assert f"snapshot {killed} failed at partition 0" in str(error)
            assert "died" in str(error)
            load.join(120)
            assert not load.is_alive()
            status = {s["cut"]: s for s in snapshot_status(c)}
            assert status[killed]["complete"] is False and status[killed]["files"] == 1
            assert status[good]["complete"] is True

            # (b) the whole server dies while partition 1's writer is busy
            ballot.cast(server.address, phones[:2000] + ballot.new_phones(2000))
            busy = next_cut(c)
            assert busy > killed
            fifo_b = block_writer(data, busy, 1)
            save = Call(server.address, "@SnapshotSave")
            pid = writer_pid(server, busy, 1)
            wait_until(lambda: has_file(data, busy, 0), 60, "partition 0's file")
            ballot.cast(server.address, phones[2000:4000])     # answered while it writes
            # (Results would wait behind the snapshot: the model has the totals)
            before = {"hash": c.call("@StateHash").result, "totals": dict(ballot.totals),
                      "rows": [p["tables"]["votes"]["rows"] for p in partition_stats(c)]}
            assert pid_alive(pid)
        crash(server)
        save.outcome()
    # the writer dies with its partition: nothing goes on writing into a folder
    # that a restarted server will use
    try:
        wait_until(lambda: not pid_alive(pid), 30, "the writer to die with its partition")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    # what a killed writer leaves: part of a temporary file
    as_crashed_writer_left_it(fifo_a, partition_file(snapshot_directory(data, killed), 1))
    as_crashed_writer_left_it(fifo_b, partition_file(snapshot_directory(data, busy), 0))
    done = flowstate("snapshot", "list", "--data", data)
    assert done.returncode == 0, done.stderr
    lines = {int(line.split()[0]): line for line in done.stdout.splitlines()}
    assert sorted(lines) == [good, killed, busy]
    assert "INCOMPLETE" in lines[busy] and "INCOMPLETE" in lines[killed]
    assert "INCOMPLETE" not in lines[good]

    with ServerProcess(tmp_path, extra=SERVE) as server:
        assert [loaded(server.log, p) for p in range(2)] == [good, good], server.log
        with Client(server.address, timeout=60) as c:
            assert c.call("@StateHash").result == before["hash"]
            # the next snapshot (first thing: no other multi-partition call has
            # used a number yet) is a new one, and the unfinished ones go
            saved = c.call("@SnapshotSave").result
            assert saved["cut"] > busy
            assert_recovered(server, c, before, ballot, good)
            assert sorted(s["cut"] for s in snapshot_status(c)) == [good, saved["cut"]]
            assert not snapshot_directory(data, killed).exists()
            assert not snapshot_directory(data, busy).exists()
            ballot.cast(server.address, phones[4000:] + ballot.new_phones(1000))
            before = observe(c)
        crash(server)
    with ServerProcess(tmp_path, extra=SERVE) as server:
        with Client(server.address, timeout=60) as c:
            assert_recovered(server, c, before, ballot, saved["cut"])
        assert server.stop() == 0


# -- 4. automatic snapshots by log size; pruning -------------------------------------------

def test_snapshots_by_log_size_prune_the_log(tmp_path):
    ballot = Ballot()
    data = tmp_path / "data"
    extra = ("--log-segment-mb", "1", "--snapshot-log-mb", "2", "--snapshot-interval", "0")
    with ServerProcess(tmp_path, extra=extra) as server:
        with Client(server.address, timeout=60) as c:
            assert c.call("Initialize", 6).result == 6
            # past 2 MiB: a third 1 MiB segment on a partition
            for _ in range(40):
                if max(p["command_log"]["segment"] for p in partition_stats(c)) >= 3:
                    break
                ballot.cast(server.address, ballot.new_phones(10_000))
            written = [p["command_log"]["segment"] for p in partition_stats(c)]
            assert max(written) >= 3
            auto = wait_until(lambda: [s for s in snapshot_status(c) if s["complete"]], 30,
                              "a snapshot by log size")
            assert len(auto) == 1
            automatic = manifest(auto[0]["path"])
            assert automatic["reason"] == "log size"
            wait_until(lambda: re.search(rf"snapshot {automatic['cut']} complete \(log size\)",
                                         server.log), 30, "the coordinator's log line")
            # the segments before its cut are gone: fewer remain than were written
            stats = partition_stats(c)
            for p in range(2):
                numbers = [int(s.stem) for s in segment_paths(log_directory(data, p))]
                first_needed = automatic["log_segments"][str(p)]
                current = stats[p]["command_log"]["segment"]
                assert numbers == list(range(first_needed, current + 1)), (p, automatic)
            assert max(automatic["log_segments"].values()) >= 3

            # two more: the oldest goes (KEEP), and the log before the older kept one
            cuts = [automatic["cut"]]
            for _ in range(2):
                ballot.cast(server.address, ballot.new_phones(3000))
                cuts.append(c.call("@SnapshotSave").result["cut"])
            status = [s for s in snapshot_status(c)]
            assert len(status) <= KEEP and all(s["complete"] for s in status)
            assert [s["cut"] for s in status] == cuts[::-1][:KEEP]
            oldest = manifest(status[-1]["path"])
            for p in range(2):
                numbers = [int(s.stem) for s in segment_paths(log_directory(data, p))]
                assert numbers[0] == oldest["log_segments"][str(p)]
            ballot.cast(server.address, ballot.new_phones(2000))
            before = observe(c)
        crash(server)

    # no usable snapshot left, and the log before them deleted: a start from
    # the log alone would be partial, so recovery refuses
    broken = tmp_path / "broken"
    shutil.copytree(data, broken / "data")
    for directory in (broken / "data" / "snapshots").iterdir():
        (directory / "MANIFEST.json").unlink()
    done = flowstate("verify", broken / "data")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no usable snapshot" in done.stderr
    with pytest.raises(RuntimeError, match="no usable snapshot") as refused:
        ServerProcess(broken, extra=extra)
    assert "ready:" not in str(refused.value)

    with ServerProcess(tmp_path, extra=extra) as server:
        with Client(server.address, timeout=60) as c:
            assert_recovered(server, c, before, ballot, cuts[-1])
        assert server.stop() == 0


# -- 5. automatic snapshots by interval -------------------------------------------------------

def test_snapshots_by_interval(tmp_path):
    ballot = Ballot()
    extra = ("--log-segment-mb", "1", "--snapshot-interval", "1")
    with ServerProcess(tmp_path, extra=extra) as server:
        with Client(server.address, timeout=60) as c:
            assert c.call("Initialize", 6).result == 6
            ballot.cast(server.address, ballot.new_phones(2000))
            first = wait_until(lambda: [s for s in snapshot_status(c) if s["complete"]], 30,
                               "a snapshot by interval")[0]
            assert manifest(first["path"])["reason"] == "interval"
            ballot.cast(server.address, ballot.new_phones(2000))
            newer = wait_until(lambda: [s for s in snapshot_status(c)
                                        if s["complete"] and s["cut"] > first["cut"]], 30,
                               "a second snapshot by interval")[0]
            assert manifest(newer["path"])["reason"] == "interval"
            before = observe(c)
        crash(server)
    with ServerProcess(tmp_path, extra=SERVE) as server:
        with Client(server.address, timeout=60) as c:
            assert_recovered(server, c, before, ballot, None)
            assert loaded(server.log, 0) == loaded(server.log, 1) >= newer["cut"]
        assert server.stop() == 0


# -- 5b. the coordinator's own log ------------------------------------------------------------

def test_snapshots_prune_the_coordinators_log_and_keep_its_keyed_outcomes(tmp_path):
    """At a snapshot, the coordinator's log segments whose decisions the
    oldest kept snapshot holds are deleted; the idempotency outcomes in them
    are logged again first, so that after a kill -9 a retry of an early
    keyed transfer still gets its original answer and is not applied twice.
    (Without the carried outcomes the retries would transfer again.)"""
    data = tmp_path / "data"
    own_log = log_directory(data, COORDINATOR_OWNER)
    long_key = "k" * 100                       # fills the 1 MiB segments sooner

    async def transfers(address: str, keys: list[str], a: int, b: int) -> dict:
        async with AsyncClient(address, timeout=60) as ac:
            window = asyncio.Semaphore(64)

            async def one(key):
                async with window:
                    return key, (await ac.call("Transfer", a, b, 1, idempotency_key=key)).result
            return dict(await asyncio.gather(*(one(k) for k in keys)))

    with ServerProcess(tmp_path, app=BANK, extra=SERVE) as server:
        with Client(server.address, timeout=60) as c:
            bank = Bank(c, pairs=2, balance=10**9)
            a, b = owned_by(0, 7_000_000, 1)[0], owned_by(1, 7_000_000, 1)[0]
            early = [f"early-{i}" for i in range(50)]
            answers = asyncio.run(transfers(server.address, early, a, b))
            batch = 0
            while len(segment_paths(own_log)) < 3:      # two full segments and the current
                keys = [f"{long_key}-{batch}-{i}" for i in range(2000)]
                answers.update(asyncio.run(transfers(server.address, keys, a, b)))
                batch += 1
                assert batch < 40, "the coordinator's log does not grow"
            moved = len(answers)
            bank.balances[a] -= moved
            bank.balances[b] += moved
            first_segments = [int(p.stem) for p in segment_paths(own_log)]
            saved = c.call("@SnapshotSave").result      # the oldest kept snapshot: this one
            assert saved["pruned"]["coordinator_segments"] == len(first_segments) - 1
            remaining = [int(p.stem) for p in segment_paths(own_log)]
            assert remaining[0] == first_segments[-1]     # (the carried outcomes may fill it)
            bank.work(server.address, 30)
            assert "of the coordinator's" in server.log
            before = bank_state(c)
            assert before["accounts"] == bank.accounts()
        crash(server)

    with ServerProcess(tmp_path, app=BANK, extra=SERVE) as server:
        with Client(server.address, timeout=60) as c:
            assert bank_state(c) == before
            retried = asyncio.run(transfers(server.address, early, a, b))
            assert retried == {key: answers[key] for key in early}    # the original answers
            assert bank_state(c) == before                           # and nothing applied again
        assert server.stop() == 0
    _, hashes = verify(data)
    assert hashes == state_hashes(before["hash"])


# -- 6. no durability, no snapshots -------------------------------------------------------------

def test_snapshot_save_without_durability_is_refused(tmp_path):
    with ServerProcess(tmp_path, extra=("--durability", "off")) as server:
        with Client(server.address, timeout=60) as c:
            assert c.call("Initialize", 6).result == 6
            with pytest.raises(UnavailableError, match="snapshots need a durable server"):
                c.call("@SnapshotSave")
            assert c.call("@Ping").result == 0
        done = flowstate("snapshot", "save", "--server", server.address)
        assert done.returncode == 2
        assert "snapshots need a durable server" in done.stderr
        assert not (server.data / "snapshots").exists() or \
            not any((server.data / "snapshots").iterdir())
        assert server.stop() == 0
