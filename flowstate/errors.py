"""Every error a Flowstate user can meet, with its fixed numeric code.

This is a leaf module shared by the storage engine, the server and the
client driver: an error raised in a partition travels as (code, message)
and is rebuilt into the same class on the client.

Codes are grouped by what is known about the transaction (VoltDB's
ClientResponse split). A code is never renumbered and never reused; add new
ones at the end of their group.

    1xx  protocol      the frame or the connection is broken
    2xx  rejected      the call never ran: safe to retry
    3xx  aborted       the call ran and rolled back: no effects
    4xx  outcome unknown  the call may or may not have committed
    5xx  internal      a server bug
    6xx  schema        the application's DDL or procedures are invalid

The registry refuses duplicate codes at import time; an unknown code
received from a newer server still decodes (to the class of its group).
"""

from __future__ import annotations

__all__ = [
    "FlowstateError", "ProtocolError", "RejectedError", "AbortedError",
    "OutcomeUnknownError", "InternalError", "SchemaError",
    "MalformedMessageError", "FrameTooLargeError", "UnknownMessageKindError",
    "ProtocolVersionError", "ExpiredError",
    "UnknownProcedureError", "ParameterError", "OverloadedError",
    "UnavailableError", "UserAbortError", "ConstraintError",
    "TypeMismatchError", "ValueOutOfRangeError", "ValueTooLongError",
    "NotNullError", "UniqueViolationError", "ReadOnlyError",
    "ProcedureError", "ConnectionLostError", "CallTimeoutError",
    "error_class_for_code",
]

_REGISTRY: dict[int, type] = {}


class FlowstateError(Exception):
    """Base of every Flowstate error. ``code`` identifies the class on the wire."""

    code = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        code = cls.__dict__.get("code")
        if code is None:
            return
        if code in _REGISTRY:
            raise RuntimeError(f"error code {code} of {cls.__name__} is already "
                               f"taken by {_REGISTRY[code].__name__}")
        _REGISTRY[code] = cls

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


# -- groups -----------------------------------------------------------------

class ProtocolError(FlowstateError):
    """A frame could not be parsed or broke the protocol."""
    code = 100


class RejectedError(FlowstateError):
    """The call never ran: nothing happened, it is safe to retry."""
    code = 200


class AbortedError(FlowstateError):
    """The call ran and was rolled back: it left no effects."""
    code = 300


class OutcomeUnknownError(FlowstateError):
    """The call may or may not have committed (connection lost, timeout)."""
    code = 400


class InternalError(FlowstateError):
    """A bug in the server. Please report it with the server log."""
    code = 500


class SchemaError(FlowstateError):
    """The application's schema or procedures are invalid."""
    code = 600


class MalformedMessageError(ProtocolError):
    """A frame body that is not msgpack, or a message of the wrong shape."""
    code = 101


class FrameTooLargeError(ProtocolError):
    """A frame over the receiver's size limit; it was skipped unread."""
    code = 102


class UnknownMessageKindError(ProtocolError):
    code = 103


class ProtocolVersionError(ProtocolError):
    """The client and the server speak no common protocol version."""
    code = 104


# -- rejected ---------------------------------------------------------------

class UnknownProcedureError(RejectedError):
    code = 201


class ParameterError(RejectedError):
    """Wrong number or types of parameters for a procedure."""
    code = 202


class OverloadedError(RejectedError):
    code = 203


class UnavailableError(RejectedError):
    code = 204


class ExpiredError(RejectedError):
    """The call's timeout passed while it waited in a queue; it never ran."""
    code = 205


# -- aborted ----------------------------------------------------------------

class UserAbortError(AbortedError):
    """The procedure raised Abort: its message is for the user."""
    code = 301


class ConstraintError(AbortedError):
    """A write broke a rule of the schema; the statement was undone."""
    code = 310


class TypeMismatchError(ConstraintError):
    code = 311


class ValueOutOfRangeError(ConstraintError):
    code = 312


class ValueTooLongError(ConstraintError):
    code = 313


class NotNullError(ConstraintError):
    code = 314


class UniqueViolationError(ConstraintError):
    code = 315


class ReadOnlyError(ConstraintError):
    """A write to something that cannot be written directly (a view)."""
    code = 316


class ProcedureError(AbortedError):
    """The procedure raised an exception other than Abort."""
    code = 320


# -- outcome unknown --------------------------------------------------------

class ConnectionLostError(OutcomeUnknownError):
    code = 401


class CallTimeoutError(OutcomeUnknownError):
    code = 402


_GROUPS = {1: ProtocolError, 2: RejectedError, 3: AbortedError,
           4: OutcomeUnknownError, 5: InternalError, 6: SchemaError}


def error_class_for_code(code: int) -> type:
    """The class registered for ``code``, or its group's class if unknown."""
    cls = _REGISTRY.get(code)
    if cls is not None:
        return cls
    return _GROUPS.get(code // 100, FlowstateError)
