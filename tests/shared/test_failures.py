"""Which failures pause a partition (the database or broker unreachable) and which count towards the dead-letter
queue (the handler's, including a third party's outage seen through an outbound call)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaConnectionError

from services.dispatch.errors import CarrierUnavailable
from shared.events.failures import is_infrastructure_failure


def _chained(outer: Exception, *causes: Exception) -> Exception:
    current = outer
    for cause in causes:
        current.__cause__ = cause
        current = cause
    return outer


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionRefusedError(111, "refused"),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
        KafkaConnectionError(),
        _chained(RuntimeError("while handling"), asyncpg.exceptions.SerializationError("40001")),
    ],
    ids=["socket", "postgres-connection", "broker", "serialization"],
)
def test_an_unreachable_database_or_broker_pauses(failure: Exception) -> None:
    assert is_infrastructure_failure(failure)


def test_a_carrier_outage_in_a_handler_is_the_handlers_failure() -> None:
    """The carrier's socket error lies beneath the httpx error: it must not make the whole partition wait."""
    outage = _chained(
        CarrierUnavailable("sf: unreachable"),
        httpx.ConnectError("connection refused"),
        ConnectionRefusedError(111, "refused"),
    )
    assert not is_infrastructure_failure(outage)
    assert not is_infrastructure_failure(httpx.ReadTimeout("slow carrier"))


def test_a_bug_is_the_handlers_failure() -> None:
    assert not is_infrastructure_failure(KeyError("order_id"))
