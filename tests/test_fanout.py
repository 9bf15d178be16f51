"""Multi-partition table handles (server/fanout.py) against one partition
holding every row: the same reads must give the same answers.

The cluster here is real Partition executors in process; fragments go
through the wire encoding, as they do between the coordinator and the
partition processes.
"""

import random
import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from flowstate.protocol import pack, unpack
from flowstate.routing import Topology
from flowstate.server.application import load_application
from flowstate.server.fanout import fanout_database
from flowstate.server.partition import Partition

SCHEMA = """
CREATE TABLE accounts (id BIGINT NOT NULL PRIMARY KEY, owner VARCHAR(20) NOT NULL,
                       balance BIGINT, branch INTEGER NOT NULL);
PARTITION TABLE accounts ON COLUMN id;
CREATE INDEX accounts_by_branch ON accounts (branch);
CREATE VIEW by_owner (owner, n, total, lowest, highest) AS
    SELECT owner, COUNT(*), SUM(balance), MIN(balance), MAX(balance) FROM accounts GROUP BY owner;
CREATE VIEW by_id (id, n) AS SELECT id, COUNT(*) FROM accounts GROUP BY id;
CREATE TABLE branches (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(20));
"""


class InProcessCluster:
    def __init__(self, app, partitions):
        self.topology = Topology(partitions)
        self.partitions = [Partition(app, i, partitions=partitions) for i in range(partitions)]
        for p in self.partitions:         # one multi-partition transaction, as the coordinator opens
            p.begin_fragments(1, 1)

    def fragment(self, partition, table, op, args):
        args = unpack(pack(args))
        return unpack(pack(self.partitions[partition].run_fragment(table, op, args)))

    def broadcast(self, table, op, args):
        return [self.fragment(i, table, op, args) for i in range(len(self.partitions))]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fanout_app")
    (folder / "schema.sql").write_text(textwrap.dedent(SCHEMA))
    return load_application(folder)


rows = st.lists(st.tuples(st.integers(-2**40, 2**40), st.sampled_from(["ann", "bob", "cy", "dee"]),
                          st.one_of(st.none(), st.integers(-1000, 1000)), st.integers(0, 5)),
                max_size=60, unique_by=lambda r: r[0])


@settings(max_examples=60, deadline=None)
@given(rows=rows, partitions=st.integers(1, 4), deleted=st.integers(0, 10))
def test_fanout_reads_equal_one_partition(app, rows, partitions, deleted):
    reference = Partition(app)
    cluster = InProcessCluster(app, partitions)
    db = fanout_database(app.catalog, cluster)
    for row in rows:
        reference.db.accounts.insert(*row)
        db.accounts.insert(*row)
    for row in random.Random(deleted).sample(rows, min(deleted, len(rows))):
        deleted = reference.db.accounts.delete(row[0])
        assert db.accounts.delete(row[0]) == deleted
    ref = reference.db
    assert len(db.accounts) == len(ref.accounts)
    assert sorted(db.accounts.scan()) == sorted(ref.accounts.scan())
    for row in rows[:10]:
        assert db.accounts.get(row[0]) == ref.accounts.get(row[0])
    # views: a group spanning partitions is merged into one row
    assert sorted(db.by_owner.scan()) == sorted(ref.by_owner.scan())
    assert len(db.by_owner) == len(ref.by_owner)
    for owner in ["ann", "bob", "cy", "dee", "zed"]:
        assert db.by_owner.get(owner) == ref.by_owner.get(owner)
    assert sorted(db.by_id.scan()) == sorted(ref.by_id.scan())
    # a secondary index across partitions, in order, with a limit
    for reverse in (False, True):
        got = db.accounts.index("accounts_by_branch").range(1, 4, reverse=reverse, limit=7)
        want = ref.accounts.index("accounts_by_branch").range(1, 4, reverse=reverse, limit=7)
        assert [r.branch for r in got] == [r.branch for r in want]
    assert sorted(db.accounts.index("accounts_by_branch").find(2)) == \
        sorted(ref.accounts.index("accounts_by_branch").find(2))
    def values(array):                   # NULL is NaN in a numpy column
        return sorted((None if v != v else v for v in array.tolist()), key=repr)
    assert values(db.accounts.column_array("balance")) == \
        values(ref.accounts.column_array("balance"))


def test_replicated_writes_reach_every_copy(app):
    cluster = InProcessCluster(app, 3)
    db = fanout_database(app.catalog, cluster)
    db.branches.insert(1, "north")
    db.branches.update(1, name="south")
    assert [p.db.branches.get(1).name for p in cluster.partitions] == ["south"] * 3
    assert db.branches.get(1).name == "south"
    assert len(db.branches) == 1


def test_an_update_cannot_move_a_row(app):
    from flowstate.errors import ConstraintError
    cluster = InProcessCluster(app, 2)
    db = fanout_database(app.catalog, cluster)
    db.accounts.insert(7, "ann", 1, 0)
    with pytest.raises(ConstraintError, match="partitions the table"):
        db.accounts.update(7, id=8)
