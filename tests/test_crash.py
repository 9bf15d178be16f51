"""Crash tests: acknowledged writes survive kill -9, with real processes.

A workload of client threads (the blocking Client, two threads sharing
one, one client without affinity so its calls are forwarded, one using
the driver's own retries) and an AsyncClient runs the ledger bank
(tests/apps/ledger) against a real ``flowstate serve`` with two
partitions: single-partition Deposits and multi-partition Transfers, each
with a unique call id and an idempotency key. The test kills -9 a random
process at random moments -- a partition or the coordinator (the
supervisor starts it again while the others serve; sometimes it is killed
again while it recovers), the supervisor (its children die with it) or
every process at once (then the test starts the server again on the same
data folder and port, and once in a while kills it again while it starts).

After each kill, once the server serves again, one multi-partition Dump
(an atomic snapshot) is audited against the calls made:

  * the ledger is well formed: per account, entries 1..n with a running
    balance that ends at the account's balance; both views and each
    partition's own rows agree with it; replay found no determinism fault;
  * every call appears as a whole (a deposit as one row, a transfer as its
    two rows on two accounts) and at most once (nothing applied twice);
  * every call acknowledged before the Dump is there, with the entry
    numbers and balances its answer said (so an answer to a retry with the
    same idempotency key is the original outcome); no call answered with
    an abort is there; a call whose outcome is unknown (ConnectionLostError,
    CallTimeoutError, UnavailableError; retried with the same key until it
    is answered) may be there, once; nothing else is;
  * the total of all balances is the opening balances plus the deposits.

The final audit, with every call answered, is exact.

With ``--durability async`` the calls acknowledged in the last moments
before a crash may be missing, but the state must be a consistent prefix:
the audit above minus "every acknowledged call is there", plus "a call
acknowledged before another call on the same partition was sent is there
if that other one is". With ``--durability off`` a restart starts empty.
A clean stop (SIGINT, SIGTERM) and start keeps everything.

The seed is printed (and named in every failure); ``FLOWSTATE_CRASH_SEED``
and ``FLOWSTATE_CRASH_KILLS`` replay or lengthen a run (the timing of a
run is not replayed, only its choices). No assertion depends on timing:
sleeps only spread the kills, timeouts only keep a broken server from
hanging the run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flowstate.client import AsyncClient, Client
from flowstate.errors import (CallTimeoutError, ConnectionLostError, ExpiredError,
                              FlowstateError, OverloadedError, UnavailableError, UserAbortError)
from flowstate.routing import Topology

from server_harness import free_port_run, owned_by, pid_alive, wait_until

LEDGER = Path(__file__).resolve().parent / "apps" / "ledger"
PARTITIONS = 2
TOPOLOGY = Topology(PARTITIONS)
OPEN, DEPOSIT, TRANSFER_OUT, TRANSFER_IN = 0, 1, 2, 3
INITIAL_BALANCE = 1_000

#: The call's outcome is unknown: retry it with the same key.
OUTCOME_UNKNOWN = (ConnectionLostError, CallTimeoutError, UnavailableError)
#: Refused without running: retry it too.
RETRY = OUTCOME_UNKNOWN + (ExpiredError, OverloadedError)

CALL_TIMEOUT = 60.0          # only against hangs
CONNECT_TIMEOUT = 5.0
GIVE_UP_SECONDS = 120.0      # a call still unanswered after this long fails the test
CHILDREN = tuple(f"partition {i}" for i in range(PARTITIONS)) + ("coordinator",)
KILL_TARGETS = CHILDREN + ("supervisor", "all")


def seed_from_environment() -> int:
    value = os.environ.get("FLOWSTATE_CRASH_SEED")
    return int(value) if value else random.SystemRandom().randrange(1 << 32)






# -- the server ------------------------------------------------------------------

_READY = re.compile(r"ready: application \S+ on (\S+):(\d+) with (\d+) partition")
_STARTED = re.compile(r"started (partition \d+|coordinator) \(pid (\d+), port (\d+)\)")
_BACK = re.compile(r"(partition \d+|coordinator) is back \(pid (\d+)\)")


class Server:
    """``flowstate serve`` on one data folder and port, killed and started
    again and again."""

    def __init__(self, tmp_path: Path, durability: str, port: int):
        self.tmp_path = Path(tmp_path)
        self.data = self.tmp_path / "data"
        self.durability = durability
        self.port = port
        self.process: subprocess.Popen | None = None
        self.children: dict[str, int] = {}
        self.log_path: Path | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def launch(self) -> None:
        self.starts += 1
        self.log_path = self.tmp_path / f"server-{self.starts:03d}.log"
        args = [sys.executable, "-m", "flowstate", "serve", "--port", str(self.port),
                "--partitions", str(PARTITIONS), "--data", str(self.data), "--app", str(LEDGER),
                "--durability", self.durability, "--log-segment-mb", "1"]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.children = {}

    def _read_children(self, text: str) -> None:
        self.children = {name: int(pid) for name, pid, _ in _STARTED.findall(text)}

    def wait_started(self, timeout: float = 60.0) -> None:
        """Until every child process is started (its pid logged)."""
        def started():
            self._read_children(self.log)
            return len(self.children) == len(CHILDREN) or self.process.poll() is not None
        wait_until(started, timeout, "the server to start its children")

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """True once ready; False if it exited first."""
        def ready():
            return _READY.search(self.log) or self.process.poll() is not None
        try:
            wait_until(ready, timeout, "the server to be ready")
        except AssertionError:
            self.cleanup()
            raise AssertionError(f"the server did not become ready:\n{self.log}") from None
        self._read_children(self.log)
        return self.process.poll() is None

    def start(self, attempts: int = 6) -> None:
        for attempt in range(attempts):
            self.launch()
            if self.wait_ready():
                return
            self.wait_down()
            text = self.log
            # only if something else took one of the ports for a moment
            if "cannot listen" not in text or attempt == attempts - 1:
                raise AssertionError(f"the server exited with {self.process.returncode} "
                                     f"before it was ready:\n{text}")
            time.sleep(0.5)

    def kill(self, target: str) -> None:
        if target == "supervisor":
            pids = [self.process.pid]
        elif target == "all":
            pids = [self.process.pid, *self.children.values()]
        else:
            pids = [self.children[target]]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait_child_dead(self, name: str, timeout: float = 60.0) -> None:
        pid = self.children[name]
        wait_until(lambda: not pid_alive(pid), timeout, f"{name} (pid {pid}) to die")

    def wait_child_started(self, name: str, old_pid: int, timeout: float = 60.0) -> bool:
        """Until the supervisor started ``name`` again (True), or exited (False)."""
        def started():
            self._read_children(self.log)
            return self.children.get(name) != old_pid or self.process.poll() is not None
        wait_until(started, timeout, f"the supervisor to start {name} again")
        return self.children.get(name) != old_pid

    def wait_child_back(self, name: str, killed: int, timeout: float = 60.0) -> bool:
        """Until ``name``, restarted after pid ``killed``, serves (True), or
        the server exited (False)."""
        def back():
            text = self.log
            self._read_children(text)
            pid = self.children.get(name)
            return (pid != killed and (name, str(pid)) in _BACK.findall(text)
                    or self.process.poll() is not None)
        wait_until(back, timeout, f"{name} to be back")
        return self.process.poll() is None

    def wait_down(self, timeout: float = 60.0) -> int:
        """Until the supervisor and every child are gone; the supervisor's status."""
        status = self.process.wait(timeout)
        self._read_children(self.log)
        wait_until(lambda: not any(pid_alive(pid) for pid in self.children.values()), timeout,
                   f"the children {self.children} to die with the supervisor")
        return status

    def stop(self, sig=signal.SIGINT, timeout: float = 60.0) -> int:
        self.process.send_signal(sig)
        return self.wait_down(timeout)

    def cleanup(self) -> None:
        if self.process is None:
            return
        self._read_children(self.log)
        self.kill("all")
        try:
            self.wait_down(30)
        except Exception:          # noqa: BLE001 -- best effort at teardown
            pass


