"""Flowstate: a partitioned, in-memory, transactional database server.

Public entry points:
  * ``flowstate.client`` — Client, AsyncClient: the driver;
  * ``flowstate.procedures`` — Procedure, PartitionOn, Abort, ResultTable:
    what application code uses;
  * ``flowstate.server.partition.Partition`` — an application loaded in
    process, without the network;
  * ``flowstate.errors`` — every error a user can meet, by code;
  * ``flowstate.types`` — column types;
  * the ``flowstate`` command (flowstate.cli).
"""

import os as _os

__version__ = "0.1.0"

# In a source checkout, ``flowstate.client``, ``.server``, ``.procedures``
# and ``.native`` live in top-level folders that the installed package maps
# under flowstate/ (pyproject's package-dir). Python started in the
# checkout imports this folder instead of the installed package, so let
# it find those folders too.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "pyproject.toml")) and \
        _os.path.isfile(_os.path.join(_checkout, "server", "partition_node.py")):
    __path__.append(_checkout)
