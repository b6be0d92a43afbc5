"""Telling an unreachable database or broker from a failing handler.

An infrastructure failure says nothing about the event: it is retried without limit and never dead-lettered. Anything
else is the handler's (a bug, or an event it cannot take) and counts towards dead-lettering. A third party's outage
seen through an outbound HTTP call (a carrier down while a handler cancels at it) is the handler's too: retrying it
without limit would hold every later event of the partition behind one carrier.
"""

from __future__ import annotations

import httpx
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from asyncpg import PostgresConnectionError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# Connection exceptions (class 08) and insufficient resources (53: disk full, out of memory, too many connections).
RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "53"})
# Serialization failure, deadlock, lock not available, the server shutting down, crashed, or starting up.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})


class SchemaBehind(Exception):
    """The database's schema is behind the code: a function or table the consumer itself needs is not there yet (a
    replica of the new version started before its migration ran). Waited for, as an unreachable database is: every
    event would otherwise be dead-lettered."""


_UNREACHABLE = (
    SchemaBehind,
    OSError,  # connection refused or reset, broken pipe
    TimeoutError,
    PostgresConnectionError,
    DisconnectionError,
    PoolTimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
)


def is_infrastructure_failure(exc: BaseException) -> bool:
    """True when `exc`, or anything in its chain of causes short of an outbound HTTP call, says the database or the
    broker could not be used."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, httpx.HTTPError):
            continue  # an outbound call's failure, whatever socket error lies beneath it
        if isinstance(current, _UNREACHABLE):
            return True
        if isinstance(current, KafkaError) and current.retriable:
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and (
            sqlstate in RETRYABLE_SQLSTATES or sqlstate[:2] in RETRYABLE_SQLSTATE_CLASSES
        ):
            return True
        orig = getattr(current, "orig", None)
        pending.extend(e for e in (current.__cause__, current.__context__, orig) if isinstance(e, BaseException))
    return False