# -- the calls and their outcomes ------------------------------------------------------

class Call:
    """One logical call (however many attempts it takes)."""

    __slots__ = ("id", "proc", "params", "key", "partitions", "state", "result", "error",
                 "attempts", "unknown", "sent_epoch", "sent_seq", "acked_epoch", "acked_seq",
                 "seen")

    def __init__(self, call_id: int, proc: str, params: list):
        self.id = call_id
        self.proc = proc
        self.params = params
        self.key = f"call-{call_id}"
        accounts = params[:2] if proc == "Transfer" else params[:1]
        self.partitions = frozenset(TOPOLOGY.partition_of(a) for a in accounts)
        self.state = "new"          # -> pending (sent) -> ok | aborted | failed
        self.result = None
        self.error = None
        self.attempts = 0
        self.unknown = 0            # attempts whose outcome was unknown
        self.sent_epoch = self.sent_seq = None
        self.acked_epoch = self.acked_seq = None
        self.seen = False           # seen applied while its outcome was unknown

    def __repr__(self):
        return (f"Call({self.id} {self.proc}{tuple(self.params)} {self.state} "
                f"result={self.result!r} error={self.error!r} attempts={self.attempts} "
                f"unknown={self.unknown})")


class Book:
    """Every call made, in order of sending and answering.

    ``epoch`` counts server disturbances: it moves on just before a kill
    and again once the killed processes are gone; calls sent and answered
    in one epoch that is not a kill window ran between two kills."""

    def __init__(self):
        self.calls: dict[int, Call] = {}
        self.ids = itertools.count(1)
        self.seq = itertools.count(1)
        self.epoch = 0
        self.windows: set[int] = set()
        self.lock = threading.Lock()
        self.stopping = False
        self.failures: list[str] = []
        self.audits = 0                # outcome-unknown calls wait for the next audit
        self.audited = threading.Condition()

    def new(self, proc: str, params: list, call_id_at: int = -1) -> Call:
        with self.lock:
            call = Call(next(self.ids), proc, params)
            call.params[call_id_at] = call.id      # the call id's parameter
            self.calls[call.id] = call
        return call

    def kill_window(self) -> None:
        self.epoch += 1
        self.windows.add(self.epoch)

    def after_kill(self) -> None:
        self.epoch += 1

    def audit_done(self) -> None:
        with self.audited:
            self.audits += 1
            self.audited.notify_all()

    def wait_for_audit(self, mark: int, timeout: float = 30.0) -> None:
        """Until an audit after ``mark`` (so it sees the call unanswered)."""
        with self.audited:
            self.audited.wait_for(lambda: self.audits > mark or self.stopping, timeout)

    def snapshot(self) -> dict:
        with self.lock:
            return {cid: (c.state, c.result) for cid, c in self.calls.items()}

    # the outcome of one attempt

    def sent(self, call: Call) -> None:
        call.attempts += 1
        if call.state == "new":
            call.sent_epoch, call.sent_seq = self.epoch, next(self.seq)
            call.state = "pending"

    def answered(self, call: Call, result=None, error=None) -> None:
        call.acked_epoch, call.acked_seq = self.epoch, next(self.seq)
        if error is None:
            call.result = result
            call.state = "ok"
        else:
            call.error = str(error)
            call.state = "aborted"

    def failed(self, call: Call, why: str) -> None:
        call.error = why
        call.state = "failed"
        with self.lock:
            self.failures.append(f"{call!r}: {why}")

    def counts(self) -> collections.Counter:
        return collections.Counter(c.state for c in self.calls.values())


