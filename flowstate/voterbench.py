"""`flowstate voter`: VoltDB's Voter benchmark client.

    flowstate voter --servers localhost:21212 --connections 4 --inflight 64 --duration 10

What one run does, in order:

  1. connects C AsyncClients (``--connections``; each learns the topology
     and, with affinity, keeps one connection per partition) and calls
     ``Initialize`` once (a no-op on an initialized server) and
     ``Results`` once, to know how many votes were there before;
  2. starts the closed loop: each client sends N ``Vote`` calls
     (``--inflight``) with ``call_with_callback``; every answer records its
     outcome and latency and sends the next call. The calls come from one
     PhoneCallGenerator (flowstate.procedures.voter.phonecalls: real area
     codes, a skewed contestant choice, 1% invalid contestants, 2% repeat
     callers) and carry ``--max-votes``. With ``--rate R`` the loop is
     open instead: a Pacer sends R calls a second, round robin over the
     clients, whatever the answers do (at most C x N outstanding; calls
     due beyond that wait and are reported), and latency counts from when
     each call fell due, so that a slow server is charged for the calls it
     kept waiting;
  3. after ``--warmup`` seconds takes a snapshot of the counters, after
     ``--duration`` more seconds another; the figures are the difference
     (calls/s, latency percentiles, outcomes, errors, CPU);
  4. stops sending, waits for the calls in flight (at most DRAIN_SECONDS),
     calls ``Results`` and checks that the votes it gained are the votes
     this run had accepted;
  5. prints the summary (and writes ``--json``), exit status 0; 1 if any
     call failed; 2 if the server cannot be reached.

Latency is ``Response.elapsed``: from the moment the driver framed the
call to the moment the bytes with its answer came in, as the driver saw
it (so it includes the client's own queueing). It is counted in a fixed
array of 1-microsecond buckets up to HISTOGRAM_SECONDS, slower calls kept
exactly; per call that is one multiplication and one list increment.
Counters are cumulative and read at the window's edges, so the callback
has no "are we measuring" test. The code on the path of every call is
``_Load.start``'s ``on_answer``; keep it short.

``run_voter`` (a coroutine) and ``run`` (its blocking form) are the
Python API; bench/voter_compare.py uses them, with ``server_pids`` to
measure the server's CPU over the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import gc
import json
import os
import platform
import random
import sys
import time

from flowstate.cli import positive_int

# numpy (the histograms, after the load) needs no BLAS threads; OpenBLAS
# would start one per core at import, and it spins: a few % of a core
# taken from the server being measured on a small machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["run_voter", "run", "add_arguments", "run_from_args", "main", "Pacer",
           "process_tree", "cpu_seconds", "latency_summary", "machine_cpu", "machine_figures"]

HISTOGRAM_SECONDS = 0.1            # 1 us buckets up to here; slower calls kept exactly
_BUCKETS = int(HISTOGRAM_SECONDS * 1_000_000)
DRAIN_SECONDS = 10.0               # how long the calls in flight may take at the end
PACER_TICK_SECONDS = 0.001         # --rate: calls become due in a burst this often
CONNECT_SECONDS = 5.0
ACCEPTED, INVALID_CONTESTANT, OVER_LIMIT = 0, 1, 2     # Vote's return codes
_OUTCOME_NAMES = ("accepted", "invalid_contestant", "over_limit", "other")


# -- CPU of processes, from /proc -----------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (psutil if installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            root = psutil.Process(pid)
            return [pid] + [p.pid for p in root.children(recursive=True)]
        except psutil.Error:
            return []
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents[ppid].append(int(name))
    if not os.path.exists(f"/proc/{pid}"):
        return []
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, ()))
    return tree


def cpu_seconds(pids) -> float:
    """User + system CPU seconds used so far by the processes ``pids``
    (fields 14 and 15 of /proc/<pid>/stat); a process that is gone counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / _TICKS



