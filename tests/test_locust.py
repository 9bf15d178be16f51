"""bench/locustfile.py end to end: headless locust drives a real server for a few seconds."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowstate.client import Client

from server_harness import ServerProcess

# Not pytest.importorskip("locust"): importing locust monkey-patches this whole
# pytest process with gevent (threads, sockets, subprocess...), under every
# test that runs after this one. Locust runs in a subprocess here; only look
# for it.
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed (pip install -e '.[test]')", allow_module_level=True)

LOCUSTFILE = Path(__file__).resolve().parent.parent / "bench" / "locustfile.py"
USERS = 10


def locust_command() -> list[str]:
    """The locust of this interpreter's environment."""
    script = Path(sys.executable).with_name("locust")
    return [str(script)] if script.exists() else [sys.executable, "-m", "locust"]


def test_locust_voter(tmp_path):
    with ServerProcess(tmp_path, partitions=2) as server:
        run = subprocess.run(
            [*locust_command(), "-f", str(LOCUSTFILE), "--headless", "-u", str(USERS),
             "-r", str(USERS), "-t", "4s", "--host", f"flowstate://{server.address}",
             "--json", "--only-summary", "--loglevel", "WARNING"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60)
        with Client(server.address) as client:
            votes_recorded = sum(row[2] for row in client.call("Results").result)

    # locust exits 1 when any request failed or a user raised
    assert run.returncode == 0, f"locust exited with {run.returncode}:\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    stats = {entry["name"]: entry for entry in json.loads(run.stdout)}   # --json: final stats
    assert set(stats) <= {"Initialize", "Vote", "Results"}, stats.keys()
    assert {name: entry["num_failures"] for name, entry in stats.items()} == \
        dict.fromkeys(stats, 0)
    assert stats["Initialize"]["num_requests"] == USERS          # each user's on_start
    votes = stats["Vote"]["num_requests"]
    assert votes > 0
    # the votes really landed: some are refused (no such contestant, over the limit)
    assert 0 < votes_recorded <= votes