class Workload:
    """Client threads and an AsyncClient making calls until stopped."""

    def __init__(self, book: Book, address: str, seed: int, accounts: list[int],
                 missing: list[int], sync_threads: int = 5, async_tasks: int = 4):
        self.book = book
        self.address = address
        self.seed = seed
        self.accounts = accounts
        self.missing = missing
        self.sync_threads = sync_threads
        self.async_tasks = async_tasks
        self.threads: list[threading.Thread] = []
        self.clients: list[Client] = []

    def next_call(self, rng: random.Random) -> Call:
        roll = rng.random()
        if roll < 0.03:
            return self.book.new("Deposit", [rng.choice(self.missing), 1, 0])   # aborts
        if roll < 0.45:
            return self.book.new("Deposit", [rng.choice(self.accounts), rng.randint(1, 100), 0])
        source = rng.choice(self.accounts)
        same = rng.random() < 0.2
        target = rng.choice([a for a in self.accounts if a != source and
                             (TOPOLOGY.partition_of(a) == TOPOLOGY.partition_of(source)) == same])
        amount = 10 ** 9 if roll > 0.95 else rng.randint(1, 200)    # some must abort
        return self.book.new("Transfer", [source, target, amount, 0])

    def _client(self, **options) -> Client:
        client = Client(self.address, connect_timeout=CONNECT_TIMEOUT, timeout=CALL_TIMEOUT,
                        **options)
        self.clients.append(client)
        return client

    def start(self) -> None:
        shared = self._client()
        for i in range(self.sync_threads):
            # 0, 1: one shared client; 2: no affinity (calls forwarded by the
            # coordinator); 3: the driver's own retries; others: their own
            client = (shared if i < 2 else self._client(affinity=False) if i == 2
                      else self._client(retry=True) if i == 3 else self._client())
            self.threads.append(threading.Thread(target=self._sync_worker, args=(i, client),
                                                 name=f"crash-worker-{i}", daemon=True))
        if self.async_tasks:
            self.threads.append(threading.Thread(target=self._async_worker, name="crash-async",
                                                 daemon=True))
        for t in self.threads:
            t.start()

    def stop(self, timeout: float = 180.0) -> None:
        """No new calls; every call made is answered (retried until it is)."""
        self.book.stopping = True
        self.book.audit_done()
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), f"{t.name} did not finish (seed {self.seed})"
        for c in self.clients:
            c.close()

    def _attempt_done(self, call: Call, response, error) -> None:
        book = self.book
        if error is None:
            book.answered(call, result=response.result)
        elif isinstance(error, UserAbortError):
            book.answered(call, error=error)
        elif isinstance(error, RETRY):
            call.unknown += isinstance(error, OUTCOME_UNKNOWN)
            call.error = repr(error)
        else:
            book.failed(call, f"unexpected {error!r}")

    def _sync_worker(self, index: int, client: Client) -> None:
        book = self.book
        rng = random.Random(f"{self.seed}-sync-{index}")
        try:
            while not book.stopping:
                call = self.next_call(rng)
                started = time.monotonic()
                while call.state in ("new", "pending"):
                    book.sent(call)
                    mark = book.audits
                    try:
                        response, error = client.call(call.proc, *call.params,
                                                      idempotency_key=call.key), None
                    except FlowstateError as e:
                        response, error = None, e
                    self._attempt_done(call, response, error)
                    if call.state == "pending":
                        if time.monotonic() - started > GIVE_UP_SECONDS:
                            book.failed(call, f"no answer in {GIVE_UP_SECONDS:g} s")
                        if isinstance(error, OUTCOME_UNKNOWN):
                            book.wait_for_audit(mark)
                        time.sleep(rng.uniform(0.01, 0.05))
        except BaseException as e:                   # noqa: BLE001 -- reported by the test
            book.failures.append(f"worker {index} crashed: {e!r}")

    def _async_worker(self) -> None:
        book = self.book
        rng = random.Random(f"{self.seed}-async")

        async def task(client: AsyncClient) -> None:
            while not book.stopping:
                call = self.next_call(rng)
                started = time.monotonic()
                while call.state in ("new", "pending"):
                    book.sent(call)
                    mark = book.audits
                    try:
                        response, error = await client.call(call.proc, *call.params,
                                                            idempotency_key=call.key), None
                    except FlowstateError as e:
                        response, error = None, e
                    self._attempt_done(call, response, error)
                    if call.state == "pending":
                        if time.monotonic() - started > GIVE_UP_SECONDS:
                            book.failed(call, f"no answer in {GIVE_UP_SECONDS:g} s")
                        waited = time.monotonic()
                        while (isinstance(error, OUTCOME_UNKNOWN) and book.audits <= mark
                               and not book.stopping and time.monotonic() - waited < 30):
                            await asyncio.sleep(0.02)
                        await asyncio.sleep(rng.uniform(0.01, 0.05))

        async def main() -> None:
            client = AsyncClient(self.address, connect_timeout=CONNECT_TIMEOUT,
                                 timeout=CALL_TIMEOUT)
            try:
                await asyncio.gather(*(task(client) for _ in range(self.async_tasks)))
            finally:
                await client.close()

        try:
            asyncio.run(main())
        except BaseException as e:                   # noqa: BLE001 -- reported by the test
            book.failures.append(f"the async worker crashed: {e!r}")


