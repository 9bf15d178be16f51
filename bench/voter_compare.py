#!/usr/bin/env python3
"""Voter on Flowstate and on Redis, side by side, in one run.

    python bench/voter_compare.py                         # 1 and 2 partitions, 4x64 and 1x1
    python bench/voter_compare.py --partitions 2 --duration 10
    python bench/voter_compare.py --redis-client redis-py,resp --shapes 4x64,1x16,1x1
    python bench/voter_compare.py --flowstate localhost:21212 --redis localhost:6379
    python bench/voter_compare.py --help

Every run drives one system with the same workload: one PhoneCallGenerator
(flowstate.procedures.voter.phonecalls) with the same seed for the same
shape, C connections x N calls in flight, closed loop (or, for a shape
CxN@R, an open loop at R calls/s with at most C x N in flight: see
flowstate.voterbench.Pacer), ``--warmup`` seconds not counted, then
``--duration`` seconds measured.

* Flowstate: ``flowstate.voterbench.run`` (what ``flowstate voter`` runs):
  C AsyncClients, ``call_with_callback``, client affinity on. Unless
  ``--flowstate`` names a running server, each run gets a fresh server
  (``flowstate serve --port 0 --partitions P`` with a temporary data
  directory), stopped after the run.
* Redis: the Redis Function in bench/redis_voter.lua (``FCALL vote 0 phone
  contestant max``), one redis-server started here (``--port P --save ''
  --appendonly no``) unless ``--redis`` names one; the vote keys are
  deleted before every run so each starts empty like Flowstate. Clients
  (``--redis-client``):
    redis-py  redis-py asyncio (hiredis parser when installed), one socket
              per connection; N > 1 sends N FCALLs as one pipeline and waits
              for all of them, so a call's latency is its batch's round trip
              (as /work/shared/peers/loadgen.py does);
    resp      RESP written by hand on an asyncio Protocol, replies parsed by
              hiredis: N calls in flight per socket, each answer sends the
              next call, per-call latency -- the same loop as Flowstate's
              client, and a far cheaper client than redis-py.

CPU: user + system time from /proc/<pid>/stat over the measured window, in
% of one core, for the server's processes (Flowstate: the supervisor and
its children; Redis: redis-server) and for this process (the client);
"other" is the machine's busy time (/proc/stat) that neither is charged
for (kernel threads, interrupts, other work), "steal" the hypervisor's.
Client and servers share the machine: on a small VM the client's CPU caps
the figures, so read the CPU columns next to the rates. "CPU speed" times
a fixed pure-Python workload around each run (bench/machine.py,
cpu_probe) against its fastest in the whole run: a shared VM's
neighbours slow it down without showing up as load or steal. "fsync ms"
is the mean of a Flowstate server's group-commit fsyncs over the run
(from @Statistics): the shared disk is the other thing that swings.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import functools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flowstate.procedures.voter.phonecalls import PhoneCallGenerator
from flowstate.procedures.voter.voter import AREA_CODES, DEFAULT_CONTESTANTS
from flowstate.voterbench import (Pacer, cpu_seconds, latency_summary, machine_cpu,
                                  machine_figures, process_tree)
from flowstate.voterbench import run as run_flowstate
from flowstate.cli import positive_int
from machine import cpu_model, cpu_probe, git_revision, load_average

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LUA = HERE / "redis_voter.lua"
REDIS_CLIENTS = ("redis-py", "resp")
VOTE_KEYS = ("voter:votes", "voter:votes_by_phone", "voter:votes_by_contestant_state")
_READY = re.compile(r"ready: application \S+ on (\S+):(\d+) with (\d+) partition")
_HIST_BUCKETS = 100_000            # 1 us buckets up to 100 ms, as flowstate.voterbench
# FCALL vote 0 <phone> <contestant> <max>, the max already encoded as a bulk string
_FCALL_VOTE = b"*6\r\n$5\r\nFCALL\r\n$4\r\nvote\r\n$1\r\n0\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b"


# -- servers ------------------------------------------------------------------------------

class FlowstateServer:
    """``python -m flowstate serve --port 0`` with a temporary data directory."""

    def __init__(self, partitions: int, durability: str = "off", timeout: float = 60.0):
        self.dir = tempfile.mkdtemp(prefix="voter-compare-", dir=DATA_ROOT)
        self.log_path = Path(self.dir) / "server.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowstate", "serve", "--port", "0",
             "--partitions", str(partitions), "--data", str(Path(self.dir) / "data"),
             "--durability", durability, "--snapshot-interval", "0"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            match = _READY.search(self.log_path.read_text())
            if match:
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"flowstate serve did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        self.address = f"{match.group(1)}:{match.group(2)}"
        self.partitions = int(match.group(3))
        self.pids = process_tree(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def group_fsync_figures(address: str) -> dict:
    """The group commits' fsyncs of a server started for one run (so its
    warm-up and measured window), from @Statistics: their mean duration
    and records per fsync over every partition; {} without a log."""
    from flowstate.client import Client
    with Client(address) as client:
        partitions = client.call("@Statistics").result["partitions"]
    logs = [p["command_log"] for p in partitions
            if p.get("command_log") and p["command_log"].get("fsyncs")]
    fsyncs = sum(log["fsyncs"] for log in logs)
    if not fsyncs:
        return {}
    return {"fsync_ms_mean": sum(log["fsync_ms_mean"] * log["fsyncs"] for log in logs) / fsyncs,
            "records_per_fsync": sum(log["records"] for log in logs) / fsyncs}


#: Where servers started here keep their data: the same disk for both.
DATA_ROOT = None

#: The Redis persistence that matches each Flowstate durability mode.
REDIS_EQUIVALENT = {"off": "no", "async": "everysec", "sync": "always"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """``redis-server --port P --save '' --appendonly no`` on 127.0.0.1."""

    def __init__(self, binary: str, appendfsync: str = "no", timeout: float = 10.0):
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="voter-compare-redis-", dir=DATA_ROOT)
        aof = (["--appendonly", "no"] if appendfsync == "no" else
               ["--appendonly", "yes", "--appendfsync", appendfsync])
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *aof, "--dir", self.dir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        self.host = "127.0.0.1"
        self.pids = [self.process.pid]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- Redis: setup and the two clients --------------------------------------------------

def redis_setup(host: str, port: int, contestants: int) -> None:
    """Load the function, the contestants and the area codes; empty the votes."""
    import redis
    r = redis.Redis(host=host, port=port)
    try:
        r.function_load(LUA.read_text(), replace=True)
        names = [n.strip() for n in DEFAULT_CONTESTANTS.split(",")][:contestants]
        r.delete("voter:contestants", "voter:area_code_state", *VOTE_KEYS)
        r.hset("voter:contestants", mapping={str(i + 1): n for i, n in enumerate(names)})
        r.hset("voter:area_code_state", mapping={str(code): st for code, st in AREA_CODES})
    finally:
        r.close()


def redis_reset_votes(host: str, port: int) -> None:
    import redis
    r = redis.Redis(host=host, port=port)
    try:
        r.delete(*VOTE_KEYS)
    finally:
        r.close()


def redis_results_total(host: str, port: int) -> int:
    import redis
    r = redis.Redis(host=host, port=port)
    try:
        return sum(int(v) for v in r.hvals("voter:votes_by_contestant_state"))
    finally:
        r.close()


class _Counters:
    """Cumulative outcome, error and latency counters, read at the window's edges."""

    def __init__(self):
        self.hist = [0] * _HIST_BUCKETS
        self.overflow: list[float] = []
        self.outcomes = [0, 0, 0, 0]
        self.errors: collections.Counter = collections.Counter()
        self.first_errors: list[str] = []
        self.pacer: Pacer | None = None           # open loop

    def error(self, error) -> None:
        self.errors[type(error).__name__] += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{type(error).__name__}: {error}")

    def snapshot(self, server_pids) -> dict:
        """The counters now; cheap (no numpy), as it runs among the calls."""
        pacer = self.pacer
        return {"time": time.perf_counter(), "cpu": time.process_time(),
                "server_cpu": cpu_seconds(server_pids) if server_pids else None,
                "machine": machine_cpu(),
                "hist": self.hist.copy(), "overflow": len(self.overflow),
                "outcomes": list(self.outcomes), "errors": collections.Counter(self.errors),
                "waiting": len(pacer.backlog) if pacer is not None else 0,
                "lags": len(pacer.lags) if pacer is not None else 0}


