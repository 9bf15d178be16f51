"""The Voter benchmark client (flowstate.voterbench) against a real server.

Checks what the figures say, never how fast: calls were made, none
failed, the outcome counts add up, and the votes the server's Results
gained are exactly the votes the benchmark's calls were told were
accepted.
"""

import json
import subprocess
import sys

import pytest

from flowstate import voterbench
from flowstate.client import Client

from server_harness import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("voterbench"), partitions=2) as s:
        yield s


def results_total(address) -> int:
    with Client(address) as c:
        return sum(row[2] for row in c.call("Results").result)


def check_figures(f: dict, connections: int, inflight: int) -> None:
    assert f["partitions"] == 2
    assert (f["connections"], f["inflight"]) == (connections, inflight)
    assert f["calls"] > 0
    assert f["failed"] == 0 and f["errors"] == {}
    assert sum(f["outcomes"].values()) == f["calls"]
    assert f["outcomes"]["other"] == 0
    assert f["outcomes"]["accepted"] > 0
    assert f["calls_per_s"] > 0
    assert f["p50_ms"] <= f["p99_ms"] <= f["p999_ms"] <= f["max_ms"]
    total = f["total"]
    assert total["failed"] == 0 and total["still_in_flight"] == 0
    assert sum(total["outcomes"].values()) == total["calls"] >= f["calls"]
    for name, n in f["outcomes"].items():
        assert total["outcomes"][name] >= n
    # the votes the server counted are the votes the calls were told were accepted
    gained = f["results_votes_after"] - f["results_votes_before"]
    assert gained == total["outcomes"]["accepted"]
    assert f["results_match"]
    assert sum(r["total_votes"] for r in f["results"]) == f["results_votes_after"]


def test_python_api(server):
    before = results_total(server.address)
    f = voterbench.run(server.address, duration=1.5, warmup=0.5, connections=2, inflight=8,
                       seed=7, progress=False)
    check_figures(f, 2, 8)
    assert f["seed"] == 7 and f["affinity"] is True
    assert f["results_votes_before"] == before
    assert results_total(server.address) == f["results_votes_after"]
    assert "Results gained" in voterbench.format_summary(f)


def test_command_line_json(server, tmp_path):
    out = tmp_path / "voter.json"
    proc = subprocess.run(
        [sys.executable, "-m", "flowstate", "voter", "--servers", server.address,
         "--duration", "1.5", "--warmup", "0.5", "--connections", "1", "--inflight", "4",
         "--no-affinity", "--json", str(out)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "throughput" in proc.stdout and "Results gained" in proc.stdout
    f = json.loads(out.read_text())
    check_figures(f, 1, 4)
    assert f["affinity"] is False
    assert results_total(server.address) == f["results_votes_after"]


def test_unreachable_server_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(voterbench, "CONNECT_SECONDS", 0.3)
    status = voterbench.main(["--servers", "127.0.0.1:1", "--duration", "1"])
    assert status == 2
    assert "unreachable" in capsys.readouterr().err


def test_latency_summary_nearest_rank():
    import numpy as np
    counts = np.zeros(100_000, dtype=np.int64)
    counts[100] = 98              # 100-101 us
    counts[5000] = 1              # 5 ms
    s = voterbench.latency_summary(counts, [0.25])      # one call past the buckets: 250 ms
    assert (s["p50_ms"], s["p99_ms"], s["p999_ms"], s["max_ms"]) == (0.101, 5.001, 250.0, 250.0)
    empty = voterbench.latency_summary(np.zeros(10, dtype=np.int64), [])
    assert empty["p50_ms"] is None and empty["max_ms"] is None