# -- the audit -----------------------------------------------------------------------

def read_state(address: str) -> dict:
    """One atomic Dump, plus each partition's own rows and replay faults."""
    with Client(address, connect_timeout=30, timeout=CALL_TIMEOUT, retry=True) as c:
        state = c.call("Dump").result
        stats = c.call("@Statistics").result
        state["determinism_faults"] = [p.get("determinism_faults") for p in stats["partitions"]]
        state["partition_dumps"] = [c.call("PartitionDump", owned_by(p, 0, 1)[0]).result
                                    for p in range(PARTITIONS)]
    return state


def expected_rows(call: Call) -> list[tuple]:
    """(account, kind, amount) of each ledger row ``call`` appends."""
    if call.proc == "Open":
        return [(call.params[0], OPEN, call.params[1])]
    if call.proc == "Deposit":
        return [(call.params[0], DEPOSIT, call.params[1])]
    source, target, amount, _ = call.params
    return [(source, TRANSFER_OUT, -amount), (target, TRANSFER_IN, amount)]


def check_ledger(dump: dict, problems: list[str], where: str, whole: bool = True) -> None:
    """The ledger of ``dump`` is well formed and agrees with its accounts and
    views; with ``whole`` (every partition), the total adds up too."""
    accounts = {a[0]: (a[1], a[2]) for a in dump["accounts"]}
    by_account: dict[int, list] = collections.defaultdict(list)
    for row in dump["ledger"]:
        by_account[row[0]].append(row)
    if set(by_account) != set(accounts):
        problems.append(f"{where}: ledger accounts {sorted(set(by_account) ^ set(accounts))} "
                        f"without an account row, or the reverse")
    for account, (balance, entries) in accounts.items():
        rows = sorted(by_account.get(account, []), key=lambda r: r[1])
        if [r[1] for r in rows] != list(range(1, entries + 1)):
            problems.append(f"{where}: account {account}: entries {[r[1] for r in rows]}, "
                            f"expected 1..{entries}")
            continue
        running = 0
        for _, entry, call_id, kind, amount, after in rows:
            if (entry == 1) != (kind == OPEN):
                problems.append(f"{where}: account {account} entry {entry}: kind {kind}")
            running += amount
            if after != running:
                problems.append(f"{where}: account {account} entry {entry} (call {call_id}): "
                                f"balance after {after}, but the entries add up to {running}")
                break
        if running != balance:
            problems.append(f"{where}: account {account}: balance {balance}, entries add up "
                            f"to {running}")
    view = {r[0]: (r[1], r[2]) for r in dump["by_account"]}
    base = {a: (len(rows), sum(r[4] for r in rows)) for a, rows in by_account.items()}
    if view != base:
        problems.append(f"{where}: v_ledger_by_account disagrees with the ledger: "
                        f"{sorted(set(view.items()) ^ set(base.items()))[:10]}")
    kinds: dict[int, list] = collections.defaultdict(lambda: [0, 0])
    for row in dump["ledger"]:
        kinds[row[3]][0] += 1
        kinds[row[3]][1] += row[4]
    if {r[0]: [r[1], r[2]] for r in dump["by_kind"]} != dict(kinds):
        problems.append(f"{where}: v_ledger_by_kind {dump['by_kind']} disagrees with the "
                        f"ledger {dict(kinds)}")
    if whole:
        deposits = sum(r[4] for r in dump["ledger"] if r[3] in (OPEN, DEPOSIT))
        total = sum(balance for balance, _ in accounts.values())
        if total != deposits:
            problems.append(f"{where}: total {total}, but opening balances and deposits add "
                            f"up to {deposits}")