class _RespConnection(asyncio.Protocol):
    """One Redis socket with many FCALLs in flight; replies come in order."""

    def __init__(self, counters: _Counters):
        import hiredis
        self.reader = hiredis.Reader()
        self.waiting: collections.deque = collections.deque()   # (callback, sent at)
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.transport = None
        self.counters = counters
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def vote(self, callback, phone: int, contestant: int, max_votes: bytes) -> None:
        p, c = b"%d" % phone, b"%d" % contestant
        self.out.append(_FCALL_VOTE % (len(p), p, len(c), c, max_votes))
        self.waiting.append((callback, time.perf_counter()))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def data_received(self, data):
        reader = self.reader
        reader.feed(data)
        now = time.perf_counter()
        popleft = self.waiting.popleft
        while True:
            reply = reader.gets()
            if reply is False:
                break
            callback, sent = popleft()
            callback(reply, now - sent)

    def connection_lost(self, exc):
        self.transport = None
        waiting, self.waiting = self.waiting, collections.deque()
        error = ConnectionError(f"the Redis connection was lost ({exc})")
        for callback, _ in waiting:
            callback(error, 0.0)


async def _redis_load(kind: str, host: str, port: int, *, connections: int, inflight: int,
                      generator: PhoneCallGenerator, max_votes: int, warmup: float,
                      duration: float, server_pids, progress: bool,
                      rate: float | None = None) -> dict:
    import numpy as np                       # now: not in the middle of the load  # noqa: F401
    if rate is not None and kind != "resp":
        raise ValueError("only the resp client has an open loop (--shapes CxN@R)")
    counters = _Counters()
    hist, overflow, outcomes = counters.hist, counters.overflow, counters.outcomes
    next_call = generator.next_call
    running = True
    tasks: list[asyncio.Task] = []
    closers = []

    def record(code, elapsed) -> None:
        try:
            hist[int(elapsed * 1e6)] += 1
        except IndexError:
            overflow.append(elapsed)
        try:
            outcomes[code] += 1
        except (IndexError, TypeError):
            outcomes[3] += 1

    if kind == "resp":
        loop = asyncio.get_running_loop()
        encoded_max = b"$%d\r\n%d\r\n" % (len(str(max_votes)), max_votes)
        outstanding = 0
        done = loop.create_future()

        def finished_one():
            nonlocal outstanding
            outstanding -= 1
            if outstanding == 0 and not running and not done.done():
                done.set_result(None)

        def slot(conn):
            vote = conn.vote

            def on_reply(reply, elapsed):
                if isinstance(reply, int):
                    try:
                        hist[int(elapsed * 1e6)] += 1
                    except IndexError:
                        overflow.append(elapsed)
                    try:
                        outcomes[reply] += 1
                    except IndexError:
                        outcomes[3] += 1
                else:
                    counters.error(reply)
                    if isinstance(reply, ConnectionError):
                        finished_one()
                        return
                if running:
                    phone, contestant = next_call()
                    vote(on_reply, phone, contestant, encoded_max)
                else:
                    finished_one()
            return on_reply

        conns = []
        for _ in range(connections):
            _, conn = await loop.create_connection(lambda: _RespConnection(counters), host, port)
            conns.append(conn)
            closers.append(conn.transport.close)

        def on_reply_paced(due, reply, elapsed):
            if isinstance(reply, int):
                record(reply, time.perf_counter() - due)
            else:
                counters.error(reply)
            finished_one()
            pacer.answered()

        turn = 0

        def send_paced(due) -> bool:
            nonlocal turn, outstanding
            turn += 1
            conn = conns[turn % len(conns)]
            if conn.transport is None:
                counters.error(ConnectionError("the Redis connection was lost"))
                return False
            phone, contestant = next_call()
            conn.vote(functools.partial(on_reply_paced, due), phone, contestant, encoded_max)
            outstanding += 1
            return True

        pacer = counters.pacer = (Pacer(rate, connections * inflight, send_paced)
                                  if rate is not None else None)

        def start():
            nonlocal outstanding
            if pacer is not None:
                pacer.start()
                return
            for conn in conns:
                on_reply = slot(conn)
                for _ in range(inflight):
                    phone, contestant = next_call()
                    conn.vote(on_reply, phone, contestant, encoded_max)
                    outstanding += 1

        def stop():
            nonlocal running
            running = False
            if pacer is not None:
                pacer.stop()
            if outstanding == 0 and not done.done():
                done.set_result(None)

        async def drained():
            await done
    else:                                          # redis-py
        import redis.asyncio as aredis

        async def worker(r):
            while running:
                calls = [next_call() for _ in range(inflight)]
                started = time.perf_counter()
                try:
                    if inflight == 1:
                        replies = [await r.fcall("vote", 0, calls[0][0], calls[0][1], max_votes)]
                    else:
                        pipe = r.pipeline(transaction=False)
                        for phone, contestant in calls:
                            pipe.fcall("vote", 0, phone, contestant, max_votes)
                        replies = await pipe.execute(raise_on_error=False)
                except Exception as e:               # noqa: BLE001 - counted, reported
                    for _ in calls:
                        counters.error(e)
                    await asyncio.sleep(0.01)
                    continue
                elapsed = time.perf_counter() - started
                for reply in replies:
                    if isinstance(reply, Exception):
                        counters.error(reply)
                    else:
                        record(int(reply), elapsed)

        clients = []
        for _ in range(connections):
            r = aredis.Redis(host=host, port=port, max_connections=1)
            await r.ping()
            clients.append(r)
            closers.append(r.aclose)

        def start():
            for r in clients:
                tasks.append(asyncio.ensure_future(worker(r)))

        def stop():
            nonlocal running
            running = False

        async def drained():
            await asyncio.gather(*tasks, return_exceptions=True)

    ticker = asyncio.ensure_future(_progress(counters)) if progress else None
    start()
    try:
        await asyncio.sleep(warmup)
        first = counters.snapshot(server_pids)
        await asyncio.sleep(duration)
        last = counters.snapshot(server_pids)
        stop()
        try:
            await asyncio.wait_for(drained(), 10.0)
        except asyncio.TimeoutError:
            counters.errors["NotAnsweredAtEnd"] += 1
    finally:
        if ticker is not None:
            ticker.cancel()
            sys.stdout.write("\r" + " " * 72 + "\r")
        for t in tasks:
            t.cancel()
        for close in closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result
    return _figures(counters, first, last, server_pids)


