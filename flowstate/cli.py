"""The ``flowstate`` command line.

Subcommands:
  serve  run the server (a supervisor, one process per partition and a
         coordinator) until Ctrl-C
  voter  drive a running server with VoltDB's Voter workload
  verify audit a data folder offline: recover it, print its state hash
  snapshot  take a snapshot now (save) or list them
  demo   load an application (the Voter app by default) into an in-process
         partition, run a stream of votes through it and print the results.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

from flowstate import __version__


def _demo(args) -> int:
    from flowstate.errors import FlowstateError
    from flowstate.procedures.voter.phonecalls import PhoneCallGenerator
    from flowstate.server.application import load_application
    from flowstate.server.partition import Partition

    try:
        app = load_application(args.app)
    except FlowstateError as e:
        print(f"flowstate demo: cannot load the application: {e}", file=sys.stderr)
        return 2
    if args.app is not None and "Vote" not in app.procedures:
        print(f"flowstate demo: {app.path} has no Vote procedure; the demo drives the Voter app",
              file=sys.stderr)
        return 2
    partition = Partition(app)
    print(f"Loaded {app.name} from {app.path}: {len(app.catalog.tables)} tables, "
          f"{len(app.catalog.views)} views, procedures {', '.join(app.procedures)}")
    contestants = partition.call("Initialize", args.contestants)
    print(f"Initialize: {contestants} contestants, "
          f"{len(partition.db.area_code_state)} area codes")

    calls = PhoneCallGenerator(contestants, seed=args.seed)
    outcomes = collections.Counter()
    vote = partition.call
    next_call = calls.next_call
    started = time.perf_counter()
    report_at = started + 1.0
    for i in range(args.votes):
        phone, contestant = next_call()
        outcomes[vote("Vote", phone, contestant, args.max_votes)] += 1
        if i & 0x3FF == 0 and sys.stdout.isatty():
            now = time.perf_counter()
            if now >= report_at:
                report_at = now + 1.0
                print(f"\r  {i:,} votes, {i / (now - started):,.0f}/s", end="", flush=True)
    elapsed = time.perf_counter() - started
    if sys.stdout.isatty():
        print("\r" + " " * 40 + "\r", end="")
    print(f"Ran {args.votes:,} Vote calls in {elapsed:.2f} s: {args.votes / elapsed:,.0f} calls/s "
          f"(in process, one partition, call generation included)")
    print(f"  accepted {outcomes[0]:,}   no such contestant {outcomes[1]:,}   "
          f"over the per-phone limit {outcomes[2]:,}")
    print()
    print(partition.call("Results").format())
    print()
    for name, table in partition.store.tables.items():
        print(f"  {name:40} {len(table):>10,} rows {table.memory_bytes / 2**20:>9.1f} MiB")
    return 0


def _serve(args) -> int:
    from flowstate.server.supervisor import serve
    limits = {"max_frame_bytes": args.max_frame_bytes, "max_connections": args.max_connections,
              "max_inflight": args.max_inflight, "max_params": args.max_params}
    return serve(app_path=args.app, partitions=args.partitions, host=args.host, port=args.port,
                 data_dir=args.data, limits=limits, log_level=args.log_level,
                 durability=args.durability, fsync_interval_ms=args.fsync_interval_ms,
                 segment_bytes=args.log_segment_mb << 20,
                 snapshot_interval_s=args.snapshot_interval,
                 snapshot_log_bytes=args.snapshot_log_mb << 20,
                 idempotency_window=args.idempotency_window)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (shared by the bench scripts)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def _add_serve(sub) -> None:
    from flowstate.protocol import (DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME_BYTES,
                                    DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_PARAMS, DEFAULT_PORT)
    from flowstate.routing import default_partitions
    serve = sub.add_parser(
        "serve", help="run the server until Ctrl-C",
        description="Run a Flowstate server: a supervisor starts one process per partition "
                    "and a coordinator for multi-partition transactions, watches them, and "
                    "stops them all cleanly on Ctrl-C (SIGINT) or SIGTERM. Clients connect "
                    "to --host:--port; partition i also listens on port+1+i for drivers that "
                    "route each call to its owner.")
    serve.add_argument("--app", metavar="DIR", default=None,
                       help="application folder with schema.sql (default: the bundled Voter app)")
    serve.add_argument("--partitions", type=positive_int, default=None, metavar="N",
                       help="number of partition processes (default: as many as the data "
                            "directory was written with; for a new one, one per core but "
                            f"one, at least 1: {default_partitions()} here)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT,
                       help="client port; 0 picks free ports (default: %(default)s)")
    serve.add_argument("--data", metavar="DIR", default=None,
                       help="data directory (default: ./flowstate-data)")
    serve.add_argument("--durability", choices=["sync", "async", "off"], default="sync",
                       help="sync: answer a call only once its command-log record is on disk "
                            "(group commit); async: fsync the log every --fsync-interval-ms "
                            "(a crash loses at most that window); off: memory only "
                            "(default: %(default)s)")
    serve.add_argument("--fsync-interval-ms", type=float, default=10.0, metavar="MS",
                       help="with --durability async: how often the log is fsynced "
                            "(default: %(default)s)")
    serve.add_argument("--log-segment-mb", type=positive_int, default=64, metavar="MB",
                       help="size of the command log's preallocated segment files "
                            "(default: %(default)s)")
    serve.add_argument("--snapshot-interval", type=float, default=1800.0, metavar="S",
                       help="take a snapshot every S seconds; 0: not by time "
                            "(default: %(default)s)")
    serve.add_argument("--snapshot-log-mb", type=int, default=1024, metavar="MB",
                       help="take a snapshot when a partition's command log passes MB; "
                            "0: not by size (default: %(default)s)")
    serve.add_argument("--idempotency-window", type=positive_int, default=100_000, metavar="N",
                       help="idempotency keys whose outcome each partition (and the "
                            "coordinator) remembers, the oldest forgotten first; a retry "
                            "within the window gets the first outcome (default: %(default)s)")
    serve.add_argument("--max-frame-bytes", type=positive_int, default=DEFAULT_MAX_FRAME_BYTES,
                       metavar="N", help="largest frame accepted (default: %(default)s)")
    serve.add_argument("--max-connections", type=positive_int, default=DEFAULT_MAX_CONNECTIONS,
                       metavar="N", help="client connections per process (default: %(default)s)")
    serve.add_argument("--max-inflight", type=positive_int, default=DEFAULT_MAX_INFLIGHT,
                       metavar="N", help="calls in flight per connection (default: %(default)s)")
    serve.add_argument("--max-params", type=positive_int, default=DEFAULT_MAX_PARAMS,
                       metavar="N", help="parameters per call (default: %(default)s)")
    serve.add_argument("--log-level", default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="log level (default: %(default)s)")
    serve.set_defaults(func=_serve)


def _add_voter(sub) -> None:
    from flowstate.voterbench import add_arguments, run_from_args
    voter = sub.add_parser(
        "voter", help="drive a running server with VoltDB's Voter workload",
        description="VoltDB's Voter benchmark client: calls Initialize, then keeps "
                    "--inflight Vote calls in flight on each of --connections client "
                    "connections (closed loop: each answer sends the next call) for "
                    "--warmup seconds, then measures for --duration seconds and prints "
                    "the throughput, latency percentiles, the outcome of the calls and "
                    "the Results. Exit status 1 if any call failed, 2 if the server "
                    "cannot be reached.")
    add_arguments(voter)
    voter.set_defaults(func=run_from_args)


def _verify(args) -> int:
    from flowstate.server.network import setup_logging
    from flowstate.server.verify import verify
    setup_logging("verify", "WARNING")
    return verify(args.data, args.app)


def _snapshot(args) -> int:
    import datetime
    import json

    from flowstate.client import Client
    from flowstate.errors import FlowstateError
    if args.action == "list" and args.data:
        from flowstate.server.snapshot_folder import describe
        snapshots = describe(args.data)
    else:
        try:
            with Client(args.server, timeout=args.timeout) as client:
                if args.action == "save":
                    result = client.call("@SnapshotSave").result
                    print(json.dumps(result, indent=1) if args.json else
                          f"snapshot {result['cut']}: {result['bytes']:,} bytes, "
                          f"{result['rows']:,} rows in {result['seconds']:.2f} s "
                          f"(partitions paused {result['cut_ms']:.1f} ms) -> {result['path']}")
                    return 0
                snapshots = client.call("@SnapshotStatus").result["snapshots"]
        except FlowstateError as e:
            print(f"flowstate snapshot: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(snapshots, indent=1))
        return 0
    if not snapshots:
        print("no snapshots")
    for entry in snapshots:
        when = datetime.datetime.fromtimestamp(entry.get("created_at") or 0).isoformat(
            sep=" ", timespec="seconds")
        state = "complete" if entry["complete"] else "INCOMPLETE (ignored by recovery)"
        print(f"{entry['cut']:>10}  {when}  {entry['bytes']:>14,} bytes  {entry['files']} "
              f"file(s)  {state}  {entry['path']}")
    return 0


def _add_snapshot(sub) -> None:
    snapshot = sub.add_parser(
        "snapshot", help="take a snapshot now, or list the snapshots",
        description="save: ask a running server for a snapshot (a consistent cut of every "
                    "partition, written by forked processes while the partitions serve) and "
                    "wait until it is complete. list: the snapshots of a running server, or "
                    "of a data folder with --data.")
    snapshot.add_argument("action", choices=["save", "list"])
    snapshot.add_argument("--server", default="localhost:21212", metavar="HOST:PORT",
                          help="the server (default: %(default)s)")
    snapshot.add_argument("--data", metavar="DIR", default=None,
                          help="list: read this data folder instead of asking a server")
    snapshot.add_argument("--timeout", type=float, default=600.0, metavar="S",
                          help="how long to wait for the snapshot (default: %(default)s)")
    snapshot.add_argument("--json", action="store_true", help="print JSON")
    snapshot.set_defaults(func=_snapshot)


def _add_verify(sub) -> None:
    verify = sub.add_parser(
        "verify", help="audit a data folder offline: recover it and print its state's hash",
        description="Rebuild every partition of a data folder exactly as a starting server "
                    "would (command logs, then the coordinator's decisions), without changing "
                    "the folder, and print each table's row count and content hash. The "
                    "hashes equal those @StateHash gives for a live server at the same point. "
                    "Exit status 1 if replay found a determinism fault, 2 if the folder "
                    "cannot be recovered.")
    verify.add_argument("data", metavar="DATA_DIR", help="the server's --data folder")
    verify.add_argument("--app", metavar="DIR", default=None,
                        help="application folder (default: the one the folder was served with)")
    verify.set_defaults(func=_verify)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowstate",
        description="Flowstate: a partitioned, in-memory, transactional database server.")
    parser.add_argument("--version", action="version", version=f"flowstate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    _add_verify(sub)
    _add_snapshot(sub)
    _add_voter(sub)

    demo = sub.add_parser(
        "demo", help="run the Voter application in process and print the results",
        description="Load an application (default: the bundled Voter app) into an "
                    "in-process partition, initialize it, run VoltDB's Voter workload "
                    "through it and print the throughput, the outcome of the calls, "
                    "the results and the size of each table.")
    demo.add_argument("--app", metavar="DIR", default=None,
                      help="application folder with schema.sql (default: the Voter app)")
    demo.add_argument("--votes", type=int, default=200_000, metavar="N",
                      help="number of Vote calls (default: %(default)s)")
    demo.add_argument("--contestants", type=int, default=6, metavar="N",
                      help="number of contestants, 1..12 (default: %(default)s)")
    demo.add_argument("--max-votes", type=int, default=2, metavar="N",
                      help="votes allowed per phone number (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=42,
                      help="seed of the call generator (default: %(default)s)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "votes", 0) < 0:
        parser.error("--votes must not be negative")
    return args.func(args)
