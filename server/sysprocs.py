"""System procedures: the built-in calls whose names start with ``@``.

    @Ping               0, answered by whichever process receives it
    @Procedures         the application's procedures: name, parameters,
                        partitioning, class (any process answers)
    @SystemInformation  version, application, partitions, topology,
                        addresses, processes (the coordinator answers)
    @StateHash          each table's row count and content hash, and a
                        total: equal states hash equal (what `flowstate
                        verify` prints for a data folder)
    @SnapshotSave       take a snapshot now (a consistent cut of every
                        partition, written by forks while they serve);
                        answers when it is complete: cut, path, bytes, rows
    @SnapshotStatus     the snapshots in the data folder
    @Statistics         per partition: calls, aborts, queue depth,
                        connections, rows and memory per table, latency
                        histogram; plus the coordinator's counters
                        (the coordinator gathers them)

A partition forwards the cluster-wide ones to the coordinator, so any
process accepts any of them.
"""

from __future__ import annotations

import os
import platform
import time

from flowstate.errors import ParameterError, UnknownProcedureError

__all__ = ["NAMES", "CLUSTER_WIDE", "local", "welcome_info", "system_information",
           "check_array"]

NAMES = ("@Ping", "@Procedures", "@SystemInformation", "@Statistics", "@StateHash",
         "@SnapshotSave", "@SnapshotStatus")
CLUSTER_WIDE = frozenset({"@SystemInformation", "@Statistics", "@StateHash", "@SnapshotSave",
                          "@SnapshotStatus"})


def check_array(name: str, params) -> None:
    """ParameterError unless a call's parameters are an array."""
    if type(params) is not list and type(params) is not tuple:
        raise ParameterError(f"{name}: the parameters must be an array, "
                             f"got {type(params).__name__}")


def _no_parameters(name: str, params) -> None:
    if params:
        raise ParameterError(f"{name} takes no parameters, got {len(params)}")


def local(node, name: str, params):
    """Answer a system procedure any process can answer itself."""
    if name == "@Ping":
        _no_parameters(name, params)
        return 0
    if name == "@Procedures":
        _no_parameters(name, params)
        seen = {}
        for bound in node.procedures.values():
            seen.setdefault(bound.name, bound.describe())
        return list(seen.values())
    raise UnknownProcedureError(f"there is no system procedure {name!r}; there are "
                                f"{', '.join(NAMES)}")


def welcome_info(node, process) -> dict:
    config = node.config
    procedures = {}
    for bound in node.procedures.values():
        procedures[bound.name] = bound.partition_parameter
    return {
        "app": config["app_name"],
        "partitions": config["partitions"],
        "topology": node.topology.to_wire(),
        "addresses": config["addresses"],
        "coordinator": config["coordinator_address"],
        "process": process,
        "procedures": procedures,
        "limits": {key: node.limits[key] for key in
                   ("max_frame_bytes", "max_params", "max_inflight")},
    }


def system_information(node) -> dict:
    config = node.config
    return {
        "version": node.server_version(),
        "app": config["app_name"],
        "app_path": config["app"],
        "partitions": config["partitions"],
        "topology": node.topology.to_wire(),
        "addresses": config["addresses"],
        "coordinator": config["coordinator_address"],
        "data_dir": config.get("data_dir"),
        "coordinator_pid": os.getpid(),
        "uptime_seconds": round(time.time() - node.started, 3),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "limits": dict(node.limits),
    }