async def _progress(counters: _Counters) -> None:
    started = time.perf_counter()
    last = sum(counters.outcomes)
    while True:
        await asyncio.sleep(1.0)
        now = sum(counters.outcomes)
        elapsed = time.perf_counter() - started
        sys.stdout.write(f"\r  {elapsed:5.1f} s  {now - last:>9,} calls/s   ")
        sys.stdout.flush()
        last = now


def _figures(counters: _Counters, first: dict, last: dict, server_pids) -> dict:
    elapsed = last["time"] - first["time"]
    outcomes = [b - a for a, b in zip(first["outcomes"], last["outcomes"])]
    errors = last["errors"] - first["errors"]
    calls = sum(outcomes) + sum(errors.values())
    import numpy as np
    latency = latency_summary(np.array(last["hist"], dtype=np.int64)
                              - np.array(first["hist"], dtype=np.int64),
                              counters.overflow[first["overflow"]:last["overflow"]])
    server_cpu = (round(100.0 * (last["server_cpu"] - first["server_cpu"]) / elapsed, 1)
                  if server_pids else None)
    return {
        "duration_s": round(elapsed, 3),
        "calls": calls,
        "calls_per_s": round(calls / elapsed, 1),
        "votes_per_s": round(outcomes[0] / elapsed, 1),
        **latency,
        "outcomes": dict(zip(("accepted", "invalid_contestant", "over_limit", "other"), outcomes)),
        "errors": dict(errors),
        "failed": sum(errors.values()),
        "total_accepted": counters.outcomes[0],
        "total_failed": sum(counters.errors.values()),
        "first_errors": counters.first_errors,
        "client_cpu_percent": round(100.0 * (last["cpu"] - first["cpu"]) / elapsed, 1),
        "server_cpu_percent": server_cpu,
        "waiting_to_send_at_end": last["waiting"],
        **(counters.pacer.lag_figures(first["lags"], last["lags"]) if counters.pacer else {}),
        **machine_figures(first["machine"], last["machine"], elapsed,
                           (last["cpu"] - first["cpu"]) + ((last["server_cpu"] - first["server_cpu"])
                                                           if server_pids else 0.0)),
    }



