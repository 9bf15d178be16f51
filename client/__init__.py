"""The Flowstate client driver.

    from flowstate.client import Client
    with Client("localhost:21212") as c:
        print(c.call("Vote", 5085551234, 3, 2).result)

``Client`` blocks (thread- and gevent-safe); ``AsyncClient`` is for
asyncio. Both keep many calls in flight per connection, route each
single-partition call to its owner, time calls out, reconnect after a
server restart, and raise flowstate.errors exceptions.
"""

from flowstate.client.aio import AsyncClient
from flowstate.client.common import Response
from flowstate.client.sync import Client
from flowstate.errors import (AbortedError, CallTimeoutError, ConnectionLostError,
                              FlowstateError, OutcomeUnknownError, OverloadedError,
                              RejectedError, UserAbortError)

__all__ = ["Client", "AsyncClient", "Response", "FlowstateError", "RejectedError",
           "AbortedError", "OutcomeUnknownError", "OverloadedError", "UserAbortError",
           "ConnectionLostError", "CallTimeoutError"]
