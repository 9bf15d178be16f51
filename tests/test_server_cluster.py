"""The server as a cluster, end to end: real `flowstate serve` processes
with two partitions running the test bank (tests/apps/bank).

What is checked: routing (each single-partition call runs on the partition
that owns its key, whichever port and driver mode it came through),
multi-partition transactions (atomic, isolated from single-partition calls,
rolled back everywhere on any failure), replicated tables, idempotency
keys, call timeouts, reconnection after a restart, the supervisor's
handling of dead children, signals, a busy data directory or port, and
the system procedures.

No assertion depends on timing: sleeps and timeouts only order events or
keep a broken server from hanging the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import flowstate
from flowstate.client import AsyncClient, Client
from flowstate.errors import (CallTimeoutError, ConnectionLostError, ParameterError,
                              ProcedureError, ReadOnlyError, UniqueViolationError,
                              UserAbortError)
from flowstate.routing import Topology

from server_harness import ServerProcess, free_port_run, owned_by, pid_alive, wait_until

BANK = Path(__file__).resolve().parent / "apps" / "bank"
TOPOLOGY = Topology(2)
PROCEDURES = {"Open", "Deposit", "Balance", "WhereIs", "Census", "Tag", "TagCensus",
              "ReadSetting", "WriteSettingHere", "Transfer", "Total", "Accounts",
              "AbortAfterWrites", "CrashAfterWrites", "OpenPair", "SetSetting", "Sleep",
              "Hold"}


# Tests on the shared server keep to their own account ids: routing 1M-4M
# (and 1e9+ / negative / 2**62+), transfers 20M, rollback 30M (+1e9),
# replicated 40M, idempotency 50M-51M, timeouts 52M, async routing 70M-80M.







def serve_command(data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowstate", "serve", "--port", "0", "--partitions", "2",
            "--data", str(data), "--app", str(BANK), *extra]


# -- the shared cluster ----------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("cluster"), app=BANK, partitions=2) as s:
        yield s


@pytest.fixture(scope="module")
def pids(server) -> dict[int, int]:
    """partition id -> pid of its process."""
    return {p: server.children[f"partition {p}"] for p in range(2)}


@pytest.fixture(scope="module")
def client(server):
    with Client(server.address) as c:
        yield c


@pytest.fixture(scope="module")
def partition_addresses(client) -> list[str]:
    return [f"{host}:{port}" for host, port in client.cluster.addresses]


def forwarded_calls(client) -> int:
    return client.call("@Statistics").result["coordinator"]["forwarded_calls"]


# -- routing ------------------------------------------------------------------------

ROUTES = ["affinity", "through-coordinator", "into-partition-0", "into-partition-1"]


@pytest.mark.parametrize("route", ROUTES)
def test_single_partition_calls_run_on_their_owner(route, server, pids, client,
                                                    partition_addresses):
    base = 1_000_000 * (ROUTES.index(route) + 1)
    if route == "affinity":
        driver = Client(server.address)
    elif route == "through-coordinator":
        driver = Client(server.address, affinity=False)
    else:
        entry = int(route[-1])
        driver = Client(partition_addresses[entry], affinity=False)
        assert driver.cluster.info["process"] == entry
    ids = list(range(base, base + 150)) + [base * 1000 + 1, -base, (1 << 62) + base]
    names = [f"{route}-{i}" for i in range(100)] + [f"{route}-ünïcødé-€", f"{route}-" + "x" * 30]
    forwarded_before = forwarded_calls(client)
    with driver:
        for key in ids:
            assert driver.call("Open", key, f"owner {key}", 10).result == \
                pids[TOPOLOGY.partition_of(key)], key
        for name in names:
            assert driver.call("Tag", name, len(name)).result == \
                pids[TOPOLOGY.partition_of(name)], name
        # the same key again lands on the same partition
        for key in ids[::5]:
            for _ in range(3):
                assert driver.call("WhereIs", key).result == pids[TOPOLOGY.partition_of(key)]
                assert driver.call("Balance", key).result == 10
        # each partition holds exactly the keys it owns
        for p in range(2):
            pid, census = driver.call("Census", owned_by(p, base, 1)[0]).result
            assert pid == pids[p]
            assert set(census) & set(ids) == {k for k in ids if TOPOLOGY.partition_of(k) == p}
            name = next(n for n in names if TOPOLOGY.partition_of(n) == p)
            pid, tag_census = driver.call("TagCensus", name).result
            assert pid == pids[p]
            assert set(tag_census) & set(names) == \
                {n for n in names if TOPOLOGY.partition_of(n) == p}
    calls = len(ids) + len(names) + 2 * 3 * len(ids[::5]) + 4
    forwarded = forwarded_calls(client) - forwarded_before
    if route == "through-coordinator":
        assert forwarded == calls          # the coordinator forwarded every one
    else:
        assert forwarded == 0              # straight to the owner, or partition to partition


@pytest.mark.parametrize("affinity", [True, False])
def test_async_client_routes_to_owners(affinity, server, pids, client):
    base = 70_000_000 if affinity else 80_000_000
    ids = list(range(base, base + 200))
    names = [f"async-{affinity}-{i}" for i in range(100)]
    forwarded_before = forwarded_calls(client)

    async def main():
        async with AsyncClient(server.address, affinity=affinity) as ac:
            opened = await asyncio.gather(*(ac.call("Open", k, "async", 1) for k in ids))
            tagged = await asyncio.gather(*(ac.call("Tag", n, 1) for n in names))
            again = await asyncio.gather(*(ac.call("WhereIs", k) for k in ids))
            return [r.result for r in opened], [r.result for r in tagged], \
                [r.result for r in again]

    opened, tagged, again = asyncio.run(main())
    assert opened == again == [pids[TOPOLOGY.partition_of(k)] for k in ids]
    assert tagged == [pids[TOPOLOGY.partition_of(n)] for n in names]
    forwarded = forwarded_calls(client) - forwarded_before
    assert forwarded == (0 if affinity else 2 * len(ids) + len(names))


def test_rows_are_where_the_topology_puts_them(client, pids):
    """After the routing tests: every row written by a single-partition call
    was written by its owner, and the per-partition row counts of
    @Statistics agree with the topology."""
    client.call("Open", 42, "probe", 0)
    rows = client.call("Accounts").result
    assert rows
    for account_id, _balance, home in rows:
        if home:                            # 0: opened by a multi-partition procedure
            assert home == pids[TOPOLOGY.partition_of(account_id)], account_id
    stats = client.call("@Statistics").result
    for p, part in enumerate(stats["partitions"]):
        assert part["partition"] == p and part["pid"] == pids[p]
        assert part["tables"]["accounts"]["rows"] == \
            sum(1 for r in rows if TOPOLOGY.partition_of(r[0]) == p)
    assert sum(p["tables"]["accounts"]["rows"] for p in stats["partitions"]) == len(rows)


def test_partitioning_parameter_of_the_wrong_type_is_rejected_everywhere(
        server, partition_addresses):
    for address, affinity in ((server.address, True), (server.address, False),
                              (partition_addresses[1], False)):
        with Client(address, affinity=affinity) as c:
            with pytest.raises(ParameterError, match="must be an integer"):
                c.call("Open", "7", "x", 1)
            with pytest.raises(ParameterError, match="must be a str"):
                c.call("Tag", 7, 1)


# -- multi-partition transactions ------------------------------------------------------

def test_concurrent_transfers_keep_the_total(server, client):
    ids = owned_by(0, 20_000_000, 8) + owned_by(1, 20_000_000, 8)
    initial = 100
    for key in ids:
        client.call("Open", key, "mp", initial)
    deposited = []                  # acknowledged deposits
    failures = []
    counts = {"committed": 0, "aborted": 0}
    lock = threading.Lock()

    def pair(rng):
        a = rng.choice(ids)
        b = rng.choice([k for k in ids if TOPOLOGY.partition_of(k) != TOPOLOGY.partition_of(a)])
        return a, b

    def worker(seed, c):
        rng = random.Random(seed)
        try:
            for _ in range(40):
                if rng.random() < 0.3:
                    key, amount = rng.choice(ids), rng.randint(1, 20)
                    c.call("Deposit", key, amount)
                    with lock:
                        deposited.append(amount)
                    continue
                a, b = pair(rng)
                try:
                    c.call("Transfer", a, b, rng.randint(1, 80))
                    with lock:
                        counts["committed"] += 1
                except UserAbortError as e:
                    assert "insufficient funds" in str(e)
                    with lock:
                        counts["aborted"] += 1
        except BaseException as e:          # noqa: BLE001 -- reported below
            failures.append(e)

    async def async_load():
        rng = random.Random(99)
        async with AsyncClient(server.address) as ac:
            async def one(i):
                if i % 4 == 0:
                    amount = rng.randint(1, 20)
                    await ac.call("Deposit", rng.choice(ids), amount)
                    deposited.append(amount)
                    return
                a, b = pair(rng)
                try:
                    await ac.call("Transfer", a, b, rng.randint(1, 80))
                    counts["committed"] += 1
                except UserAbortError as e:
                    assert "insufficient funds" in str(e)
                    counts["aborted"] += 1
            results = await asyncio.gather(*(one(i) for i in range(200)),
                                           return_exceptions=True)
            failures.extend(r for r in results if isinstance(r, BaseException))

    shared = Client(server.address)
    own = [Client(server.address, affinity=(i % 2 == 0)) for i in range(3)]
    threads = [threading.Thread(target=worker, args=(i, c))
               for i, c in enumerate([shared, shared, *own])]
    for t in threads:
        t.start()
    asyncio.run(async_load())
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    for c in [shared, *own]:
        c.close()
    assert not failures, failures[:3]
    assert counts["committed"] > 0
    rows = {r[0]: r[1] for r in client.call("Accounts").result if r[0] in ids}
    assert len(rows) == len(ids)
    assert sum(rows.values()) == initial * len(ids) + sum(deposited)
    assert min(rows.values()) >= 0
    # single-partition reads see the same balances
    assert {k: client.call("Balance", k).result for k in ids} == rows


@pytest.fixture(scope="module")
def pair_accounts(client):
    """Two accounts, one on each partition, and two unused ids likewise."""
    first, new_first = owned_by(0, 30_000_000, 2)
    second, new_second = owned_by(1, 30_000_000, 2)
    client.call("Open", first, "first", 500)
    client.call("Open", second, "second", 500)
    return first, second, new_first, new_second


def cluster_state(client):
    accounts = client.call("Accounts").result
    stats = client.call("@Statistics").result["partitions"]
    settings = [client.call("ReadSetting", owned_by(p, 0, 1)[0], name).result
                for p in range(2) for name in ("ghost", "pair")]
    return accounts, [{t: v["rows"] for t, v in s["tables"].items()} for s in stats], settings


def test_abort_rolls_back_every_partition(client, pids, pair_accounts):
    first, second, new_first, new_second = pair_accounts
    before = cluster_state(client)
    with pytest.raises(UserAbortError, match="changed my mind"):
        client.call("AbortAfterWrites", first, second, new_first, new_second)
    with pytest.raises(ProcedureError, match="CrashAfterWrites failed: KeyError"):
        client.call("CrashAfterWrites", first, second, new_first, new_second)
    # a unique violation on the second partition after writes on the first,
    # in both directions
    with pytest.raises(UniqueViolationError):
        client.call("OpenPair", new_first, second, 1)
    with pytest.raises(UniqueViolationError):
        client.call("OpenPair", new_second, first, 1)
    assert cluster_state(client) == before
    assert client.call("Balance", first).result == 500
    assert client.call("Balance", second).result == 500
    assert client.call("Balance", new_first).result is None
    assert client.call("Balance", new_second).result is None
    # the partitions are free again and a good transaction commits everywhere
    assert client.call("OpenPair", new_first, new_second, 3).result == 2
    assert client.call("Balance", new_first).result == 3
    assert client.call("Balance", new_second).result == 3
    for p in range(2):
        assert client.call("ReadSetting", owned_by(p, 0, 1)[0], "pair").result == \
            [pids[p], new_first]


def test_errors_arrive_the_same_through_a_partition_port(partition_addresses, pair_accounts):
    first, second, new_first, new_second = pair_accounts
    with Client(partition_addresses[1], affinity=False) as c:
        with pytest.raises(UserAbortError, match="changed my mind"):
            c.call("AbortAfterWrites", first, second, new_first + 10**9, new_second + 10**9)
        with pytest.raises(UniqueViolationError):
            c.call("OpenPair", new_first + 10**9, second, 1)
        assert c.call("Balance", second).result == 500


# -- replicated tables -------------------------------------------------------------

def test_replicated_tables(client, pids):
    keys = [owned_by(p, 40_000_000, 1)[0] for p in range(2)]
    for key in keys:
        with pytest.raises(ReadOnlyError, match="settings is replicated"):
            client.call("WriteSettingHere", key, "limit", 1)
    assert client.call("SetSetting", "limit", 42).result >= 1
    for p, key in enumerate(keys):
        assert client.call("ReadSetting", key, "limit").result == [pids[p], 42]
    assert client.call("SetSetting", "limit", 43).result >= 1
    for p, key in enumerate(keys):
        assert client.call("ReadSetting", key, "limit").result == [pids[p], 43]
        # still read-only to single-partition procedures after the write
        with pytest.raises(ReadOnlyError):
            client.call("WriteSettingHere", key, "limit", 1)
        assert client.call("ReadSetting", key, "limit").result == [pids[p], 43]


# -- idempotency keys ----------------------------------------------------------------

def test_idempotency_single_partition(server, client, partition_addresses):
    """Retries through the owner directly, through the coordinator, and
    through the other partition all reach the owner's memory of the key."""
    key = owned_by(1, 50_000_000, 1)[0]
    missing = owned_by(0, 50_000_000, 1)[0]
    client.call("Open", key, "idem", 100)
    with Client(server.address, affinity=False) as other, \
            Client(partition_addresses[0], affinity=False) as third:
        for c in (client, other, third):
            assert c.call("Deposit", key, 10, idempotency_key="dep-1").result == 110
        assert client.call("Balance", key).result == 110
        assert client.call("Deposit", key, 10, idempotency_key=b"dep-2").result == 120
        assert client.call("Deposit", key, 10).result == 130
        # an abort is an outcome too: the retry gets it, even though the
        # call would succeed now
        with pytest.raises(UserAbortError, match=f"no account {missing}"):
            client.call("Deposit", missing, 5, idempotency_key="dep-missing")
        client.call("Open", missing, "late", 0)
        for c in (client, other, third):
            with pytest.raises(UserAbortError, match=f"no account {missing}"):
                c.call("Deposit", missing, 5, idempotency_key="dep-missing")
        assert client.call("Balance", missing).result == 0
        assert client.call("Deposit", missing, 5, idempotency_key="dep-missing-2").result == 5