def run_redis(kind: str, host: str, port: int, **options) -> dict:
    try:
        import uvloop
        return uvloop.run(_redis_load(kind, host, port, **options))
    except ImportError:
        return asyncio.run(_redis_load(kind, host, port, **options))


# -- the comparison -------------------------------------------------------------------

def _shape(text: str) -> tuple[int, int, float | None]:
    """CxN (closed loop) or CxN@RATE (open loop at RATE calls/s, at most
    C x N in flight; RATE may end in k)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*(?:@\s*(\d+(?:\.\d+)?)\s*([kK]?))?\s*",
                         text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1 or (
            match.group(3) is not None and not float(match.group(3)) > 0):
        raise argparse.ArgumentTypeError(
            f"a shape is CONNECTIONSxINFLIGHT (closed loop, e.g. 4x64) or "
            f"CONNECTIONSxINFLIGHT@CALLS_PER_S (open loop, e.g. 4x64@30k); got {text!r}")
    rate = None
    if match.group(3) is not None:
        rate = float(match.group(3)) * (1000 if match.group(4) else 1)
    return int(match.group(1)), int(match.group(2)), rate


def shape_label(connections: int, inflight: int, rate: float | None, times: str = "×") -> str:
    label = f"{connections}{times}{inflight}"
    if rate is not None:
        label += f"@{rate / 1000:g}k" if rate >= 1000 else f"@{rate:g}"
    return label


def _list(kind, allowed=None):
    def parse(text: str):
        items = [kind(t) for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("an empty list")
        if allowed is not None:
            for item in items:
                if item not in allowed:
                    raise argparse.ArgumentTypeError(
                        f"{item!r} is not one of {', '.join(allowed)}")
        return items
    return parse


def machine_info() -> list[tuple[str, str]]:
    model, git, load = cpu_model(), git_revision(mark_uncommitted=True), load_average()
    versions = [f"CPython {platform.python_version()}"]
    try:
        import uvloop
        versions.append(f"uvloop {uvloop.__version__}")
    except ImportError:
        versions.append("asyncio (no uvloop)")
    try:
        import redis
        versions.append(f"redis-py {redis.__version__}")
    except ImportError:
        pass
    try:
        import hiredis
        versions.append(f"hiredis {hiredis.__version__}")
    except ImportError:
        pass
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", f"{model}, {os.cpu_count()} cores"),
        ("os", platform.platform()),
        ("python", ", ".join(versions)),
        ("git", git),
        ("load", f"{load} (load average at start; other work on the machine skews figures)"),
        ("command", " ".join(["python", *sys.argv])),
    ]


def _redis_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        return out.split(" sha=")[0].strip()
    except OSError:
        return "unknown"


def _fmt_ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _fmt_pct(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _key(r: dict) -> tuple:
    return (r["system"], r["client"], r.get("partitions"), r.get("durability"),
            r["connections"], r["inflight"], r.get("rate"))


def _shape_of(r: dict) -> tuple:
    return r["connections"], r["inflight"], r.get("rate")


def _median(values: list):
    values = sorted(values)
    return values[len(values) // 2] if len(values) % 2 else (
        (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2)


def _ratios(rows: list[dict], redis_kinds: list[str], per_round: bool = False) -> dict:
    """Per run key: the median over rounds of calls/s against Redis (per
    client kind) and against Flowstate off, each taken within a round (with
    ``per_round``: the list of the rounds' ratios instead)."""
    by_round: dict = {}
    for r in rows:
        by_round.setdefault(r.get("round", 0), []).append(r)
    found: dict = {}
    for runs in by_round.values():
        redis = {(_shape_of(r), r["client"], r.get("durability")):
                 r["calls_per_s"] for r in runs if r["system"] == "redis"}
        off = {(r["partitions"], _shape_of(r)): r["calls_per_s"]
               for r in runs if r["system"] == "flowstate" and r.get("durability") == "off"}
        for r in runs:
            if r["system"] != "flowstate":
                continue
            ratios = found.setdefault(_key(r), {})
            for kind in redis_kinds:
                base = redis.get((_shape_of(r), kind, REDIS_EQUIVALENT.get(r.get("durability"))))
                if base is None and len({k[2] for k in redis}) == 1:     # one running Redis
                    base = next((v for k, v in redis.items()
                                 if k[:2] == (_shape_of(r), kind)), None)
                if base:
                    ratios.setdefault(kind, []).append(r["calls_per_s"] / base)
            base = off.get((r["partitions"], _shape_of(r)))
            if base:
                ratios.setdefault("off", []).append(r["calls_per_s"] / base)
    if per_round:
        return found
    return {key: {k: _median(v) for k, v in ratios.items()} for key, ratios in found.items()}


def median_runs(rows: list[dict]) -> list[dict]:
    """One row per system: its run with the median calls/s, with the range."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(_key(r), []).append(r)
    chosen = []
    for runs in groups.values():
        ordered = sorted(runs, key=lambda r: r["calls_per_s"])
        row = dict(ordered[(len(ordered) - 1) // 2])
        row["calls_per_s_range"] = (ordered[0]["calls_per_s"], ordered[-1]["calls_per_s"])
        row["rounds"] = len(runs)
        chosen.append(row)
    return chosen


def print_table(rows: list[dict], redis_kinds: list[str], rounds: int = 1) -> None:
    ratios = _ratios(rows, redis_kinds)
    by_round = _ratios(rows, redis_kinds, per_round=True)
    with_off = any("off" in r and len({k[3] for k in ratios}) > 1 for r in ratios.values())
    probes = [r["cpu_probe_ms"] for r in rows if r.get("cpu_probe_ms")]
    fastest = min(probes, default=None)
    speeds_by_round: dict = {}
    for r in rows:
        if r.get("cpu_probe_ms"):
            speeds_by_round.setdefault(r.get("round", 0), []).append(fastest / r["cpu_probe_ms"])
    rows = median_runs(rows)
    headers = ["system", "client", "C×N", "calls/s"]
    headers += ["range"] if rounds > 1 else []
    headers += ["p50 ms", "p99 ms", "p99.9 ms", "server CPU %", "calls/server CPU-s",
                "client CPU %", "other CPU %", "steal %", "CPU speed %", "fsync ms",
                "failed"]
    headers += ["of off"] if with_off else []
    headers += [f"vs {k}" for k in redis_kinds]
    table = []
    for r in rows:
        system = (f"redis aof={r.get('durability')}" if r["system"] == "redis" else
                  f"flowstate P={r['partitions']} {r.get('durability') or ''}".rstrip())
        line = [system, r["client"], shape_label(*_shape_of(r)),
                f"{r['calls_per_s']:,.0f}"]
        if rounds > 1:
            low, high = r["calls_per_s_range"]
            line.append(f"{low / 1000:,.0f}-{high / 1000:,.0f}k")
        line += [_fmt_ms(r["p50_ms"]), _fmt_ms(r["p99_ms"]),
                 _fmt_ms(r["p999_ms"]), _fmt_pct(r["server_cpu_percent"]),
                 (f"{r['calls_per_s'] * 100 / r['server_cpu_percent']:,.0f}"
                  if r["server_cpu_percent"] else "-"),
                 _fmt_pct(r["client_cpu_percent"]), _fmt_pct(r.get("other_cpu_percent")),
                 _fmt_pct(r.get("steal_percent")),
                 _fmt_pct(fastest * 100 / r["cpu_probe_ms"] if r.get("cpu_probe_ms") else None),
                 f"{r['fsync_ms_mean']:.2f}" if r.get("fsync_ms_mean") else "-",
                 f"{r['failed']:,}"]
        mine = ratios.get(_key(r), {})
        if with_off:
            line.append(f"{mine['off'] * 100:.0f}%" if "off" in mine else "")
        for kind in redis_kinds:
            line.append(f"{mine[kind]:.2f}x" if kind in mine else "")
        table.append(line)
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(headers)]
    left = {0, 1, 2}
    print("  ".join(h.ljust(w) if i in left else h.rjust(w)
                    for i, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for line in table:
        print("  ".join(c.ljust(w) if i in left else c.rjust(w)
                        for i, (c, w) in enumerate(zip(line, widths))))
    if rounds > 1 and with_off:
        print()
        print("of off, round by round (the spread the median is taken from):")
        for key, found in by_round.items():
            if "off" in found and key[3] != "off":
                label = shape_label(*key[4:], "x")
                print(f"  P={key[2]} {key[3]} {label}: "
                      + ", ".join(f"{v * 100:.0f}%" for v in found["off"]))
    if rounds > 1 and speeds_by_round:
        print("CPU speed, round by round (the probe around each run, the run's fastest = "
              "100%): " + ", ".join(f"{sum(v) * 100 / len(v):.0f}%"
                                    for _, v in sorted(speeds_by_round.items())))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/voter_compare.py",
        description=__doc__.split("\n\n")[0] + " Starts the servers itself unless told where "
                    "they run; prints a side-by-side table and Flowstate/Redis ratios.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=_list(positive_int), default=[1, 2], metavar="P[,P]",
                        help="partition counts of the Flowstate servers started (default: 1,2)")
    parser.add_argument("--shapes", type=_list(_shape), default=[(4, 64, None), (1, 1, None)],
                        metavar="CxN[@R][,...]",
                        help="connections x calls in flight per connection, a closed loop "
                             "(default: 4x64,1x1); CxN@R: an open loop at R calls/s (e.g. "
                             "4x64@30k), at most CxN in flight, latency from when each call "
                             "was due (Flowstate, and Redis with --redis-client resp)")
    parser.add_argument("--duration", type=float, default=10.0, metavar="S",
                        help="measured seconds per run (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0, metavar="S",
                        help="seconds of load before measuring (default: %(default)s)")
    parser.add_argument("--contestants", type=int, default=6, metavar="N",
                        help="contestants (default: %(default)s)")
    parser.add_argument("--max-votes", type=int, default=2, metavar="N",
                        help="votes allowed per phone (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, metavar="N",
                        help="seed of the call generator; shape i uses seed+i on every "
                             "system (default: %(default)s)")
    parser.add_argument("--redis-client", type=_list(str, REDIS_CLIENTS), default=["redis-py"],
                        metavar="KIND[,KIND]",
                        help="Redis client(s): redis-py (pipelines, batch latency) and/or "
                             "resp (per-call closed loop over hiredis) (default: redis-py)")
    parser.add_argument("--durability", type=_list(str, ["off", "async", "sync"]),
                        default=["off"], metavar="MODE[,MODE]",
                        help="Flowstate --durability of the servers started: off, async "
                             "and/or sync (default: off)")
    parser.add_argument("--redis-aof", type=_list(str, ["no", "everysec", "always"]),
                        default=None, metavar="MODE[,MODE]",
                        help="Redis persistence per run: no (appendonly no), everysec, always "
                             "(appendfsync); default: the equivalents of --durability "
                             "(off: no, async: everysec, sync: always)")
    parser.add_argument("--data-root", metavar="DIR", default=None,
                        help="where the servers started here keep their data (default: the "
                             "system's temporary folder)")
    parser.add_argument("--flowstate", metavar="HOST:PORT", default=None,
                        help="use this running Flowstate server instead of starting servers "
                             "(--partitions is then ignored)")
    parser.add_argument("--flowstate-pid", type=int, default=None, metavar="PID",
                        help="supervisor pid of the --flowstate server, for its CPU")
    parser.add_argument("--redis", metavar="HOST:PORT", default=None,
                        help="use this running Redis (>= 7) instead of starting redis-server; "
                             "its voter:* keys are overwritten")
    parser.add_argument("--redis-pid", type=int, default=None, metavar="PID",
                        help="pid of the --redis server, for its CPU")
    parser.add_argument("--no-redis", action="store_true", help="run Flowstate only")
    parser.add_argument("--no-flowstate", action="store_true", help="run Redis only")
    parser.add_argument("--rounds", type=positive_int, default=1, metavar="N",
                        help="run every system N times, interleaved (round 1 of each, then "
                             "round 2, ...), and report the run with the median calls/s; "
                             "ratios are the median of each round's ratio, so that a shared, "
                             "noisy machine's drift cancels out (default: 1)")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="write the machine info and every run's figures as JSON to FILE")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be more than 0 and --warmup not negative")

    global DATA_ROOT
    DATA_ROOT = args.data_root
    info = machine_info()
    progress = sys.stdout.isatty()

    # Redis: which clients can run, and where the server is
    redis_kinds = [] if args.no_redis else list(args.redis_client)
    redis_host = redis_port = None
    redis_pids = []
    if redis_kinds:
        missing = []
        try:
            import redis  # noqa: F401
        except ImportError:
            missing.append("redis-py (pip install 'redis[hiredis]')")
        if "resp" in redis_kinds:
            try:
                import hiredis  # noqa: F401
            except ImportError:
                print("voter_compare: the resp client needs hiredis (pip install hiredis); "
                      "skipping it", file=sys.stderr)
                redis_kinds.remove("resp")
        binary = shutil.which("redis-server")
        if args.redis is None and binary is None:
            missing.append("redis-server (apt-get install -y redis-server)")
        if missing:
            print(f"voter_compare: Redis is skipped, missing {' and '.join(missing)}; "
                  f"running Flowstate only", file=sys.stderr)
            redis_kinds = []
    redis_modes = list(args.redis_aof or dict.fromkeys(REDIS_EQUIVALENT[d]
                                                       for d in args.durability))
    if redis_kinds:
        if args.redis:
            host, _, port = args.redis.rpartition(":")
            redis_host, redis_port = host or "127.0.0.1", int(port)
            redis_pids = process_tree(args.redis_pid) if args.redis_pid else []
            redis_modes = ["(running server)"]
            info.append(("redis", f"{args.redis} (running server)"))
        else:
            info.append(("redis", f"{_redis_version(binary)}, started here per run: "
                                  f"--save '' and appendonly no / appendfsync "
                                  f"{'/'.join(m for m in redis_modes if m != 'no')}"))

    redis_address = (redis_host, redis_port, redis_pids)       # a running server's, if any
    flowstate_runs = [] if args.no_flowstate else (
        [(None, None)] if args.flowstate else
        [(p, d) for d in args.durability for p in args.partitions])

    print("Voter: Flowstate and Redis side by side")
    for key, value in info:
        print(f"  {key:8} {value}")
    print(f"  runs     warm-up {args.warmup:g} s, measured {args.duration:g} s; "
          f"{args.contestants} contestants, max {args.max_votes} votes per phone; "
          f"seed {args.seed} + shape index")
    print()

    rows: list[dict] = []
    status = 0
    common = dict(warmup=args.warmup, duration=args.duration, max_votes=args.max_votes)
    def redis_runs(mode, shape, seed, round_number) -> None:
        connections, inflight, rate = shape
        label = shape_label(connections, inflight, rate, "x")
        redis_server = None
        redis_host, redis_port, redis_pids = redis_address
        if not args.redis:
            redis_server = RedisServer(binary, appendfsync=mode)
            redis_host, redis_port, redis_pids = ("127.0.0.1", redis_server.port,
                                                  redis_server.pids)
        try:
            redis_setup(redis_host, redis_port, args.contestants)
            for kind in redis_kinds:
                if rate is not None and kind != "resp":
                    print(f"redis (aof {mode}, {kind}), {label}: skipped, only the resp "
                          f"client has an open loop", flush=True)
                    continue
                print(f"redis (aof {mode}, {kind}), {label} ...", flush=True)
                redis_reset_votes(redis_host, redis_port)
                generator = PhoneCallGenerator(args.contestants, seed=seed)
                probe_before = cpu_probe()
                figures = run_redis(kind, redis_host, redis_port, connections=connections,
                                    inflight=inflight, rate=rate, generator=generator,
                                    server_pids=redis_pids, progress=progress, **common)
                figures.update(cpu_probe_ms=(probe_before + cpu_probe()) / 2)
                on_server = redis_results_total(redis_host, redis_port)
                figures.update(system="redis", client=kind, partitions=None,
                               durability=mode, connections=connections,
                               inflight=inflight, rate=rate, seed=seed, round=round_number,
                               results_match=on_server == figures["total_accepted"])
                rows.append(figures)
        finally:
            if redis_server is not None:
                redis_server.stop()

    def flowstate_run(partitions, durability, shape, seed, round_number) -> None:
        connections, inflight, rate = shape
        server = None
        if partitions is None:
            address = args.flowstate
            pids = process_tree(args.flowstate_pid) if args.flowstate_pid else []
        else:
            server = FlowstateServer(partitions, durability)
            address, pids = server.address, server.pids
        print(f"flowstate ({server.partitions if server else '?'} partition(s), "
              f"durability {durability or '?'}), {shape_label(*shape, 'x')} ...", flush=True)
        probe_before = cpu_probe()
        try:
            figures = run_flowstate(address, connections=connections, inflight=inflight,
                                    rate=rate, contestants=args.contestants, seed=seed,
                                    server_pids=pids, progress=progress, **common)
            if server is not None:
                figures.update(group_fsync_figures(address))
        finally:
            if server is not None:
                server.stop()
        figures.pop("_results_table", None)
        figures.update(cpu_probe_ms=(probe_before + cpu_probe()) / 2)
        figures.update(client="flowstate-aio", durability=durability, round=round_number,
                       total_accepted=figures["total"]["outcomes"]["accepted"],
                       total_failed=figures["total"]["failed"])
        rows.append(figures)

    # Round by round, every shape in each round, and in each round the
    # systems in another order (rotated): the machine's drift within a
    # round then favours no system in particular.
    for round_number in range(args.rounds):
        for index, shape in enumerate(args.shapes):
            seed = args.seed + index
            runs = ([functools.partial(redis_runs, mode) for mode in
                     (redis_modes if redis_kinds else [])]
                    + [functools.partial(flowstate_run, p, d) for p, d in flowstate_runs])
            turn = round_number % max(1, len(runs))
            for run in runs[turn:] + runs[:turn]:
                run(shape, seed, round_number)

    print()
    print_table(rows, redis_kinds, args.rounds)
    print()
    print("calls/s: Vote calls answered per second in the measured window (every outcome); "
          "latency: per call as the client saw it (redis-py with N > 1: the pipeline's round "
          "trip); CPU: % of one core over the window (server: all its processes; client: "
          "this process); calls/server CPU-s: calls/s / server cores busy; vs KIND: "
          "Flowstate calls/s / Redis calls/s with that client, same shape, matching "
          "durability (off~no, async~everysec, sync~always); of off: calls/s / Flowstate "
          "off's, same partitions and shape; CPU speed: how fast a fixed pure-Python "
          "workload ran just before and after the run, against its fastest in this whole "
          "run (bench/machine.py, cpu_probe): below 100, neighbours on a shared host were "
          "slowing the machine down then; fsync ms: the mean of the server's group-commit "
          "fsyncs over the run (@Statistics), which a shared disk's neighbours slow too."
          + (f" {args.rounds} rounds: each row is the run with the median calls/s (range: "
             f"lowest-highest), ratios the median of the rounds' ratios." if args.rounds > 1
             else ""))
    for r in rows:
        shape = shape_label(*_shape_of(r), "x")
        name = (f"redis aof={r.get('durability')} ({r['client']}) {shape}"
                if r["system"] == "redis" else
                f"flowstate P={r['partitions']} {r.get('durability')} {shape}")
        o = r["outcomes"]
        print(f"  {name}: accepted {o['accepted']:,}, invalid {o['invalid_contestant']:,}, "
              f"over limit {o['over_limit']:,}, errors {r['errors'] or 'none'}; votes on the "
              f"server {'match' if r.get('results_match') else 'DO NOT MATCH'} the accepted calls")
        if r.get("rate") is not None:
            print(f"    open loop at {r['rate']:,.0f} calls/s: "
                  + (f"BEHIND, {r['waiting_to_send_at_end']:,} calls due but not sent at the end "
                     f"(the limit of {r['connections'] * r['inflight']:,} in flight was reached)"
                     if r.get("waiting_to_send_at_end") else "kept up")
                  + (f"; the pacer's ticks ran up to {r['pacer_lag_p99_ms']:.2f} ms late (p99), "
                     f"not counted in the latencies" if "pacer_lag_p99_ms" in r else ""))
        for message in r.get("first_errors", ()):
            print(f"    e.g. {message}")
        if r["total_failed"] or not r.get("results_match"):
            status = 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": dict(info), "runs": rows}, f, indent=1)
            f.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
