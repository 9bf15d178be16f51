"""Real `flowstate serve` processes for integration tests.

``ServerProcess`` starts the server as a user would (``python -m
flowstate serve --port 0``), waits for its ``ready:`` log line, and
reads the client port and the child processes' pids from the log.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ServerProcess", "pid_alive"]

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
    def __init__(self, tmp_path: Path, app=None, partitions: int = 2, extra=(),
                 start_timeout: float = 60.0):
        self.log_path = Path(tmp_path) / f"server-{time.monotonic_ns()}.log"
        self.data = Path(tmp_path) / "data"
        args = [sys.executable, "-m", "flowstate", "serve", "--port", "0",
                "--partitions", str(partitions), "--data", str(self.data), *extra]
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
