"""`flowstate verify DATA_DIR`: an offline audit of a data folder.

Rebuilds every partition in this process exactly as a starting server
would (server/recovery.py: the command log, then the coordinator's
decisions), without changing a byte of the folder, and prints each
table's row count and content hash (Partition.state_hash, combined by
cluster_state_hash). Run twice it prints the same; against a live server
stopped at the same point, `@StateHash` gives the same hashes.

Exit status: 0 when the folder recovers cleanly, 1 when replay found a
determinism fault, 2 when the folder cannot be recovered (a damaged log,
no such folder).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from flowstate.errors import FlowstateError
from flowstate.server.application import load_application
from flowstate.server.files import write_json
from flowstate.server.partition import Partition, cluster_state_hash
from flowstate.server.recovery import recover_partition

__all__ = ["verify", "read_folder_description", "write_folder_description", "FOLDER_FILE"]

#: What the supervisor records about a data folder: the application and the
#: number of partitions it was written with.
FOLDER_FILE = "flowstate.json"


def read_folder_description(data_dir) -> dict | None:
    path = Path(data_dir) / FOLDER_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_folder_description(data_dir, description: dict) -> None:
    write_json(Path(data_dir) / FOLDER_FILE, description)


def verify(data_dir, app_path=None, out=sys.stdout) -> int:
    data = Path(data_dir)
    description = read_folder_description(data)
    if description is None:
        print(f"flowstate verify: {data} is not a Flowstate data folder (no {FOLDER_FILE})",
              file=sys.stderr)
        return 2
    try:
        app = load_application(app_path or description["app"])
    except FlowstateError as e:
        print(f"flowstate verify: cannot load the application: {e}"
              + ("" if app_path else " (the folder names it; give another with --app DIR)"),
              file=sys.stderr)
        return 2
    partitions = description["partitions"]
    started = time.perf_counter()
    hashes, faults, replayed = [], 0, 0
    for i in range(partitions):
        partition = Partition(app, i, partitions=partitions)
        try:
            recovered = recover_partition(partition, data)
        except FlowstateError as e:
            print(f"flowstate verify: partition {i}: {e}", file=sys.stderr)
            return 2
        replayed += recovered["replayed"]
        faults += partition.determinism_faults
        hashes.append(partition.state_hash())
    state = cluster_state_hash(app.catalog, hashes)
    seconds = time.perf_counter() - started
    print(f"{data}: application {app.name}, {partitions} partition(s); {replayed:,} "
          f"transactions replayed", file=out)
    print(f"(recovered in {seconds:.2f} s)", file=sys.stderr)
    width = max(len(name) for name in state["tables"])
    for name, entry in state["tables"].items():
        note = "  (replicated copies differ!)" if entry.get("copies_differ") else ""
        print(f"  {name:<{width}}  {entry['rows']:>12,} rows  {entry['hash']}{note}", file=out)
    print(f"  {'total':<{width}}  {'':>17}  {state['total']}", file=out)
    if faults:
        print(f"{faults} determinism fault(s) during replay: see the messages above",
              file=sys.stderr)
        return 1
    return 0
