-- A bank whose every change is identifiable, for the crash tests
-- (tests/test_crash.py).
--
-- Each call that changes an account appends one ledger row to it, keyed by
-- (account, entry number), carrying the caller's unique call id: the
-- ledger says exactly which calls were applied, in which order, and that
-- none was applied twice (a second application would add a second row
-- with the same call id).

CREATE TABLE accounts
(
  id      BIGINT NOT NULL PRIMARY KEY
, balance BIGINT NOT NULL
, entries BIGINT NOT NULL
);
PARTITION TABLE accounts ON COLUMN id;

-- kind: 0 open, 1 deposit, 2 transfer out, 3 transfer in
CREATE TABLE ledger
(
  account       BIGINT  NOT NULL
, entry         BIGINT  NOT NULL
, call_id       BIGINT  NOT NULL
, kind          TINYINT NOT NULL
, amount        BIGINT  NOT NULL
, balance_after BIGINT  NOT NULL
, PRIMARY KEY (account, entry)
);
PARTITION TABLE ledger ON COLUMN account;

-- Grouped by the partitioning column: one whole row per account.
CREATE VIEW v_ledger_by_account
(
  account
, entries
, total
)
AS
   SELECT account
        , COUNT(*)
        , SUM(amount)
     FROM ledger
 GROUP BY account;

-- Grouped by another column: a partial row per partition.
CREATE VIEW v_ledger_by_kind
(
  kind
, entries
, total
)
AS
   SELECT kind
        , COUNT(*)
        , SUM(amount)
     FROM ledger
 GROUP BY kind;

-- single-partition
CREATE PROCEDURE FROM CLASS ledger.Open;
CREATE PROCEDURE FROM CLASS ledger.Deposit;
CREATE PROCEDURE FROM CLASS ledger.PartitionDump;

-- multi-partition
CREATE PROCEDURE FROM CLASS ledger.Transfer;
CREATE PROCEDURE FROM CLASS ledger.Dump;
CREATE PROCEDURE FROM CLASS ledger.HeldTransfer;
