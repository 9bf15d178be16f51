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
     callers) and carry ``--max-votes``;
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
import gc
import json
import os
import platform
import random
import sys
import time

from flowstate.cli import positive_int

__all__ = ["run_voter", "run", "add_arguments", "run_from_args", "main",
           "process_tree", "cpu_seconds", "latency_summary"]

HISTOGRAM_SECONDS = 0.1            # 1 us buckets up to here; slower calls kept exactly
_BUCKETS = int(HISTOGRAM_SECONDS * 1_000_000)
DRAIN_SECONDS = 10.0               # how long the calls in flight may take at the end
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

class _Snapshot:
    __slots__ = ("time", "cpu", "server_cpu", "hist", "overflow_len", "outcomes", "errors")


class _Load:
    """The closed loop over C clients and its cumulative counters."""

    def __init__(self, clients, next_call, inflight: int, max_votes: int):
        self.clients = clients
        self.next_call = next_call
        self.inflight = inflight
        self.max_votes = max_votes
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

    def completed(self) -> int:
        return sum(self.outcomes) + sum(self.errors.values())

    def snapshot(self, server_pids) -> _Snapshot:
        import numpy as np
        s = _Snapshot()
        s.time = time.perf_counter()
        s.cpu = time.process_time()
        s.server_cpu = cpu_seconds(server_pids) if server_pids else None
        s.hist = np.array(self.hist, dtype=np.int64)
        s.overflow_len = len(self.overflow)
        s.outcomes = list(self.outcomes)
        s.errors = collections.Counter(self.errors)
        return s


async def _progress(load: _Load, out) -> None:
    """Once a second: the phase, calls/s and p50 over the last second."""
    import numpy as np
    started = time.perf_counter()
    last_time, last_done = started, load.completed()
    last_hist = np.array(load.hist, dtype=np.int64)
    while True:
        await asyncio.sleep(1.0)
        now = time.perf_counter()
        completed = load.completed()
        hist = np.array(load.hist, dtype=np.int64)
        delta = hist - last_hist
        n = int(delta.sum())
        p50 = ""
        if n:
            bucket = int(np.searchsorted(np.cumsum(delta), (n + 1) // 2))
            p50 = f"  p50 {(bucket + 1) / 1000:.2f} ms"
        if load.window_start is None or now - load.window_start < 0.5:
            phase = f"warm-up {now - started:4.1f} s"
        else:
            phase = f"{now - load.window_start:6.1f} s"
        rate = (completed - last_done) / (now - last_time)
        errors = sum(load.errors.values())
        tail = f"  {errors:,} errors" if errors else ""
        out.write(f"\r  {phase}  {rate:>9,.0f} calls/s{p50}{tail}   ")
        out.flush()
        last_time, last_done, last_hist = now, completed, hist


def _results_total(table) -> int:
    return sum(int(row[2]) for row in table)


async def run_voter(servers="localhost:21212", *, duration: float = 10.0, warmup: float = 2.0,
                    connections: int = 1, inflight: int = 64, contestants: int = 6,
                    max_votes: int = 2, seed: int | None = None, affinity: bool = True,
                    progress: bool | None = None, server_pids=(), out=None) -> dict:
    """Run the Voter benchmark against a running server; return its figures
    (the dict ``--json`` writes). Raises UnavailableError if no server
    answers. ``server_pids``: processes whose CPU is measured over the
    window. ``progress``: the live line on ``out`` (default: if a TTY)."""
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
        load = _Load(clients, generator.next_call, inflight, max_votes)

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
    latency = latency_summary(end.hist - start.hist,
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
        f"{f['votes_per_s']:,.0f} votes/s accepted)",
        f"  latency     p50 {_ms(f['p50_ms'])}   p99 {_ms(f['p99_ms'])}   "
        f"p99.9 {_ms(f['p999_ms'])}   max {_ms(f['max_ms'])}",
        f"  outcomes    accepted {o['accepted']:,}   invalid contestant "
        f"{o['invalid_contestant']:,}   over the limit {o['over_limit']:,}"
        + (f"   other {o['other']:,}" if o["other"] else ""),
        f"  errors      {errors}",
        f"  client CPU  {f['client_cpu_percent']:.0f}% of one core"
        + (f"   server CPU {f['server_cpu_percent']:.0f}%"
           if f.get("server_cpu_percent") is not None else ""),
    ]
    for message in f["first_errors"]:
        lines.append(f"    e.g. {message}")
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
                             "next call (default: %(default)s)")
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
                      affinity=args.affinity, out=out)
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
