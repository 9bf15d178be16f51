"""Writes tests/data/<name>.tar.gz: a small data folder of this release's
on-disk formats, and its expected state, so that later releases are tested
against recovering it.

    python tests/data/make_folder.py v2-voter-2p

Folders kept: v1-voter-2p (command log v1, snapshot v1), v2-voter-2p
(command log v2: change digests; snapshot v1 with the change digest in
its meta).

The folder: the Voter app on 2 partitions, Initialize, 300 votes, a
snapshot, 200 more votes (in the log after the snapshot's cut), stopped
cleanly. Do not regenerate an existing one: it stands for what users of
that release have on disk.
"""

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from server_harness import ServerProcess  # noqa: E402

from flowstate.client import Client  # noqa: E402


def main(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), partitions=2,
                               extra=["--log-segment-mb", "1", "--snapshot-interval", "0"])
        with Client(server.address) as client:
            client.call("Initialize", 6)
            for i in range(300):
                client.call("Vote", 2125550000 + i * 7919 % 10_000, i % 7 + 1, 2)
            client.call("@SnapshotSave")
            for i in range(200):
                client.call("Vote", 6175550000 + i * 104729 % 10_000, i % 6 + 1, 2)
            expected = {"state_hash": client.call("@StateHash").result,
                        "results": [list(r) for r in client.call("Results").result],
                        "change_digests": [p["change_digest"] for p in
                                           client.call("@Statistics").result["partitions"]]}
        assert server.stop() == 0
        (server.data / "flowstate.lock").unlink()
        (server.data / "expected.json").write_text(json.dumps(expected, indent=1))
        with tarfile.open(HERE / f"{name}.tar.gz", "w:gz") as tar:
            tar.add(server.data, arcname=name)
    subprocess.run(["ls", "-la", str(HERE)])


if __name__ == "__main__":
    main(sys.argv[1])