def check_well_formed(state: dict, problems: list[str], *, at_rest: bool) -> None:
    check_ledger(state, problems, "Dump")
    for p, dump in enumerate(state["partition_dumps"]):
        check_ledger(dump, problems, f"PartitionDump {p}", whole=False)
        if any(TOPOLOGY.partition_of(a[0]) != p for a in dump["accounts"]):
            problems.append(f"PartitionDump {p}: accounts of another partition")
    if at_rest:      # read one after the other: equal only when nothing runs
        for key in ("accounts", "ledger", "by_account"):
            if sorted(r for d in state["partition_dumps"] for r in d[key]) != state[key]:
                problems.append(f"the partitions' own {key} differ from the multi-partition "
                                f"read")
    if any(state["determinism_faults"]):
        problems.append(f"determinism faults on replay: {state['determinism_faults']}")


def audit(book: Book, before: dict, state: dict, after: dict, *, durable: bool,
          final: bool = False) -> collections.Counter:
    """Check the Dump ``state`` against the calls: ``before`` and ``after``
    are the book's snapshots taken just before the Dump was sent and just
    after it was answered (see the module doc); return what was seen."""
    problems: list[str] = []
    check_well_formed(state, problems, at_rest=final)
    applied: dict[int, list] = collections.defaultdict(list)
    for row in state["ledger"]:
        applied[row[2]].append(row)
    counts = collections.Counter()
    for call_id, rows in applied.items():
        call = book.calls.get(call_id)
        if call is None or call_id not in after:
            problems.append(f"ledger rows of a call never made: {rows}")
            continue
        got = sorted((r[0], r[3], r[4]) for r in rows)
        want = sorted(expected_rows(call))
        if got != want:
            problems.append(f"{call!r} applied as {rows}, expected {want} once "
                            f"({'twice' if len(got) > len(want) else 'in part'}?)")
            continue
        state_after, result = after[call_id]
        if state_after == "aborted":
            problems.append(f"{call!r} was answered with an abort, but it was applied: {rows}")
        elif state_after == "ok":
            rows.sort(key=lambda r: r[3] == TRANSFER_IN)     # open/deposit/out, then in
            answer = [v for r in rows for v in (r[1], r[5])]
            if result != answer:
                problems.append(f"{call!r}: its answer is not what was applied: {rows}")
            counts["acknowledged"] += 1
        elif state_after == "pending":
            if before.get(call_id, ("new",))[0] == "pending":
                call.seen = True
            counts["unknown, applied"] += 1
        else:
            problems.append(f"{call!r} applied, but its state is {state_after}")
    lost = [book.calls[cid] for cid, (s, _) in before.items()
            if s == "ok" and cid not in applied]
    counts["unknown, not applied"] = sum(1 for cid, (s, _) in before.items()
                                         if s == "pending" and cid not in applied
                                         and after[cid][0] == "pending")
    if durable:
        for call in lost[:20]:
            problems.append(f"{call!r} was acknowledged but is not in the state")
    else:
        counts["acknowledged, lost"] = len(lost)
        # A witness Y: sent and answered in one attempt between two kills,
        # and there. A call X acknowledged before Y was sent, on one of Y's
        # partitions, committed there before Y did: it must be there too.
        witnesses: dict[tuple, Call] = {}
        for call_id in applied:
            y = book.calls.get(call_id)
            if (y is not None and y.state == "ok" and y.attempts == 1
                    and y.sent_epoch == y.acked_epoch and y.sent_epoch not in book.windows):
                for p in y.partitions:
                    best = witnesses.get((y.sent_epoch, p))
                    if best is None or y.sent_seq > best.sent_seq:
                        witnesses[(y.sent_epoch, p)] = y
        for x in lost:
            for p in x.partitions:
                y = witnesses.get((x.acked_epoch, p))
                if y is not None and x.acked_seq < y.sent_seq:
                    problems.append(f"not a prefix: {x!r} is lost, but {y!r}, sent after "
                                    f"it was acknowledged, is there")
                    break
    if final:
        for call in book.calls.values():
            if call.state in ("new", "pending"):
                problems.append(f"{call!r} never answered")
    assert not problems, "\n".join(problems[:30])
    counts["ledger rows"] = len(state["ledger"])
    return counts