def machine_cpu() -> dict[str, float]:
    """The whole machine's CPU seconds so far, all cores (the first line of
    /proc/stat): ``busy`` (user, nice, system, irq, softirq), ``iowait``,
    ``steal`` (taken by the hypervisor for other guests) and ``idle``. Over
    a window, busy minus the processes measured is the work nobody's
    process is charged for: kernel threads (writeback, the file system's
    journal), interrupts, and anything else running on the machine."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return {}
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return {"busy": (user + nice + system + irq + softirq) / _TICKS,
            "iowait": iowait / _TICKS, "steal": steal / _TICKS, "idle": idle / _TICKS}

def machine_figures(first: dict, last: dict, elapsed: float, measured_cpu: float) -> dict:
    """The machine's CPU over the window, in % of one core: busy, the part
    of it neither the server nor the load generator is charged for ("other":
    kernel threads such as writeback and the journal, interrupts, other
    work on the machine), and the hypervisor's steal."""
    if not first or not last:
        return {}
    busy = last["busy"] - first["busy"]
    return {"machine_busy_percent": round(100.0 * busy / elapsed, 1),
            "other_cpu_percent": round(100.0 * max(0.0, busy - measured_cpu) / elapsed, 1),
            "steal_percent": round(100.0 * (last["steal"] - first["steal"]) / elapsed, 1)}


# -- latency ----------------------------------------------------------------------------

def latency_summary(counts, overflow, quantiles=(0.5, 0.99, 0.999)) -> dict:
    """Percentiles (nearest rank) and max in ms from 1-us bucket counts
    (a numpy array) and the exact values (seconds) past the last bucket."""
    import numpy as np
    over = np.sort(np.asarray(overflow, dtype=np.float64))
    n_hist = int(counts.sum())
    n = n_hist + len(over)
    out = {}
    if n == 0:
        for q in quantiles:
            out[_quantile_name(q)] = None
        out["max_ms"] = out["mean_ms"] = None
        return out
    cumulative = np.cumsum(counts)
    for q in quantiles:
        rank = max(1, int(np.ceil(q * n)))          # the rank-th smallest value
        if rank <= n_hist:
            bucket = int(np.searchsorted(cumulative, rank))
            value = (bucket + 1) / 1000.0           # the bucket's upper edge, in ms
        else:
            value = float(over[rank - n_hist - 1]) * 1000.0
        out[_quantile_name(q)] = round(value, 3)
    if len(over):
        out["max_ms"] = round(float(over[-1]) * 1000.0, 3)
    else:
        out["max_ms"] = round((int(np.flatnonzero(counts)[-1]) + 1) / 1000.0, 3)
    total_us = float(np.dot(counts, np.arange(len(counts)) + 0.5)) + float(over.sum()) * 1e6
    out["mean_ms"] = round(total_us / n / 1000.0, 3)
    return out


def _quantile_name(q: float) -> str:
    return "p" + f"{q * 100:g}".replace(".", "") + "_ms"


# -- the load -----------------------------------------------------------------------

