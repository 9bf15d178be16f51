#!/usr/bin/env python3
"""Recovery and snapshot figures: how fast a partition replays its command
log, how fast it loads a snapshot, and how long a snapshot pauses it.

    python bench/recovery_bench.py                  # 10 s of Voter load, then measure
    python bench/recovery_bench.py --load 20 --fork-gib 1

1. Starts `flowstate serve` (1 partition, --durability async) in a
   temporary folder, drives it with the Voter benchmark for --load
   seconds, stops it, and replays its log in this process
   (server.recovery.recover_partition, as a starting partition does):
   transactions replayed per second.
2. Starts it again on the same folder, takes a snapshot (@SnapshotSave:
   the figures include how long the partitions were held for the cut and
   the fork), stops it, and loads that snapshot file in this process
   (server.snapshot.load_snapshot): MB/s and rows/s.
3. The pause of a snapshot is the fork of the partition process, which
   grows with its resident memory: forks a process holding --fork-gib GiB
   of touched memory and reports the fork's duration (median of 5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from machine import cpu_model, git_revision, load_average  # noqa: E402
from server_harness import ServerProcess  # noqa: E402

from flowstate.client import Client  # noqa: E402
from flowstate.server.application import load_application  # noqa: E402
from flowstate.server.partition import Partition, build_store  # noqa: E402
from flowstate.server.recovery import recover_partition  # noqa: E402
from flowstate.server.snapshot import load_snapshot  # noqa: E402


def drive(address: str, seconds: float) -> None:
    subprocess.run([sys.executable, "-m", "flowstate", "voter", "--servers", address,
                    "--duration", str(seconds), "--warmup", "0", "--connections", "4",
                    "--inflight", "64"], check=True, stdout=subprocess.DEVNULL)


def fork_pause(gib: float, times: int = 5) -> list[float]:
    block = bytearray(int(gib * (1 << 30)))
    for i in range(0, len(block), 4096):          # resident, not just reserved
        block[i] = 1
    pauses = []
    for _ in range(times):
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pauses.append((time.perf_counter() - started) * 1000)
        os.waitpid(pid, 0)
    del block
    return pauses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench/recovery_bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=float, default=10.0, metavar="S",
                        help="seconds of Voter load that fill the log (default: %(default)s)")
    parser.add_argument("--fork-gib", type=float, default=1.0, metavar="GIB",
                        help="resident memory of the forked process (default: %(default)s)")
    args = parser.parse_args(argv)
    print("Recovery and snapshot figures")
    print(f"  cpu      {cpu_model()}, {os.cpu_count()} cores")
    print(f"  git      {git_revision()}")
    print(f"  load     {load_average()} (load average at start)")
    with tempfile.TemporaryDirectory(prefix="recovery-bench-") as tmp:
        tmp = Path(tmp)
        server = ServerProcess(tmp, partitions=1,
                               extra=["--durability", "async", "--snapshot-interval", "0"])
        drive(server.address, args.load)
        server.stop()
        app = load_application(None)
        partition = Partition(app, 0, partitions=1)
        started = time.perf_counter()
        recovered = recover_partition(partition, server.data)
        seconds = time.perf_counter() - started
        log_bytes = sum(p.stat().st_size for p in (server.data / "log" / "p0").iterdir())
        print(f"\n  replay   {recovered['replayed']:,} transactions in {seconds:.2f} s: "
              f"{recovered['replayed'] / seconds:,.0f} transactions/s "
              f"(one partition; log files {log_bytes / 1e6:.0f} MB preallocated)")

        server = ServerProcess(tmp, partitions=1, extra=["--data", str(server.data),
                                                          "--snapshot-interval", "0"])
        with Client(server.address, timeout=600) as client:
            taken = client.call("@SnapshotSave").result
        server.stop()
        path = Path(taken["path"]) / "p0.fssnap"
        size = path.stat().st_size
        store = build_store(app.catalog)
        started = time.perf_counter()
        meta = load_snapshot(path, store)
        seconds = time.perf_counter() - started
        rows = sum(t["rows"] for t in meta["tables"])
        print(f"  snapshot taken: {taken['bytes'] / 1e6:.1f} MB, {taken['rows']:,} rows in "
              f"{taken['seconds']:.2f} s; partitions held {taken['cut_ms']:.1f} ms for the "
              f"cut (fork {taken['fork_ms'][0]:.1f} ms)")
        print(f"  load     {size / 1e6:.1f} MB, {rows:,} rows in {seconds:.3f} s: "
              f"{size / 1e6 / seconds:,.0f} MB/s, {rows / seconds:,.0f} rows/s")

    pauses = fork_pause(args.fork_gib)
    print(f"  fork     of a process with {args.fork_gib:g} GiB resident: median "
          f"{statistics.median(pauses):.1f} ms (min {min(pauses):.1f}, max {max(pauses):.1f}, "
          f"{len(pauses)} forks): the pause a snapshot of such a partition costs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
