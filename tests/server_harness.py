"""Real `flowstate serve` processes for integration tests.

``ServerProcess`` starts the server as a user would (``python -m
flowstate serve --port 0``), waits for its ``ready:`` log line, and
reads the client port and the child processes' pids from the log.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flowstate.routing import Topology

__all__ = ["ServerProcess", "pid_alive", "free_port_run", "owned_by", "wait_until"]

_READY = re.compile(r"ready: application \S+ on (\S+):(\d+) with (\d+) partition")
_STARTED = re.compile(r"started (partition \d+|coordinator) \(pid (\d+), port (\d+)\)")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class ServerProcess:
    def __init__(self, tmp_path: Path, app=None, partitions: int | None = 2, extra=(),
                 start_timeout: float = 60.0):
        """``partitions``: None starts without --partitions (the default)."""
        self.log_path = Path(tmp_path) / f"server-{time.monotonic_ns()}.log"
        self.data = Path(tmp_path) / "data"
        args = [sys.executable, "-m", "flowstate", "serve", "--port", "0",
                "--data", str(self.data), *extra]
        if partitions is not None:
            args += ["--partitions", str(partitions)]
        if app is not None:
            args += ["--app", str(app)]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        while True:
            text = self.log
            match = _READY.search(text)
            if match:
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{text}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the server did not become ready:\n{text}")
            time.sleep(0.05)
        self.host, self.port = match.group(1), int(match.group(2))
        self.partitions = int(match.group(3))
        self.children = {name: int(pid) for name, pid, _ in _STARTED.findall(text)}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGINT, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.children.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.stop()
        self.kill()


def wait_until(predicate, timeout: float = 30.0, what: str = "the condition"):
    """Poll ``predicate`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def owned_by(partition: int, start: int, count: int, partitions: int = 2) -> list[int]:
    """``count`` integer keys from ``start`` up that ``partition`` owns."""
    topology = Topology(partitions)
    found, key = [], start
    while len(found) < count:
        if topology.partition_of(key) == partition:
            found.append(key)
        key += 1
    return found


def free_port_run(count: int = 3) -> int:
    """A port p with p .. p+count-1 all free just now (the server listens on
    its port and one more per partition). Picked below the kernel's range
    of ephemeral ports, so that no outgoing connection on this (shared)
    machine takes one of them between a stop and the next start."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    rng = random.Random()
    for _ in range(500):
        if ephemeral_low - count > 10_000:
            port = rng.randrange(10_000, ephemeral_low - count)
        else:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        socks = []
        try:
            for p in range(port, port + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports found")