class Pacer:
    """Open-loop arrivals (``--rate``): ``rate`` calls a second whatever the
    answers do, as users arrive at a real service, instead of the closed
    loop's "send the next call when one is answered".

    Every PACER_TICK_SECONDS (a timer) the calls due by then are sent; a
    call's latency is measured from the moment its tick ran, not from
    when it went out, so a server that falls behind is charged for the
    wait of the calls it kept waiting ("coordinated omission" otherwise
    hides it): at most ``limit`` calls are outstanding, and beyond that
    due calls wait here (``backlog``) and go out as answers free slots,
    their due times unchanged. The event loop's timers run up to a
    millisecond after they are due (its clock counts milliseconds); that
    lateness is the client's, not the server's, and is not counted, but
    it is measured (``lags``: per tick, how late it ran) and reported.

    ``send(due)`` sends one call and returns True, or False if it
    could not (the error already counted); ``answered()`` is called once
    per answer (or failure) of a sent call.
    """

    def __init__(self, rate: float, limit: int, send):
        self.rate = rate
        self.limit = limit
        self.send = send
        self.outstanding = 0
        self.backlog: collections.deque = collections.deque()
        self.due = 0                     # calls due so far
        self.started = 0.0
        self.next_tick = 0.0
        self.running = False
        self.timer = None
        self.loop = None
        self.lags: list[float] = []      # seconds each tick ran after it was due

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.running = True
        self.started = self.next_tick = time.perf_counter()
        self._tick()

    def stop(self) -> None:
        """No more calls become due; those waiting here are dropped."""
        self.running = False
        self.backlog.clear()
        if self.timer is not None:
            self.timer.cancel()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.next_tick <= now:        # (a timer may also run a little early)
            self.lags.append(now - self.next_tick)
            while self.next_tick <= now:
                self.next_tick += PACER_TICK_SECONDS
            due = int((self.next_tick - PACER_TICK_SECONDS - self.started) * self.rate) + 1
            self.backlog.extend([now] * (due - self.due))
            self.due = due
        self._drain()
        self.timer = self.loop.call_later(self.next_tick - now, self._tick)

    def _drain(self) -> None:
        backlog, send = self.backlog, self.send
        while backlog and self.outstanding < self.limit:
            if send(backlog.popleft()):
                self.outstanding += 1

    def answered(self) -> None:
        self.outstanding -= 1
        if self.backlog and self.running:
            self._drain()

    def lag_figures(self, first: int, last: int) -> dict:
        """How late ticks ``first`` up to ``last`` ran (p99 and max, ms):
        the client's own lateness, left out of the latencies."""
        lags = sorted(self.lags[first:last])
        if not lags:
            return {}
        return {"pacer_lag_p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1e3, 3),
                "pacer_lag_max_ms": round(lags[-1] * 1e3, 3)}


class _Snapshot:
    __slots__ = ("time", "cpu", "server_cpu", "machine", "hist", "overflow_len", "outcomes",
                 "errors", "waiting", "lags")


