"""Loading an application: its schema.sql and its procedure classes.

An application is a folder holding ``schema.sql`` and the Python modules
its ``CREATE PROCEDURE FROM CLASS module.Class`` statements name. Modules
are imported as members of a private package whose path is the folder
(``flowstate_app_<n>.module``), so two applications never collide in
sys.modules and a module of the app may import its siblings relatively.

Invariants of a loaded Application:
1. Every ProcedureDef of the catalog has a class here, a subclass of
   flowstate.procedures.Procedure with a ``run`` method.
2. ``partitioning[name]`` is the procedure's partitioning, agreed by the
   DDL and the class's ``partition`` attribute (either may give it; if
   both do they must be equal), checked against the catalog.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from flowstate.errors import SchemaError
from flowstate.procedures import PartitionOn, Procedure
from flowstate.server.catalog import Catalog, ProcedureDef, ProcedurePartition

__all__ = ["Application", "load_application", "run_parameters", "DEFAULT_APP"]

#: The bundled Voter application, the default of every command.
DEFAULT_APP = Path(__file__).resolve().parent.parent / "procedures" / "voter"

_package_numbers = itertools.count(1)


@dataclass
class Application:
    name: str
    path: Path
    catalog: Catalog
    procedures: dict[str, type] = field(default_factory=dict)         # by declared name
    partitioning: dict[str, ProcedurePartition | None] = field(default_factory=dict)


def load_application(path: str | Path | None = None) -> Application:
    """Read ``path``/schema.sql and import the procedure classes it names."""
    path = Path(path) if path is not None else DEFAULT_APP
    path = path.resolve()
    schema = path / "schema.sql"
    if not schema.is_file():
        raise SchemaError(f"{path}: no schema.sql in the application folder")
    catalog = Catalog.from_file(schema)
    app = Application(name=path.name, path=path, catalog=catalog)
    package = f"flowstate_app_{next(_package_numbers)}"
    module = types.ModuleType(package)
    module.__path__ = [str(path)]
    sys.modules[package] = module
    for proc in catalog.procedures.values():
        cls = _procedure_class(package, path, proc)
        app.procedures[proc.name] = cls
        app.partitioning[proc.name] = _partitioning(catalog, proc, cls)
    return app


def _where(proc: ProcedureDef) -> str:
    return f"schema.sql line {proc.line}: procedure {proc.name}"


def _procedure_class(package: str, path: Path, proc: ProcedureDef) -> type:
    if proc.class_path is None:
        raise SchemaError(f"{_where(proc)}: procedures written as one SQL statement "
                          f"are not supported yet; write a Procedure class")
    module_name, _, class_name = proc.class_path.rpartition(".")
    if not module_name:
        raise SchemaError(f"{_where(proc)}: {proc.class_path!r} must be module.Class")
    try:
        module = importlib.import_module(f"{package}.{module_name}")
    except ModuleNotFoundError as e:
        raise SchemaError(f"{_where(proc)}: no module {module_name!r} in {path} ({e})") from e
    except Exception as e:
        raise SchemaError(f"{_where(proc)}: importing {module_name} failed: "
                          f"{type(e).__name__}: {e}") from e
    cls = getattr(module, class_name, None)
    if cls is None:
        raise SchemaError(f"{_where(proc)}: module {module_name} has no class {class_name}")
    if not (inspect.isclass(cls) and issubclass(cls, Procedure)):
        raise SchemaError(f"{_where(proc)}: {proc.class_path} is not a subclass of "
                          f"flowstate.procedures.Procedure")
    if cls.run is Procedure.run:
        raise SchemaError(f"{_where(proc)}: {proc.class_path} does not define run()")
    return cls


def _partitioning(catalog: Catalog, proc: ProcedureDef, cls: type) -> ProcedurePartition | None:
    declared = cls.partition
    if declared is not None and not isinstance(declared, PartitionOn):
        raise SchemaError(f"{_where(proc)}: {cls.__name__}.partition must be a PartitionOn")
    from_class = (None if declared is None else
                  ProcedurePartition(declared.table.lower(), declared.column.lower(), declared.parameter))
    if proc.partition is not None and from_class is not None and proc.partition != from_class:
        raise SchemaError(f"{_where(proc)}: the DDL partitions it on {proc.partition} but "
                          f"{cls.__name__}.partition says {from_class}")
    partition = proc.partition or from_class
    if partition is None:
        return None
    table = catalog.tables.get(partition.table)
    if table is None or table.partition_column != partition.column:
        raise SchemaError(f"{_where(proc)}: {partition.table}.{partition.column} is not the "
                          f"partition column of a partitioned table")
    params = run_parameters(cls)
    if params is not None and partition.parameter >= params[1]:
        raise SchemaError(f"{_where(proc)}: partition parameter {partition.parameter} but run() "
                          f"takes {params[1]} parameter(s)")
    return partition


def run_parameters(cls: type) -> tuple[int, float] | None:
    """(fewest, most) positional parameters ``run`` accepts."""
    fewest, most = 0, 0
    for p in list(inspect.signature(cls.run).parameters.values())[1:]:
        if p.kind == p.VAR_POSITIONAL:
            most = float("inf")
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            most += 1
            if p.default is p.empty:
                fewest += 1
    return fewest, most