def test_idempotency_multi_partition(server, client, partition_addresses):
    a = owned_by(0, 51_000_000, 1)[0]
    b = owned_by(1, 51_000_000, 1)[0]
    client.call("Open", a, "idem", 100)
    client.call("Open", b, "idem", 100)
    first = client.call("Transfer", a, b, 7, idempotency_key="tx-1").result
    assert first == [93, 107]
    with Client(partition_addresses[0], affinity=False) as other:
        assert other.call("Transfer", a, b, 7, idempotency_key="tx-1").result == first
    assert client.call("Transfer", a, b, 7, idempotency_key="tx-1").result == first
    assert [client.call("Balance", k).result for k in (a, b)] == [93, 107]
    with pytest.raises(UserAbortError, match="insufficient funds"):
        client.call("Transfer", a, b, 1000, idempotency_key="tx-big")
    client.call("Deposit", a, 10_000)
    with pytest.raises(UserAbortError, match="insufficient funds"):
        client.call("Transfer", a, b, 1000, idempotency_key="tx-big")
    assert [client.call("Balance", k).result for k in (a, b)] == [10_093, 107]
    assert client.call("Transfer", a, b, 1000).result == [9_093, 1_107]


# -- timeouts --------------------------------------------------------------------

def test_call_timeout(server, client, tmp_path):
    """A call whose answer does not come in time raises CallTimeoutError and
    the client stays usable; a multi-partition call whose timeout passes
    while it waits in the coordinator's queue is dropped unrun."""
    a, b = owned_by(0, 52_000_000, 1)[0], owned_by(1, 52_000_000, 1)[0]
    client.call("Open", a, "t", 50)
    client.call("Open", b, "t", 50)
    release = tmp_path / "release"
    with Client(server.address) as c:
        try:
            with pytest.raises(CallTimeoutError, match="Hold: no answer within 0.2 s"):
                c.call("Hold", str(release), 60, timeout=0.2)
            # Hold now keeps the multi-partition worker (and every partition)
            # busy until ``release`` exists; this transfer queues behind it
            with pytest.raises(CallTimeoutError):
                c.call("Transfer", a, b, 5, timeout=0.3)
            # answered by the coordinator itself, after it read the transfer
            # (same connection): the transfer's deadline is at most 0.3 s away
            assert c.call("@Ping").result == 0
            time.sleep(0.4)
        finally:
            release.touch()
        assert c.call("Hold", str(release), 60, timeout=30).result is True
        # read by a multi-partition call, so after the transfer left the queue
        balances = {r[0]: r[1] for r in c.call("Accounts").result if r[0] in (a, b)}
        assert balances == {a: 50, b: 50}
        assert c.call("Transfer", a, b, 5, timeout=30).result == [45, 55]

    release_async = tmp_path / "release-async"

    async def main():
        async with AsyncClient(server.address) as ac:
            try:
                with pytest.raises(CallTimeoutError):
                    await ac.call("Hold", str(release_async), 60, timeout=0.2)
                assert (await ac.call("@Ping")).result == 0
                many = await asyncio.gather(
                    *(ac.call("Transfer", a, b, 1, timeout=0.2) for _ in range(5)),
                    return_exceptions=True)
                assert all(isinstance(e, CallTimeoutError) for e in many), many
                # as above: once the ping is answered, the coordinator has read
                # the transfers, whose deadlines then pass within 0.2 s
                assert (await ac.call("@Ping")).result == 0
                await asyncio.sleep(0.3)
            finally:
                release_async.touch()
            assert (await ac.call("Hold", str(release_async), 60)).result is True
            assert (await ac.call("Transfer", a, b, 1)).result == [44, 56]
    asyncio.run(main())