class _Load:
    """The load over C clients (a closed loop, or open-loop arrivals at
    ``rate`` calls/s) and its cumulative counters."""

    def __init__(self, clients, next_call, inflight: int, max_votes: int,
                 rate: float | None = None):
        self.clients = clients
        self.next_call = next_call
        self.inflight = inflight
        self.max_votes = max_votes
        self.rate = rate                              # None: closed loop; else a Pacer's
        self.pacer: Pacer | None = None
        self.hist = [0] * _BUCKETS
        self.overflow: list[float] = []
        self.outcomes = [0, 0, 0, 0]                  # accepted, invalid, over limit, other
        self.errors: collections.Counter = collections.Counter()
        self.first_errors: list[str] = []
        self.outstanding = 0
        self.window_start: float | None = None       # perf_counter() when measuring began
        self.stop = None                             # set by start()
        self.done: asyncio.Future | None = None

    def error(self, error: BaseException) -> None:
        self.errors[type(error).__name__] += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{type(error).__name__}: {error}")

    def start(self) -> None:
        """Send the first N calls on every client; from then on each answer
        sends the next call until stop()."""
        from flowstate.errors import FlowstateError
        loop = asyncio.get_running_loop()
        self.done = done = loop.create_future()
        hist, overflow, outcomes = self.hist, self.overflow, self.outcomes
        next_call, max_votes = self.next_call, self.max_votes
        record_error = self.error
        running = True
        load = self

        def stop() -> None:
            nonlocal running
            running = False
            if load.outstanding == 0 and not done.done():
                done.set_result(None)

        def finished_one() -> None:
            load.outstanding -= 1
            if load.outstanding == 0 and not running and not done.done():
                done.set_result(None)

        def slot(client):
            send = client.call_with_callback

            def on_answer(response, error):
                if error is None:
                    try:
                        hist[int(response.elapsed * 1e6)] += 1
                    except IndexError:
                        overflow.append(response.elapsed)
                    try:
                        outcomes[response.result] += 1
                    except (IndexError, TypeError):
                        outcomes[3] += 1
                else:
                    record_error(error)
                if running:
                    phone, contestant = next_call()
                    try:
                        send(on_answer, "Vote", phone, contestant, max_votes)
                    except FlowstateError as e:       # e.g. the connection is gone
                        record_error(e)
                        finished_one()
                else:
                    finished_one()
            return on_answer

        self.stop = stop
        if self.rate is not None:
            self._start_paced(record_error, finished_one, stop)
            return
        for client in self.clients:
            on_answer = slot(client)
            for _ in range(self.inflight):
                phone, contestant = next_call()
                try:
                    client.call_with_callback(on_answer, "Vote", phone, contestant, max_votes)
                except FlowstateError as e:
                    record_error(e)
                    continue
                self.outstanding += 1
        if self.outstanding == 0:
            stop()

    def _start_paced(self, record_error, finished_one, stop_closed_loop) -> None:
        """Open loop: a Pacer sends the calls, round robin over the
        clients; latency counts from when each call fell due."""
        from flowstate.errors import FlowstateError
        hist, overflow, outcomes = self.hist, self.overflow, self.outcomes
        next_call, max_votes = self.next_call, self.max_votes
        sends = [client.call_with_callback for client in self.clients]
        turn = 0
        load = self
        now = time.perf_counter

        def on_answer(due, response, error):
            # counted as the closed loop's on_answer counts (inlined there and
            # here: a helper call per answer is client CPU the server lacks)
            if error is None:
                try:
                    hist[int((now() - due) * 1e6)] += 1
                except IndexError:
                    overflow.append(now() - due)
                try:
                    outcomes[response.result] += 1
                except (IndexError, TypeError):
                    outcomes[3] += 1
            else:
                record_error(error)
            finished_one()
            pacer.answered()

        def send(due) -> bool:
            nonlocal turn
            turn += 1
            phone, contestant = next_call()
            try:
                sends[turn % len(sends)](functools.partial(on_answer, due), "Vote",
                                         phone, contestant, max_votes)
            except FlowstateError as e:           # e.g. the connection is gone
                record_error(e)
                return False
            load.outstanding += 1
            return True

        def stop() -> None:
            pacer.stop()
            stop_closed_loop()

        pacer = self.pacer = Pacer(self.rate, len(self.clients) * self.inflight, send)
        self.stop = stop
        pacer.start()

    @property
    def waiting_to_send(self) -> int:
        """Calls due (open loop) that have not gone out: the limit of
        outstanding calls was reached, the server is behind the rate."""
        return len(self.pacer.backlog) if self.pacer is not None else 0

    def completed(self) -> int:
        return sum(self.outcomes) + sum(self.errors.values())

    def snapshot(self, server_pids) -> _Snapshot:
        """The counters now. Cheap (a list copy, no numpy): it runs on the
        loop the calls run on, and with --rate a stall here is latency."""
        s = _Snapshot()
        s.time = time.perf_counter()
        s.cpu = time.process_time()
        s.server_cpu = cpu_seconds(server_pids) if server_pids else None
        s.machine = machine_cpu()
        s.hist = self.hist.copy()
        s.overflow_len = len(self.overflow)
        s.outcomes = list(self.outcomes)
        s.errors = collections.Counter(self.errors)
        s.waiting = self.waiting_to_send
        s.lags = len(self.pacer.lags) if self.pacer is not None else 0
        return s


