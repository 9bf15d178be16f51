"""Stored procedures: the API application code uses, and the bundled apps.

``from flowstate.procedures import Procedure, PartitionOn, Abort, ResultTable``
"""

from flowstate.procedures.procedure import Abort, PartitionOn, Procedure, ResultTable

__all__ = ["Procedure", "PartitionOn", "Abort", "ResultTable"]