# -- system procedures -------------------------------------------------------------

@pytest.mark.parametrize("entry", ["coordinator", 0, 1])
def test_system_procedures(entry, server, pids, partition_addresses):
    address = server.address if entry == "coordinator" else partition_addresses[entry]
    with Client(address, affinity=False) as c:
        assert c.cluster.info["process"] == entry
        assert c.call("@Ping").result == 0

        info = c.call("@SystemInformation").result
        assert info["version"] == flowstate.__version__
        assert info["app"] == "bank" and info["partitions"] == 2
        assert info["coordinator"] == [server.host, server.port]
        assert [f"{h}:{p}" for h, p in info["addresses"]] == partition_addresses
        assert info["coordinator_pid"] == server.children["coordinator"]
        assert info["topology"]["bucket_map"] == TOPOLOGY.bucket_map
        assert info["uptime_seconds"] >= 0

        stats = c.call("@Statistics").result
        assert [p["partition"] for p in stats["partitions"]] == [0, 1]
        for p, part in enumerate(stats["partitions"]):
            assert part["pid"] == pids[p]
            assert set(part["tables"]) == {"accounts", "tags", "settings"}
            assert part["calls"] >= part["aborts"] >= 0
            assert part["connections"] >= 1
        assert stats["coordinator"]["multi_partition_calls"] >= 0
        assert stats["coordinator"]["connections"] >= 1

        procedures = {p["name"]: p for p in c.call("@Procedures").result}
        assert set(procedures) == PROCEDURES
        assert procedures["Transfer"]["multi_partition"] is True
        assert procedures["Transfer"]["partition_parameter"] is None
        assert procedures["Transfer"]["parameters"] == ["source", "target", "amount"]
        assert procedures["Open"]["multi_partition"] is False
        assert procedures["Open"]["partition_parameter"] == 0
        assert procedures["Tag"]["partition_parameter"] == 0