def audit_now(book: Book, address: str, *, durable: bool, final: bool = False):
    before = book.snapshot()
    state = read_state(address)
    counts = audit(book, before, state, book.snapshot(), durable=durable, final=final)
    book.audit_done()
    return counts, state


def open_accounts(book: Book, address: str, accounts: list[int]) -> None:
    with Client(address, connect_timeout=30, timeout=CALL_TIMEOUT) as c:
        for account in accounts:
            call = book.new("Open", [account, INITIAL_BALANCE, 0])
            book.sent(call)
            book.answered(call, result=c.call("Open", *call.params,
                                              idempotency_key=call.key).result)


def bank(count_per_partition: int = 6):
    accounts = [a for p in range(PARTITIONS) for a in owned_by(p, 1000, count_per_partition)]
    missing = [a for p in range(PARTITIONS) for a in owned_by(p, 900_000, 1)]
    return accounts, missing


def check_no_failures(book: Book) -> None:
    assert not book.failures, "\n".join(book.failures[:20])


class Seeded:
    """Re-raise a failure with the seed and the tail of the server's log."""

    def __init__(self, seed: int, server: Server):
        self.seed = seed
        self.server = server

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if kind is not None and issubclass(kind, (AssertionError, FlowstateError,
                                                  subprocess.TimeoutExpired)):
            tail = "\n".join(self.server.log.splitlines()[-40:])
            raise AssertionError(f"seed {self.seed} (FLOWSTATE_CRASH_SEED={self.seed} "
                                 f"replays its choices): {type(error).__name__}: {error}\n"
                                 f"-- the server's log ({self.server.log_path}), last "
                                 f"lines --\n{tail}") from error
        return False


def crash(server: Server, book: Book, rng: random.Random, targets: collections.Counter,
          target: str | None = None) -> None:
    """Kill -9 ``target`` (or a random one); return once the server serves again."""
    target = target or rng.choice(KILL_TARGETS)
    targets[target] += 1
    book.kill_window()
    if target in CHILDREN:
        killed = server.children[target]
        server.kill(target)
        server.wait_child_dead(target)
        book.after_kill()
        if rng.random() < 0.2 and server.wait_child_started(target, killed):
            # and again while it starts and recovers
            time.sleep(rng.uniform(0.0, 0.4))
            targets[f"{target} again while it recovers"] += 1
            book.kill_window()
            killed = server.children[target]
            server.kill(target)
            server.wait_child_dead(target)
            book.after_kill()
        if server.wait_child_back(target, killed):
            return
        # the supervisor gave up on it (it keeps dying, or no durability)
        targets["the supervisor stopped the server"] += 1
        server.wait_down()
    else:
        server.kill(target)
        server.wait_down()
        book.after_kill()
        if rng.random() < 0.2:
            # and once in a while again, while it starts and recovers
            server.launch()
            server.wait_started()
            time.sleep(rng.uniform(0.0, 0.4))
            again = rng.choice(("supervisor", "all") + CHILDREN)
            targets[f"{again} while the server starts"] += 1
            assert server.process.poll() is None, f"the server exited:\n{server.log}"
            book.kill_window()
            server.kill("all" if again in CHILDREN else again)
            server.wait_down()
            book.after_kill()
    server.start()


@contextlib.contextmanager
def started(tmp_path: Path, durability: str, seed: int):
    """A started server of ``durability``. A failure inside is re-raised
    with the seed and the server's log (Seeded); on the way out every
    server process is killed."""
    server = Server(tmp_path, durability, free_port_run())
    try:
        with Seeded(seed, server):
            server.start()
            yield server
    finally:
        server.cleanup()


@contextlib.contextmanager
def under_load(tmp_path: Path, durability: str, seed: int, **workload_options):
    """``started``, with the bank's accounts open and the workload running:
    yields (server, book, accounts, workload). On the way out the
    workload's threads are told to stop (a no-op after ``workload.stop()``)."""
    book = Book()
    accounts, missing = bank()
    try:
        with started(tmp_path, durability, seed) as server:
            open_accounts(book, server.address, accounts)
            workload = Workload(book, server.address, seed, accounts, missing,
                                **workload_options)
            workload.start()
            yield server, book, accounts, workload
    finally:
        book.stopping = True
        book.audit_done()


# -- the tests --------------------------------------------------------------------------

