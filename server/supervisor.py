"""`flowstate serve`: starts the server's processes, watches them, stops them.

    supervisor (this process, no event loop)
      binds every TCP port first (the coordinator's, then one per
      partition), so a port conflict is reported before anything starts
      and ``--port 0`` works; the listening sockets are inherited
      +- partition 0 .. N-1   python -m flowstate.server.partition_node CONFIG
      +- coordinator          python -m flowstate.server.coordinator CONFIG

Each child gets its configuration as one JSON argument, its listening
socket and a pipe on which it writes ``ready`` once it serves. Children
run in their own session (a terminal's Ctrl-C reaches the supervisor
only, which then stops them in order) and die with the supervisor
(PR_SET_PDEATHSIG), so a killed supervisor leaves no process behind.

Stopping (SIGINT/SIGTERM): SIGTERM to every child; each stops accepting,
lets in-progress calls finish, flushes its answers and exits; a child
still alive after the drain timeout is killed.

A child that dies on its own is logged (which, and how) and, when the
server is durable, restarted with the same socket: it recovers from the
data folder while the others keep serving (calls for it meanwhile get
UnavailableError, which the driver retries with ``retry=True``). Without
durability, or when a child dies five times within a minute, the
supervisor stops the others and exits 1.

The data directory holds ``flowstate.lock`` (one server per directory),
``flowstate.json`` (its application and partition count) and ``log/``
(the command logs, server/commandlog.py).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flowstate.errors import FlowstateError
from flowstate.protocol import (DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME_BYTES,
                                DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_PARAMS)
from flowstate.routing import Topology, default_partitions
from flowstate.server.application import load_application
from flowstate.server.network import setup_logging
from flowstate.server.verify import read_folder_description, write_folder_description

log = logging.getLogger("flowstate")

__all__ = ["serve", "DEFAULT_LIMITS", "DEFAULT_DATA_DIR"]

DEFAULT_DATA_DIR = "flowstate-data"

DEFAULT_LIMITS = {
    "max_frame_bytes": DEFAULT_MAX_FRAME_BYTES,
    "max_params": DEFAULT_MAX_PARAMS,
    "max_inflight": DEFAULT_MAX_INFLIGHT,
    "max_connections": DEFAULT_MAX_CONNECTIONS,
    "max_forwarded": 10_000,           # calls waiting at another process, per link
    "max_queued_mp": 1_000,            # multi-partition calls waiting to run
    "link_connect_seconds": 10.0,
    "fragment_timeout_seconds": 30.0,
    "drain_seconds": 5.0,
    "snapshot_timeout_seconds": 600.0,
}

_PR_SET_PDEATHSIG = 1


def _die_with_parent(supervisor_pid: int) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() != supervisor_pid:     # the supervisor died before prctl took hold
        os._exit(1)


class _Child:
    def __init__(self, name: str, process: subprocess.Popen, ready_fd: int, port: int):
        self.started = 0.0
        self.name = name
        self.process = process
        self.ready_fd = ready_fd
        self.ready = False
        self.port = port


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(1024)
    return sock


def serve(app_path=None, partitions: int | None = None, host: str = "127.0.0.1",
          port: int = 21212, data_dir: str | None = None, limits: dict | None = None,
          log_level: str = "INFO", partition_ports: list[int] | None = None,
          durability: str = "sync", fsync_interval_ms: float = 10.0,
          segment_bytes: int = 64 << 20, snapshot_interval_s: float = 1800.0,
          snapshot_log_bytes: int = 1 << 30, idempotency_window: int = 100_000) -> int:
    """Run the server until SIGINT/SIGTERM; return the exit status."""
    setup_logging("supervisor", log_level)
    limits = {**DEFAULT_LIMITS, **(limits or {})}
    try:
        app = load_application(app_path)
    except FlowstateError as e:
        log.error("cannot load the application: %s", e)
        return 2
    data = Path(data_dir or DEFAULT_DATA_DIR).resolve()
    try:
        data.mkdir(parents=True, exist_ok=True)
        lock = open(data / "flowstate.lock", "a+")
    except OSError as e:
        log.error("cannot use the data directory %s: %s", data, e)
        return 2
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log.error("another server is using the data directory %s", data)
        return 2
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()

    description = read_folder_description(data)
    if partitions is None:               # the folder's own count, else the machine's default
        partitions = (description.get("partitions") if description is not None
                      else None) or default_partitions()
    if description is not None and description.get("partitions") != partitions:
        log.error("the data directory %s was written with %s partition(s); start with "
                  "--partitions %s (moving data between partitions is not supported yet)",
                  data, description.get("partitions"), description.get("partitions"))
        return 2
    write_folder_description(data, {"app": str(app.path), "app_name": app.name,
                                    "partitions": partitions, "durability": durability})

    listeners: list[socket.socket] = []
    try:
        listeners.append(_listen(host, port))
        for i in range(partitions):
            wanted = (partition_ports[i] if partition_ports else
                      (port + 1 + i if port else 0))
            listeners.append(_listen(host, wanted))
    except OSError as e:
        for sock in listeners:
            sock.close()
        log.error("%s", e)
        return 2
    run_dir = tempfile.mkdtemp(prefix="flowstate-")
    topology = Topology(partitions)
    addresses = [[host, s.getsockname()[1]] for s in listeners[1:]]
    coordinator_address = [host, listeners[0].getsockname()[1]]
    base = {
        "app": str(app.path), "app_name": app.name, "partitions": partitions,
        "bucket_map": topology.bucket_map, "addresses": addresses,
        "coordinator_address": coordinator_address,
        "unix_paths": [os.path.join(run_dir, f"p{i}.sock") for i in range(partitions)],
        "channel_paths": [os.path.join(run_dir, f"p{i}.mp.sock") for i in range(partitions)],
        "coordinator_unix_path": os.path.join(run_dir, "coordinator.sock"),
        "data_dir": str(data), "limits": limits, "log_level": log_level,
        "durability": durability, "fsync_interval_ms": fsync_interval_ms,
        "segment_bytes": segment_bytes, "snapshot_interval_s": snapshot_interval_s,
        "snapshot_log_bytes": snapshot_log_bytes, "idempotency_window": idempotency_window,
    }
    stop_requested = []

    def on_signal(signum, frame):
        stop_requested.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    children: list[_Child] = []
    status = 0
    try:
        specs = [(f"partition {i}", "flowstate.server.partition_node",
                  {**base, "partition": i, "unix_path": base["unix_paths"][i],
                   "channel_path": base["channel_paths"][i]}, listeners[i + 1])
                 for i in range(partitions)]
        specs.append(("coordinator", "flowstate.server.coordinator",
                      {**base, "unix_path": base["coordinator_unix_path"]}, listeners[0]))
        for spec in specs:
            children.append(_spawn(*spec))
        status = _wait_ready(children, stop_requested, timeout=60.0)
        if status == 0 and not stop_requested:
            log.info("ready: application %s on %s:%d with %d partition(s) (ports %s); data in %s, "
                     "durability %s", app.name, host, coordinator_address[1], partitions,
                     ", ".join(str(a[1]) for a in addresses), data, durability)
            status = _watch(children, dict(zip((spec[0] for spec in specs), specs)),
                            stop_requested, restart=durability != "off")
    finally:
        _stop(children, limits["drain_seconds"] + 3.0)
        for sock in listeners:
            sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        for s, handler in previous.items():
            signal.signal(s, handler)
        lock.close()
    log.info("server stopped" + ("" if status == 0 else f" (status {status})"))
    return status


def _spawn(name: str, module: str, config: dict, sock: socket.socket) -> _Child:
    """Start one child with its (inherited) listening socket and a ready pipe.
    The supervisor keeps the socket open, so a restarted child gets it back."""
    read_fd, write_fd = os.pipe()
    config = {**config, "listen_fd": sock.fileno(), "ready_fd": write_fd}
    # -P: the working directory stays off sys.path, so a source checkout
    # there cannot shadow the installed package.
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", module, json.dumps(config)],
        pass_fds=(sock.fileno(), write_fd), start_new_session=True,
        preexec_fn=functools.partial(_die_with_parent, os.getpid()), stdin=subprocess.DEVNULL)
    os.close(write_fd)
    log.info("started %s (pid %d, port %d)", name, process.pid, sock.getsockname()[1])
    child = _Child(name, process, read_fd, sock.getsockname()[1])
    child.started = time.monotonic()
    return child


def _wait_ready(children: list[_Child], stop_requested: list, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    waiting = {c.ready_fd: c for c in children}
    while waiting and not stop_requested:
        try:
            readable, _, _ = select.select(list(waiting), [], [], 0.1)
        except InterruptedError:
            continue
        for fd in readable:
            child = waiting.pop(fd)
            line = os.read(fd, 64)
            os.close(fd)
            child.ready_fd = -1
            if line.startswith(b"ready"):
                child.ready = True
            else:
                code = child.process.wait()
                log.error("%s failed to start: %s", child.name, _describe_exit(code))
                return 1
        for child in children:
            code = child.process.poll()
            if code is not None:
                log.error("%s failed to start: %s", child.name, _describe_exit(code))
                return 1
        if time.monotonic() > deadline:
            log.error("gave up waiting for %s to start", ", ".join(c.name for c in waiting.values()))
            return 1
    for fd, child in waiting.items():
        os.close(fd)
        child.ready_fd = -1
    return 0


#: A child that dies more often than this within RESTART_WINDOW seconds is
#: not restarted again: the server stops instead.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


def _watch(children: list[_Child], specs: dict, stop_requested: list, restart: bool) -> int:
    """Watch until a stop signal. A child that dies is restarted (it recovers
    from the data folder while the others serve) when the server is durable;
    otherwise, or when it keeps dying, the server stops with status 1."""
    restarts: dict[str, list[float]] = {}
    while not stop_requested:
        for i, child in enumerate(children):
            if not child.ready and child.ready_fd >= 0:
                readable, _, _ = select.select([child.ready_fd], [], [], 0)
                if readable:
                    line = os.read(child.ready_fd, 64)
                    os.close(child.ready_fd)
                    child.ready_fd = -1
                    if line.startswith(b"ready"):
                        child.ready = True
                        log.info("%s is back (pid %d), recovered in %.2f s", child.name,
                                 child.process.pid, time.monotonic() - child.started)
            code = child.process.poll()
            if code is None:
                continue
            if child.ready_fd >= 0:
                os.close(child.ready_fd)
                child.ready_fd = -1
            now = time.monotonic()
            recent = [t for t in restarts.get(child.name, []) if now - t < RESTART_WINDOW]
            if not restart or len(recent) >= MAX_RESTARTS:
                why = ("it keeps dying" if restart else
                       "without durability its data cannot be recovered")
                log.error("%s (pid %d) died unexpectedly: %s; stopping the server (%s)",
                          child.name, child.process.pid, _describe_exit(code), why)
                return 1
            log.error("%s (pid %d) died unexpectedly: %s; restarting it", child.name,
                      child.process.pid, _describe_exit(code))
            restarts[child.name] = recent + [now]
            children[i] = _spawn(*specs[child.name])
        time.sleep(0.05)
    log.info("received %s: stopping", signal.Signals(stop_requested[0]).name)
    return 0


def _stop(children: list[_Child], timeout: float) -> None:
    alive = [c for c in children if c.process.poll() is None]
    for child in alive:
        try:
            child.process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for child in alive:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not stop in time: killing it", child.name, child.process.pid)
            child.process.kill()
            child.process.wait()