# -- reconnecting -------------------------------------------------------------------

def test_clients_reconnect_after_a_restart(tmp_path):
    """Both drivers survive the server going away and coming back on the
    same port: a call in flight then raises ConnectionLostError, the next
    call reconnects (waiting for the server within connect_timeout) and
    learns the topology again. The keys differ per run of the server so
    the test holds whether or not data survives a restart."""
    port = free_port_run()
    # without durability a dead child stops the server (with it, the
    # supervisor would restart the child: test_a_dead_partition_is_restarted)
    extra = ["--port", str(port), "--durability", "off"]
    address = f"127.0.0.1:{port}"
    keys = owned_by(1, 60_000_000, 3)

    def start():
        for attempt in range(5):
            try:
                return ServerProcess(tmp_path, app=BANK, partitions=2, extra=extra)
            except RuntimeError as e:
                # only if something else took one of the ports for a moment
                if "cannot listen" not in str(e) or attempt == 4:
                    raise
                time.sleep(0.5)

    async def scenario():
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(None, start)
        try:
            sync = Client(address, connect_timeout=60)
        except BaseException:
            first.kill()
            raise
        ac = AsyncClient(address, connect_timeout=60)
        try:
            await run(loop, first, sync, ac)
        finally:
            sync.close()
            await ac.close()

    async def run(loop, first, sync, ac):
        try:
            assert first.port == port
            await ac.connect()
            assert sync.call("Open", keys[0], "r", 1).result == first.children["partition 1"]
            assert (await ac.call("Balance", keys[0])).result == 1

            # calls in flight when the server goes away: the coordinator
            # dies, the supervisor stops the partitions and exits
            in_flight = loop.run_in_executor(None, sync.call, "Sleep", 60)
            async_in_flight = loop.create_task(ac.call("Sleep", 60))
            await loop.run_in_executor(None, wait_until,
                                       lambda: sync.main.pending and ac.main.pending)
            await asyncio.sleep(0.2)            # both sent
            os.kill(first.children["coordinator"], signal.SIGKILL)
            with pytest.raises(ConnectionLostError):
                await asyncio.wait_for(in_flight, 60)
            with pytest.raises(ConnectionLostError):
                await asyncio.wait_for(async_in_flight, 60)
            assert await loop.run_in_executor(None, first.process.wait, 60) != 0
            assert (f"coordinator (pid {first.children['coordinator']}) died unexpectedly: "
                    f"killed by SIGKILL") in first.log
        finally:
            first.kill()

        second = await loop.run_in_executor(None, start)
        try:
            owner = second.children["partition 1"]
            # the next calls reconnect
            assert sync.call("Open", keys[1], "r", 2).result == owner
            assert (await ac.call("Balance", keys[1])).result == 2
            assert (await ac.call("WhereIs", keys[1])).result == owner
            assert sync.call("Sleep", 0).result == 0          # multi-partition
            assert (await ac.call("Sleep", 0)).result == 0
            # a clean stop
            assert await loop.run_in_executor(None, second.stop, signal.SIGTERM) == 0
        finally:
            second.kill()

        # calls made while the server is down wait for it to come back;
        # several at once, from threads and from tasks
        early = [loop.create_task(ac.call("WhereIs", keys[2])) for _ in range(10)]
        early += [loop.run_in_executor(None, sync.call, "WhereIs", keys[2]) for _ in range(3)]
        await asyncio.sleep(0.3)
        third = await loop.run_in_executor(None, start)
        try:
            owner = third.children["partition 1"]
            answers = await asyncio.wait_for(asyncio.gather(*early), 60)
            assert [r.result for r in answers] == [owner] * len(early)
            assert sync.call("Open", keys[2], "r", 3).result == owner
            assert (await ac.call("Balance", keys[2])).result == 3
            assert sync.cluster.addresses == [("127.0.0.1", port + 1), ("127.0.0.1", port + 2)]
            assert await loop.run_in_executor(None, third.stop, signal.SIGTERM) == 0
        finally:
            third.kill()

    asyncio.run(scenario())


