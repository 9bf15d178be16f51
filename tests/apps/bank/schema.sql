-- A small bank for the cluster integration tests (tests/test_server_cluster.py).

-- Accounts, partitioned on their id. ``home`` is the pid of the partition
-- process that inserted the row, so a test can see where each row went.
CREATE TABLE accounts
(
  id      BIGINT      NOT NULL PRIMARY KEY
, owner   VARCHAR(40) NOT NULL
, balance BIGINT      DEFAULT 0 NOT NULL
, home    BIGINT      NOT NULL
);
PARTITION TABLE accounts ON COLUMN id;

-- Partitioned on a string column.
CREATE TABLE tags
(
  name  VARCHAR(80) NOT NULL PRIMARY KEY
, value BIGINT      NOT NULL
, home  BIGINT      NOT NULL
);
PARTITION TABLE tags ON COLUMN name;

-- Replicated: every partition holds a copy.
CREATE TABLE settings
(
  name  VARCHAR(40) NOT NULL PRIMARY KEY
, value BIGINT      NOT NULL
);

-- single-partition
CREATE PROCEDURE FROM CLASS bank.Open;
CREATE PROCEDURE FROM CLASS bank.Deposit;
CREATE PROCEDURE FROM CLASS bank.Balance;
CREATE PROCEDURE FROM CLASS bank.WhereIs;
CREATE PROCEDURE FROM CLASS bank.Census;
CREATE PROCEDURE FROM CLASS bank.Tag;
CREATE PROCEDURE FROM CLASS bank.TagCensus;
CREATE PROCEDURE FROM CLASS bank.ReadSetting;
CREATE PROCEDURE FROM CLASS bank.WriteSettingHere;
PARTITION PROCEDURE Deposit ON TABLE accounts COLUMN id;
PARTITION PROCEDURE Tag ON TABLE tags COLUMN name PARAMETER 0;

-- multi-partition
CREATE PROCEDURE FROM CLASS bank.Transfer;
CREATE PROCEDURE FROM CLASS bank.Total;
CREATE PROCEDURE FROM CLASS bank.Accounts;
CREATE PROCEDURE FROM CLASS bank.AbortAfterWrites;
CREATE PROCEDURE FROM CLASS bank.CrashAfterWrites;
CREATE PROCEDURE FROM CLASS bank.OpenPair;
CREATE PROCEDURE FROM CLASS bank.SetSetting;
CREATE PROCEDURE FROM CLASS bank.Sleep;
CREATE PROCEDURE FROM CLASS bank.Hold;
