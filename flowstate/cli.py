"""The ``flowstate`` command line.

Subcommands:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowstate",
        description="Flowstate: a partitioned, in-memory, transactional database server.")
    parser.add_argument("--version", action="version", version=f"flowstate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