# -- the supervisor ------------------------------------------------------------------

def test_without_durability_a_dead_partition_stops_the_server(tmp_path):
    s = ServerProcess(tmp_path, app=BANK, partitions=2, extra=["--durability", "off"])
    try:
        victim = s.children["partition 1"]
        os.kill(victim, signal.SIGKILL)
        assert s.process.wait(60) != 0
        assert f"partition 1 (pid {victim}) died unexpectedly: killed by SIGKILL" in s.log
        assert not any(pid_alive(pid) for pid in s.children.values())
    finally:
        s.kill()


def test_a_dead_partition_is_restarted_while_the_others_serve(tmp_path):
    """With durability the supervisor restarts a dead partition, which
    recovers its rows; calls for it meanwhile are retried by the driver
    (retry=True) and applied once; the other partition keeps answering."""
    s = ServerProcess(tmp_path, app=BANK, partitions=2)
    try:
        mine = owned_by(1, 70_000_000, 20)
        other = owned_by(0, 71_000_000, 1)[0]
        with Client(s.address, retry=True, timeout=60) as c:
            for key in mine:
                c.call("Open", key, "before", 5)
            c.call("Open", other, "other", 7)
            victim = s.children["partition 1"]
            os.kill(victim, signal.SIGKILL)
            # the other partition keeps serving while partition 1 is down
            assert c.call("Balance", other).result == 7
            # calls for the dead one are retried until it is back
            for key in mine:
                c.call("Deposit", key, 1)
            assert [c.call("Balance", key).result for key in mine] == [6] * len(mine)
            wait_until(lambda: "partition 1 is back" in s.log, what="the restart")
            assert f"partition 1 (pid {victim}) died unexpectedly: killed by SIGKILL; " \
                   f"restarting it" in s.log
            assert s.process.poll() is None
            assert c.call("Total").result == 5 * len(mine) + len(mine) + 7
            # the driver reopens its direct connection to the restarted partition

            def direct_again():
                c.call("Balance", mine[0])
                return c.direct[1] is not None and not c.direct[1].closed
            wait_until(direct_again, what="the direct connection to partition 1")
    finally:
        s.stop()
        s.kill()