async def _progress(load: _Load, out) -> None:
    """Once a second: the phase, calls/s and p50 over the last second (with
    --rate: how many calls wait to be sent instead, since turning the
    histogram into an array takes the loop a few milliseconds, which
    would be latency for the calls due meanwhile)."""
    import numpy as np
    paced = load.rate is not None
    started = time.perf_counter()
    last_time, last_done = started, load.completed()
    last_hist = None if paced else np.array(load.hist, dtype=np.int64)
    while True:
        await asyncio.sleep(1.0)
        now = time.perf_counter()
        completed = load.completed()
        detail = ""
        if paced:
            detail = f"  {load.waiting_to_send:,} waiting to be sent"
        else:
            hist = np.array(load.hist, dtype=np.int64)
            delta = hist - last_hist
            n = int(delta.sum())
            if n:
                bucket = int(np.searchsorted(np.cumsum(delta), (n + 1) // 2))
                detail = f"  p50 {(bucket + 1) / 1000:.2f} ms"
            last_hist = hist
        if load.window_start is None or now - load.window_start < 0.5:
            phase = f"warm-up {now - started:4.1f} s"
        else:
            phase = f"{now - load.window_start:6.1f} s"
        rate = (completed - last_done) / (now - last_time)
        errors = sum(load.errors.values())
        tail = f"  {errors:,} errors" if errors else ""
        out.write(f"\r  {phase}  {rate:>9,.0f} calls/s{detail}{tail}   ")
        out.flush()
        last_time, last_done = now, completed


def _results_total(table) -> int:
    return sum(int(row[2]) for row in table)


async def run_voter(servers="localhost:21212", *, duration: float = 10.0, warmup: float = 2.0,
                    connections: int = 1, inflight: int = 64, contestants: int = 6,
                    max_votes: int = 2, seed: int | None = None, affinity: bool = True,
                    progress: bool | None = None, server_pids=(), out=None,
                    rate: float | None = None) -> dict:
    """Run the Voter benchmark against a running server; return its figures
    (the dict ``--json`` writes). Raises UnavailableError if no server
    answers. ``server_pids``: processes whose CPU is measured over the
    window. ``progress``: the live line on ``out`` (default: if a TTY).
    ``rate``: open loop at that many calls/s (see Pacer), with at most
    ``connections * inflight`` outstanding; None: the closed loop."""
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be a positive number of calls/s, got {rate!r}")
    import numpy as np                    # now: not in the middle of the load
    from flowstate.client import AsyncClient
    from flowstate.procedures.voter.phonecalls import PhoneCallGenerator

    out = out or sys.stdout
    if progress is None:
        progress = out.isatty()
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    server_pids = list(server_pids)
    clients = [AsyncClient(servers, name="flowstate-voter", affinity=affinity, timeout=None,
                           connect_timeout=CONNECT_SECONDS) for _ in range(connections)]
    try:
        for client in clients:
            await client.connect()
        first = clients[0]
        cluster = first.cluster
        contestants_now = (await first.call("Initialize", contestants)).result
        results_before = _results_total((await first.call("Results")).result)
        generator = PhoneCallGenerator(contestants_now, seed=seed)
        load = _Load(clients, generator.next_call, inflight, max_votes, rate)

        gc.collect()
        gc.freeze()                 # the long-lived objects leave the collector's view
        ticker = asyncio.ensure_future(_progress(load, out)) if progress else None
        load.start()
        try:
            await asyncio.sleep(warmup)
            start = load.snapshot(server_pids)
            load.window_start = start.time
            await asyncio.sleep(duration)
            end = load.snapshot(server_pids)
            load.stop()
            try:
                await asyncio.wait_for(asyncio.shield(load.done), DRAIN_SECONDS)
            except asyncio.TimeoutError:
                pass            # reported as total.still_in_flight
        finally:
            if ticker is not None:
                ticker.cancel()
                out.write("\r" + " " * 72 + "\r")
                out.flush()
            gc.unfreeze()
        final = load.snapshot(())
        results = (await first.call("Results")).result
    finally:
        for client in clients:
            await client.close()

    elapsed = end.time - start.time
    window_outcomes = [b - a for a, b in zip(start.outcomes, end.outcomes)]
    window_errors = end.errors - start.errors
    calls = sum(window_outcomes) + sum(window_errors.values())
    latency = latency_summary(np.array(end.hist, dtype=np.int64)
                              - np.array(start.hist, dtype=np.int64),
                              load.overflow[start.overflow_len:end.overflow_len])
    total_outcomes = final.outcomes
    total_errors = final.errors
    results_after = _results_total(results)
    gained = results_after - results_before
    figures = {
        "benchmark": "voter",
        "system": "flowstate",
        "servers": servers if isinstance(servers, str) else ",".join(map(str, servers)),
        "partitions": cluster.partitions,
        "affinity": affinity,
        "connections": connections,
        "inflight": inflight,
        "rate": rate,
        "latency_from": "send" if rate is None else "due",
        "waiting_to_send_at_end": end.waiting,
        **(load.pacer.lag_figures(start.lags, end.lags) if load.pacer is not None else {}),
        "contestants": contestants_now,
        "max_votes": max_votes,
        "seed": seed,
        "warmup_s": warmup,
        "duration_s": round(elapsed, 3),
        "calls": calls,
        "calls_per_s": round(calls / elapsed, 1),
        "votes_per_s": round(window_outcomes[ACCEPTED] / elapsed, 1),
        **latency,
        "outcomes": dict(zip(_OUTCOME_NAMES, window_outcomes)),
        "errors": dict(window_errors),
        "failed": sum(window_errors.values()),
        "client_cpu_percent": round(100.0 * (end.cpu - start.cpu) / elapsed, 1),
        "server_cpu_percent": (round(100.0 * (end.server_cpu - start.server_cpu) / elapsed, 1)
                               if server_pids else None),
        **machine_figures(start.machine, end.machine, elapsed,
                          (end.cpu - start.cpu) + ((end.server_cpu - start.server_cpu)
                                                   if server_pids else 0.0)),
        "total": {
            "calls": sum(total_outcomes) + sum(total_errors.values()),
            "outcomes": dict(zip(_OUTCOME_NAMES, total_outcomes)),
            "errors": dict(total_errors),
            "failed": sum(total_errors.values()),
            "still_in_flight": load.outstanding,
        },
        "first_errors": load.first_errors,
        "results": [{"contestant_name": r[0], "contestant_number": r[1], "total_votes": r[2]}
                    for r in results],
        "results_votes_before": results_before,
        "results_votes_after": results_after,
        "results_match": gained == total_outcomes[ACCEPTED],
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    figures["_results_table"] = results
    return figures


def run(servers="localhost:21212", **options) -> dict:
    """``run_voter`` in a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_voter(servers, **options))
    return uvloop.run(run_voter(servers, **options))


# -- the report ---------------------------------------------------------------------

def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def format_summary(f: dict) -> str:
    o = f["outcomes"]
    errors = ", ".join(f"{name} {n:,}" for name, n in sorted(f["errors"].items())) or "none"
    lines = [
        f"Voter on {f['servers']}: {f['partitions']} partition(s), affinity "
        f"{'on' if f['affinity'] else 'off'}; {f['connections']} connection(s) x "
        f"{f['inflight']} in flight; {f['contestants']} contestants, max {f['max_votes']} "
        f"votes per phone, seed {f['seed']}",
        f"  measured    {f['duration_s']:.2f} s after {f['warmup_s']:g} s of warm-up",
        f"  throughput  {f['calls_per_s']:,.0f} calls/s ({f['calls']:,} calls; "
        f"{f['votes_per_s']:,.0f} votes/s accepted)"
        + (f"; offered {f['rate']:,.0f} calls/s" if f.get("rate") else ""),
        f"  latency     p50 {_ms(f['p50_ms'])}   p99 {_ms(f['p99_ms'])}   "
        f"p99.9 {_ms(f['p999_ms'])}   max {_ms(f['max_ms'])}"
        + ("   (from when each call was due)" if f.get("rate") else ""),
        f"  outcomes    accepted {o['accepted']:,}   invalid contestant "
        f"{o['invalid_contestant']:,}   over the limit {o['over_limit']:,}"
        + (f"   other {o['other']:,}" if o["other"] else ""),
        f"  errors      {errors}",
        f"  client CPU  {f['client_cpu_percent']:.0f}% of one core"
        + (f"   server CPU {f['server_cpu_percent']:.0f}%"
           if f.get("server_cpu_percent") is not None else "")
        + (f"   rest of the machine {f['other_cpu_percent']:.0f}%   steal "
           f"{f['steal_percent']:.0f}%" if "other_cpu_percent" in f else ""),
    ]
    for message in f["first_errors"]:
        lines.append(f"    e.g. {message}")
    if f.get("pacer_lag_p99_ms") is not None:
        lines.append(f"  pacer       calls due every {PACER_TICK_SECONDS * 1e3:g} ms; the ticks ran "
                     f"late by up to {_ms(f['pacer_lag_p99_ms'])} (p99), "
                     f"{_ms(f['pacer_lag_max_ms'])} (max), not counted in the latencies")
    if f.get("waiting_to_send_at_end"):
        lines.append(f"  behind      {f['waiting_to_send_at_end']:,} calls were due but not "
                     f"sent at the end of the window: the server (or this client) could not "
                     f"keep up with --rate within {f['connections'] * f['inflight']:,} calls "
                     f"in flight")
    table = f.get("_results_table")
    if table is not None:
        lines += ["", "Results (every vote on the server):", table.format()]
    total = f["total"]
    check = ("matches" if f["results_match"] else "DOES NOT MATCH")
    lines += ["", f"Results gained {f['results_votes_after'] - f['results_votes_before']:,} "
                  f"votes; this run's calls accepted {total['outcomes']['accepted']:,} "
                  f"(warm-up and drain included): {check}"]
    if total["still_in_flight"]:
        lines.append(f"  {total['still_in_flight']:,} call(s) were still unanswered "
                     f"{DRAIN_SECONDS:g} s after the end")
    return "\n".join(lines)


# -- the command line ------------------------------------------------------------------

def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _duration(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of calls a second, got {text!r}")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 calls a second, got {text}")
    return value


def _contestants(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 12:
        raise argparse.ArgumentTypeError(f"must be 1..12, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``flowstate voter`` (and of bench/voter.py)."""
    parser.add_argument("--servers", default="localhost:21212", metavar="HOST:PORT[,...]",
                        help="server address(es) to connect to (default: %(default)s)")
    parser.add_argument("--duration", type=_duration, default=10.0, metavar="S",
                        help="measured seconds (default: %(default)s)")
    parser.add_argument("--warmup", type=_seconds, default=2.0, metavar="S",
                        help="seconds of load before measuring, not counted "
                             "(default: %(default)s)")
    parser.add_argument("--connections", type=positive_int, default=1, metavar="C",
                        help="client connections: separate AsyncClients, each with its own "
                             "sockets (default: %(default)s)")
    parser.add_argument("--inflight", type=positive_int, default=64, metavar="N",
                        help="calls each connection keeps in flight; each answer sends the "
                             "next call (default: %(default)s). With --rate: the most each "
                             "connection may have in flight")
    parser.add_argument("--rate", type=_rate, default=None, metavar="CALLS/S",
                        help="open loop: send this many calls a second in all (a burst every "
                             "millisecond), whatever the answers do, and measure each call's "
                             "latency from when it was due to be sent; the default is the "
                             "closed loop, which measures the most the server can do")
    parser.add_argument("--contestants", type=_contestants, default=6, metavar="N",
                        help="contestants for Initialize, 1..12 (default: %(default)s)")
    parser.add_argument("--max-votes", type=positive_int, default=2, metavar="N",
                        help="votes allowed per phone number (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the call generator (default: random, printed); reusing "
                             "a seed on the same server repeats its phone numbers")
    parser.add_argument("--no-affinity", dest="affinity", action="store_false",
                        help="send every call to the server address given, which forwards "
                             "it, instead of straight to the partition that owns it")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the figures as one JSON object to FILE ('-' for "
                             "stdout, instead of the summary)")


def run_from_args(args) -> int:
    from flowstate.errors import FlowstateError, UnavailableError
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    try:
        figures = run(args.servers, duration=args.duration, warmup=args.warmup,
                      connections=args.connections, inflight=args.inflight,
                      contestants=args.contestants, max_votes=args.max_votes, seed=args.seed,
                      affinity=args.affinity, out=out, rate=args.rate)
    except UnavailableError as e:
        print(f"flowstate voter: the server is unreachable: {e}", file=sys.stderr)
        return 2
    except (FlowstateError, ValueError) as e:
        print(f"flowstate voter: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nflowstate voter: interrupted", file=sys.stderr)
        return 130
    if not to_stdout:
        print(format_summary(figures))
    figures.pop("_results_table", None)
    if args.json:
        text = json.dumps(figures, indent=None)
        if to_stdout:
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    failed = figures["total"]["failed"] + figures["total"]["still_in_flight"]
    if failed:
        print(f"flowstate voter: {failed:,} call(s) failed or were not answered",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None, prog: str = "voter") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="VoltDB's Voter benchmark against a running Flowstate server "
                               "(the same as `flowstate voter`).")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