def test_acknowledged_writes_survive_kill_9(tmp_path):
    """Sync durability: 20+ kill -9 of random processes at random moments
    under load; after each one every acknowledged call is there, once, with
    the answer it got, and the retries of the outcome-unknown ones (same
    key) return the original outcome and apply exactly once."""
    seed = seed_from_environment()
    kills = int(os.environ.get("FLOWSTATE_CRASH_KILLS", "22"))
    print(f"seed {seed}, {kills} kills")
    rng = random.Random(seed)
    started = time.monotonic()
    with under_load(tmp_path, "sync", seed) as (server, book, accounts, workload):
        targets = collections.Counter()
        seen = collections.Counter()
        for _ in range(kills):
            time.sleep(rng.uniform(0.1, 0.7))      # a random moment under load
            crash(server, book, rng, targets)
            check_no_failures(book)
            seen.update(audit_now(book, server.address, durable=True)[0])
        # every call answered (the outcome-unknown ones by their retries)
        workload.stop()
        check_no_failures(book)
        final, before = audit_now(book, server.address, durable=True, final=True)
        # and a clean stop keeps it all
        assert server.stop() == 0
        server.start()
        after = read_state(server.address)
        assert after == before
        assert server.stop(signal.SIGTERM) == 0
        calls = book.counts()
        unknown = sum(1 for c in book.calls.values() if c.unknown)
        seen_applied = sum(1 for c in book.calls.values() if c.seen)
        print(f"{sum(targets[t] for t in KILL_TARGETS)} kills {dict(targets)} in "
              f"{time.monotonic() - started:.1f} s; {len(book.calls)} calls "
              f"{dict(calls)}; {unknown} had an outcome-unknown attempt ({seen_applied} "
              f"of them seen applied before their answer); audits saw {dict(seen)}; "
              f"final {dict(final)}")
        assert calls["ok"] > len(accounts)
        assert sum(targets[t] for t in KILL_TARGETS) == kills


def test_async_durability_recovers_a_consistent_prefix(tmp_path):
    """Async durability: after kill -9 the last acknowledged calls may be
    lost, but what is there is a consistent prefix: no partial transfer,
    nothing twice, balances that add up, and no call without the calls
    acknowledged on its partitions before it was sent."""
    seed = seed_from_environment()
    kills = 8
    print(f"seed {seed}")
    rng = random.Random(seed)
    with under_load(tmp_path, "async", seed, sync_threads=4,
                    async_tasks=3) as (server, book, _, workload):
        targets = collections.Counter()
        seen = collections.Counter()
        for _ in range(kills):
            time.sleep(rng.uniform(0.1, 0.6))
            crash(server, book, rng, targets)
            check_no_failures(book)
            seen.update(audit_now(book, server.address, durable=False)[0])
        workload.stop()
        check_no_failures(book)
        seen.update(audit_now(book, server.address, durable=False, final=True)[0])
        print(f"kills {dict(targets)}; {len(book.calls)} calls {dict(book.counts())}; "
              f"audits saw {dict(seen)}")
        assert server.stop() == 0


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_durability_off_starts_empty(tmp_path, how):
    """Without durability a restart starts empty (and a dead child stops
    the server: its rows could not be recovered)."""
    seed = seed_from_environment()
    rng = random.Random(seed)
    with started(tmp_path, "off", seed) as server:
        book = Book()
        accounts, _ = bank(2)
        open_accounts(book, server.address, accounts)
        with Client(server.address, timeout=CALL_TIMEOUT) as c:
            assert c.call("Deposit", accounts[0], 5, 1_000_000,
                          idempotency_key="d").result == [2, INITIAL_BALANCE + 5]
            assert c.call("Transfer", accounts[0], accounts[-1], 7, 1_000_001,
                          idempotency_key="t").result[1] == INITIAL_BALANCE - 2
        assert len(read_state(server.address)["accounts"]) == len(accounts)
        if how == "kill":
            target = rng.choice(KILL_TARGETS)
            server.kill(target)
            assert server.wait_down() != 0 or target in ("supervisor", "all")
        else:
            assert server.stop() == 0
        server.start()
        state = read_state(server.address)
        assert (state["accounts"], state["ledger"], state["by_account"],
                state["by_kind"]) == ([], [], [], [])
        assert not (server.data / "log").exists()
        # the keys are forgotten too: the same key runs the call again
        open_accounts(Book(), server.address, accounts[:1])
        with Client(server.address, timeout=CALL_TIMEOUT) as c:
            assert c.call("Deposit", accounts[0], 5, 1_000_000,
                          idempotency_key="d").result == [2, INITIAL_BALANCE + 5]
        assert server.stop() == 0


def test_sync_durability_survives_a_clean_stop(tmp_path):
    """SIGINT (then SIGTERM) under load, then start: every acknowledged call
    is there (the drain answers or drops the calls in flight; retried, they
    apply once); stopped at rest, the state after the start is the state
    before."""
    seed = seed_from_environment()
    print(f"seed {seed}")
    with under_load(tmp_path, "sync", seed, sync_threads=4,
                    async_tasks=2) as (server, book, _, workload):
        for sig in (signal.SIGINT, signal.SIGTERM):
            time.sleep(0.5)
            book.kill_window()
            assert server.stop(sig) == 0
            book.after_kill()
            server.start()
            check_no_failures(book)
            audit_now(book, server.address, durable=True)
        workload.stop()
        check_no_failures(book)
        _, before = audit_now(book, server.address, durable=True, final=True)
        assert server.stop() == 0
        server.start()
        assert read_state(server.address) == before
        assert "recovered" in server.log
        assert server.stop() == 0