def test_a_killed_supervisor_takes_its_children_along(tmp_path):
    s = ServerProcess(tmp_path, app=BANK, partitions=2)
    try:
        with open(f"/proc/{s.children['coordinator']}/cmdline", "rb") as f:
            config = json.loads(next(a for a in f.read().split(b"\0") if a.startswith(b"{")))
        run_dir = os.path.dirname(config["unix_path"])
        s.process.kill()
        s.process.wait(60)
        wait_until(lambda: not any(pid_alive(pid) for pid in s.children.values()),
                   what="the children to die with the supervisor")
        shutil.rmtree(run_dir, ignore_errors=True)     # nobody left to remove it
    finally:
        s.kill()


def test_sigterm_busy_data_dir_and_busy_port(tmp_path):
    s = ServerProcess(tmp_path, app=BANK, partitions=2)
    try:
        # a second server on the same data directory
        second = subprocess.run(serve_command(s.data), capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 2
        assert f"another server is using the data directory {s.data.resolve()}" in second.stderr
        assert "started partition" not in second.stderr
        # the first is untouched
        with Client(s.address) as c:
            assert c.call("Open", 1, "still", 1).result == s.children[
                f"partition {TOPOLOGY.partition_of(1)}"]
        # a port in use: the client port, or the one of partition 1 (port + 2)
        for offset in (0, 2):
            port = free_port_run()
            with socket.socket() as busy:
                busy.bind(("127.0.0.1", port + offset))
                busy.listen(1)
                third = subprocess.run(serve_command(tmp_path / "other", "--port", str(port)),
                                       capture_output=True, text=True, timeout=60)
            assert third.returncode == 2, third.stderr
            assert (f"cannot listen on 127.0.0.1:{port + offset}: Address already in use"
                    in third.stderr), third.stderr
            assert "started partition" not in third.stderr
        # SIGTERM: a clean stop
        assert s.stop(signal.SIGTERM) == 0
        assert "received SIGTERM: stopping" in s.log and "server stopped" in s.log
        assert not any(pid_alive(pid) for pid in s.children.values())
    finally:
        s.kill()
