#!/usr/bin/env python3
"""Snapshot benchmark: how fast one partition's store is written to a
snapshot file and loaded back, and how long fork() pauses a partition.

The store is the Voter application's (one partition, the default app):
``Initialize`` with 6 contestants, then ``--votes`` votes (default
2,000,000) run through ``partition.call("Vote", ...)`` with the Voter call
generator (or, with ``--direct``, inserted straight into ``votes``: the
same rows and views, faster to build). Then, in ``--dir`` (default: a
temporary folder under /tmp; the file system matters):

    write        write_snapshot(store, path, meta): export, CRC32C, write,
                 fsync, rename, fsync of the folder; best and median of
                 --repeat runs, with the fsync part apart
    write/fork   the same in a fork()ed child while the parent waits: what
                 a partition does; the fork() call is the parent's pause
    load (hot)   load_snapshot(path, store) into an empty store built from
                 the catalog, the file in the page cache (just written);
                 the check pass (every CRC) timed apart (verify_snapshot)
    load (cold)  the same after evicting the file from the page cache
                 (posix_fadvise DONTNEED after an fsync): from the disk
    fork pause   os.fork() of this process holding the store, the child
                 exiting at once; --forks times; min / median / max

MB are 10**6 bytes of snapshot file; rows/s counts every row written or
loaded (tables and views). After loading, the loaded store must export
byte for byte what the original exports (rows, row ids, free lists) and
have the same index sizes, or the benchmark fails.

    python bench/snapshot_bench.py                   # 2M votes through Vote, ~1 minute
    python bench/snapshot_bench.py --votes 200000 --repeat 2 --direct   # quick check
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model, git_revision, load_average

REPO = Path(__file__).resolve().parent.parent
try:
    from flowstate.server.snapshot import load_snapshot, verify_snapshot, write_snapshot
except ImportError:          # not installed: run from a checkout
    sys.path.insert(0, str(REPO))
    from flowstate.server.snapshot import load_snapshot, verify_snapshot, write_snapshot
from flowstate.procedures.voter.phonecalls import PhoneCallGenerator
from flowstate.procedures.voter.voter import AREA_CODES
from flowstate.server.partition import Partition, build_store

TARGET_LOAD_MBS = 200.0
CONTESTANTS = 6
MAX_VOTES = 2


def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def build_partition(votes: int, direct: bool, seed: int) -> tuple[Partition, float, int]:
    p = Partition()
    p.call("Initialize", CONTESTANTS)
    gen = PhoneCallGenerator(CONTESTANTS, seed=seed)
    started = time.perf_counter()
    accepted = 0
    if direct:
        states = dict(AREA_CODES)
        table = p.store.tables["votes"]
        p.store.begin()
        for i in range(votes):
            phone, contestant = gen.next_call()
            if contestant > CONTESTANTS:
                continue
            table.insert(phone, states.get(phone // 10_000_000, "XX"), contestant)
            accepted += 1
            if i % 100_000 == 99_999:
                p.store.commit()
                p.store.begin()
        p.store.commit()
    else:
        call = p.call
        for _ in range(votes):
            phone, contestant = gen.next_call()
            if call("Vote", phone, contestant, MAX_VOTES) == 0:
                accepted += 1
    return p, time.perf_counter() - started, accepted


def export_image(store) -> dict:
    return {name: b"".join(t.export_rows()) for name, t in store.tables.items()}


def index_sizes(store) -> dict:
    return {(name, ix_name): len(ix) for name, t in store.tables.items()
            for ix_name, ix in t.indexes.items()}


def evict(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write_in_child(store, path: str, meta: dict) -> tuple[float, float]:
    """(the parent's fork() pause, the child's write as the parent waits)."""
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            write_snapshot(store, path, meta)
            code = 0
        finally:
            os._exit(code)
    pause = time.perf_counter() - started
    _, status = os.waitpid(pid, 0)
    total = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the snapshot child failed")
    return pause, total


def fork_pauses(n: int) -> list[float]:
    pauses = []
    for _ in range(n):
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pauses.append(time.perf_counter() - started)
        os.waitpid(pid, 0)
    return pauses


def machine_info(directory: str) -> list[tuple[str, str]]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    fs = "unknown"
    try:
        best = ""
        with open("/proc/mounts") as f:
            for line in f:
                dev, mount, kind = line.split()[:3]
                real = os.path.realpath(directory)
                if (real == mount or real.startswith(mount.rstrip("/") + "/")) \
                        and len(mount) > len(best):
                    best, fs = mount, f"{kind} on {dev} (mounted at {mount})"
    except OSError:
        pass
    import crc32c
    import msgpack
    return [
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("cpu", f"{cpu_model()}, {os.cpu_count()} cores ({usable} usable), {mem}"),
        ("os", platform.platform()),
        ("python", f"{platform.python_implementation()} {platform.python_version()}, "
                   f"msgpack {msgpack.version}, crc32c "
                   f"{'hardware' if getattr(crc32c, 'hardware_based', False) else 'software'}"),
        ("git", git_revision(mark_uncommitted=True)),
        ("load", f"{load_average()} (load average at start; other work skews figures)"),
        ("dir", f"{directory}: {fs}"),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--votes", type=int, default=2_000_000, help="votes to run (default 2M)")
    ap.add_argument("--direct", action="store_true",
                    help="insert the votes into the table instead of calling Vote")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    ap.add_argument("--forks", type=int, default=10, help="fork() pauses to measure")
    ap.add_argument("--dir", default=None, help="folder for the snapshot file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    directory = args.dir or tempfile.mkdtemp(prefix="fs-snapbench-")
    made_dir = args.dir is None
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "p0.snapshot")

    print("Flowstate snapshot benchmark: one partition's store, written and loaded")
    for key, value in machine_info(directory):
        print(f"  {key:<8} {value}")
    print(f"  command  python bench/snapshot_bench.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print()

    rss0 = status_kb("VmRSS")
    p, build_seconds, accepted = build_partition(args.votes, args.direct, args.seed)
    store = p.store
    how = "inserted directly" if args.direct else "through partition.call('Vote')"
    print(f"store: {args.votes:,} votes {how} in {build_seconds:.1f} s, {accepted:,} accepted")
    rows = sum(len(t) for t in store.tables.values())
    for name, t in store.tables.items():
        print(f"  {name:<36} {len(t):>10,} rows  {t.memory_bytes / 1e6:8.1f} MB in memory")
    print(f"  process RSS {status_kb('VmRSS') / 1024:.0f} MiB (+{(status_kb('VmRSS') - rss0) / 1024:.0f}"
          f" MiB for the store), page tables {status_kb('VmPTE')} KiB")
    print()

    meta = {"partition": 0, "txn_id": p.last_txn_id}
    results: dict = {"votes": args.votes, "direct": args.direct, "rows": rows}

    # -- fork pause, as a partition holding this store would see it --------------
    pauses = sorted(fork_pauses(args.forks))
    results["fork_pause_ms"] = {"min": pauses[0] * 1e3,
                                "median": statistics.median(pauses) * 1e3,
                                "max": pauses[-1] * 1e3,
                                "rss_mib": status_kb("VmRSS") / 1024}

    # -- write ------------------------------------------------------------------
    writes = [write_snapshot(store, path, meta) for _ in range(args.repeat)]
    size = writes[-1]["bytes"]
    secs = sorted(w["seconds"] for w in writes)
    nosync = sorted(w["seconds"] - w["fsync_seconds"] for w in writes)
    fsyncs = sorted(w["fsync_seconds"] for w in writes)
    results["bytes"] = size
    results["write"] = {"best_s": secs[0], "median_s": statistics.median(secs),
                        "best_MBps": size / secs[0] / 1e6,
                        "best_rows_per_s": rows / secs[0],
                        "best_no_fsync_MBps": size / nosync[0] / 1e6,
                        "median_fsync_s": statistics.median(fsyncs)}
    forked = [write_in_child(store, path, meta) for _ in range(args.repeat)]
    child = sorted(t for _, t in forked)
    results["write_forked"] = {"best_s": child[0], "best_MBps": size / child[0] / 1e6,
                               "median_fork_pause_ms": statistics.median(a for a, _ in forked) * 1e3}

    # -- load -------------------------------------------------------------------
    original = export_image(store)
    sizes = index_sizes(store)
    catalog = p.app.catalog
    hot, checks, cold = [], [], []
    for run in range(args.repeat):
        t0 = time.perf_counter()
        verify_snapshot(path)
        checks.append(time.perf_counter() - t0)
        fresh = build_store(catalog)
        t0 = time.perf_counter()
        load_snapshot(path, fresh)
        hot.append(time.perf_counter() - t0)
        if run == 0:
            if export_image(fresh) != original or index_sizes(fresh) != sizes:
                print("FAILED: the loaded store differs from the original")
                return 1
        del fresh
        gc.collect()            # a store is a reference cycle: free it now
        evict(path)
        fresh = build_store(catalog)
        t0 = time.perf_counter()
        load_snapshot(path, fresh)
        cold.append(time.perf_counter() - t0)
        del fresh
        gc.collect()
    hot.sort()
    cold.sort()
    checks.sort()
    results["load_hot"] = {"best_s": hot[0], "median_s": statistics.median(hot),
                           "best_MBps": size / hot[0] / 1e6, "best_rows_per_s": rows / hot[0],
                           "check_pass_best_s": checks[0]}
    results["load_cold"] = {"best_s": cold[0], "median_s": statistics.median(cold),
                            "best_MBps": size / cold[0] / 1e6,
                            "best_rows_per_s": rows / cold[0]}

    w, wf, lh, lc, fp = (results["write"], results["write_forked"], results["load_hot"],
                         results["load_cold"], results["fork_pause_ms"])
    print(f"snapshot file: {size / 1e6:.1f} MB, {rows:,} rows "
          f"({size / rows:.1f} bytes a row); best of {args.repeat} (median)")
    print(f"  write            {w['best_MBps']:7.0f} MB/s  {w['best_rows_per_s'] / 1e6:6.2f} M rows/s"
          f"  {w['best_s'] * 1e3:7.1f} ms ({w['median_s'] * 1e3:.1f})"
          f"  of which fsync {w['median_fsync_s'] * 1e3:.1f} ms; "
          f"without it {w['best_no_fsync_MBps']:.0f} MB/s")
    print(f"  write in a fork  {wf['best_MBps']:7.0f} MB/s"
          f"                     {wf['best_s'] * 1e3:7.1f} ms  (fork to the child's exit; "
          f"the fork() itself {wf['median_fork_pause_ms']:.2f} ms)")
    print(f"  load, hot cache  {lh['best_MBps']:7.0f} MB/s  {lh['best_rows_per_s'] / 1e6:6.2f} M rows/s"
          f"  {lh['best_s'] * 1e3:7.1f} ms ({lh['median_s'] * 1e3:.1f})"
          f"  of which checking every CRC {lh['check_pass_best_s'] * 1e3:.1f} ms")
    print(f"  load, cold cache {lc['best_MBps']:7.0f} MB/s  {lc['best_rows_per_s'] / 1e6:6.2f} M rows/s"
          f"  {lc['best_s'] * 1e3:7.1f} ms ({lc['median_s'] * 1e3:.1f})")
    print(f"  fork() pause     {fp['min']:.2f} ms min, {fp['median']:.2f} median, {fp['max']:.2f} max"
          f" ({args.forks} forks of the process holding the store, RSS {fp['rss_mib']:.0f} MiB)")
    verdict = "pass" if lh["best_MBps"] >= TARGET_LOAD_MBS else "MISS"
    print(f"  target: load >= {TARGET_LOAD_MBS:.0f} MB/s: {verdict} (hot), "
          f"{'pass' if lc['best_MBps'] >= TARGET_LOAD_MBS else 'MISS'} (cold)")
    print("  the loaded store exports byte for byte what the original does: checked")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if made_dir:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