# -- a process killed inside a multi-partition transaction -----------------------------

def held_transfer(server: Server, book: Book, folder: Path, source: int, target: int,
                  amount: int) -> tuple[Call, threading.Thread, dict]:
    """Start a HeldTransfer in a thread; return once its target's half is
    written (it then waits for ``folder``/release)."""
    folder.mkdir()
    call = book.new("HeldTransfer", [source, target, amount, 0, str(folder), 60], call_id_at=3)
    outcome = {}

    def run():
        with Client(server.address, timeout=CALL_TIMEOUT) as c:
            book.sent(call)
            try:
                outcome["response"] = c.call(call.proc, *call.params, idempotency_key=call.key)
            except FlowstateError as e:
                outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: (folder / "written").exists() or outcome, 60,
               "the transfer to write its target's half")
    assert not outcome, outcome
    return call, thread, outcome


def expected_rows_held(call: Call) -> list[tuple]:
    source, target, amount = call.params[:3]
    return [(source, TRANSFER_OUT, -amount), (target, TRANSFER_IN, amount)]


def test_partitions_in_doubt_are_released_when_the_coordinator_restarts(tmp_path):
    """The coordinator killed inside a multi-partition transaction leaves the
    partitions holding, in doubt; the restarted coordinator tells them the
    outcome at once (not only at the next multi-partition call), so
    single-partition calls are answered again; the transaction, retried
    with its key, applies once."""
    book = Book()
    a, b = owned_by(0, 1000, 1)[0], owned_by(1, 1000, 1)[0]
    with started(tmp_path, "sync", 0) as server:
        open_accounts(book, server.address, [a, b])
        folder = tmp_path / "held"
        call, thread, outcome = held_transfer(server, book, folder, a, b, 10)
        old = server.children["coordinator"]
        server.kill("coordinator")
        thread.join(60)
        assert isinstance(outcome.get("error"), ConnectionLostError), outcome
        assert server.wait_child_started("coordinator", old)
        assert server.wait_child_back("coordinator", old)
        with Client(server.address, timeout=20) as c:
            # no multi-partition call in between: both partitions answer
            assert c.call("Deposit", a, 1, 1_000_000).result == [2, INITIAL_BALANCE + 1]
            assert c.call("Deposit", b, 1, 1_000_001).result == [2, INITIAL_BALANCE + 1]
            (folder / "release").touch()
            # never decided, so rolled back: the retry runs it, once
            result = c.call(call.proc, *call.params, idempotency_key=call.key).result
            assert result == [3, INITIAL_BALANCE + 1 - 10, 3, INITIAL_BALANCE + 1 + 10]
            assert c.call(call.proc, *call.params, idempotency_key=call.key).result == result
        state = read_state(server.address)
        problems = []
        check_well_formed(state, problems, at_rest=True)
        assert not problems, problems
        assert sorted((r[0], r[3], r[4]) for r in state["ledger"]
                      if r[2] == call.id) == sorted(expected_rows_held(call))
        assert "was in doubt about transaction" in server.log
        assert server.stop() == 0


def test_a_partition_restarted_inside_a_transaction_applies_its_writes(tmp_path):
    """Partition 1 is killed once the transfer wrote its half there; it is
    restarted and recovers while the transfer still runs. However the
    transfer ends, the state must agree with its answer: both halves if it
    was acknowledged, neither if not."""
    book = Book()
    a, b = owned_by(0, 1000, 1)[0], owned_by(1, 1000, 1)[0]
    with started(tmp_path, "sync", 0) as server:
        open_accounts(book, server.address, [a, b])
        folder = tmp_path / "held"
        call, thread, outcome = held_transfer(server, book, folder, a, b, 10)
        old = server.children["partition 1"]
        server.kill("partition 1")
        assert server.wait_child_started("partition 1", old)
        assert server.wait_child_back("partition 1", old)
        (folder / "release").touch()
        thread.join(60)
        assert outcome
        state = read_state(server.address)
        rows = sorted((r[0], r[3], r[4]) for r in state["ledger"] if r[2] == call.id)
        if "response" in outcome:
            assert rows == sorted(expected_rows_held(call)), \
                f"acknowledged {outcome['response'].result}, but applied as {rows}"
        else:
            assert rows == [], f"answered {outcome['error']!r}, but applied as {rows}"
        problems = []
        check_well_formed(state, problems, at_rest=True)
        assert not problems, problems
        assert server.stop() == 0
