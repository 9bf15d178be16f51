"""Flowstate: a partitioned, in-memory, transactional database server.

Public entry points:
  * ``flowstate.procedures`` — Procedure, PartitionOn, Abort, ResultTable:
    what application code uses;
  * ``flowstate.server.partition.Partition`` — an application loaded in
    process (the server issue puts partitions behind the network);
  * ``flowstate.errors`` — every error a user can meet, by code;
  * ``flowstate.types`` — column types;
  * the ``flowstate`` command (flowstate.cli).
"""

__version__ = "0.1.0"
