"""What every benchmark prints about the machine it ran on: the CPU model,
the git revision and the load average at the start (other work on a
shared machine skews the figures, so the reader should see it), and a
probe of how fast the CPU runs at the moment (``cpu_probe``): on a shared
VM, neighbours that the guest cannot see (no load, no steal reported)
still slow it down."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def git_revision(mark_uncommitted: bool = False) -> str:
    try:
        git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip() or "no commits"
        if mark_uncommitted and subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True).stdout.strip():
            git += " + uncommitted changes"
    except OSError:
        git = "unknown"
    return git


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def cpu_probe(repeats: int = 3) -> float:
    """Milliseconds a fixed pure-Python workload takes, the best of
    ``repeats`` (about 15 ms each on the 2-core VM of bench/RESULTS.md).
    Compare probes within one run: a round whose probe is 1.4 times the
    run's best ran on a machine about that much slower."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i * i & 0xFF
        best = min(best, time.perf_counter() - started)
    return best * 1000
