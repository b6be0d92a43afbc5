"""Every consumer's view of an event against the publisher's model: a consumer that reads a field the publisher
renamed, retyped, made optional or stopped sending fails here, not in production. And the event catalogue
(docs/events/asyncapi.json) is the one the models generate."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pydantic import create_model

from services import event_catalogue
from services.aftersales.handlers import AftersalesReactions
from services.dispatch.handlers import DispatchReactions
from services.notify.handlers import NotifyReactions
from services.order import events as order_events
from services.order.handlers import OrderReactions
from services.redemption.consumed import OrderToCode
from services.redemption.handlers import RedemptionReactions
from shared.clock import SystemClock
from shared.events.catalogue import asyncapi_document
from shared.events.contracts import EventPayload, EventView, Handles
from tests.contracts.compat import incompatibilities

UNUSED: Any = None  # the reactions' collaborators: registering handlers touches none of them


def consumed() -> list[tuple[str, str, type[EventView]]]:
    """(consumer, event type, view) for every event handler a service registers."""
    consumers = {
        "order": OrderReactions(settings=UNUSED, clock=SystemClock(), payment_client=None).event_handlers(),
        "dispatch": DispatchReactions(UNUSED).event_handlers(),
        "redemption": RedemptionReactions(settings=UNUSED, clock=SystemClock(), vault=UNUSED).event_handlers(),
        "aftersales": AftersalesReactions(UNUSED, SystemClock()).event_handlers(),
        "notify": NotifyReactions(UNUSED, SystemClock()).event_handlers(),
    }
    found = []
    for consumer, handlers in consumers.items():
        for event_type, handler in handlers.items():
            assert isinstance(handler, Handles), f"{consumer} handles {event_type} without a view (use handles())"
            found.append((consumer, event_type, cast(type[EventView], handler.view)))
    return found


def published() -> dict[str, type[EventPayload]]:
    return {t: model for models in event_catalogue.PUBLISHERS.values() for t, model in models.items()}


CONSUMED = consumed()


@pytest.mark.parametrize(("consumer", "event_type", "view"), CONSUMED, ids=[f"{c}:{t}" for c, t, _ in CONSUMED])
def test_every_view_fits_its_publishers_model(consumer: str, event_type: str, view: type[EventView]) -> None:
    model = published().get(event_type)
    assert model is not None, f"{consumer} consumes {event_type}, which nobody publishes"
    assert incompatibilities(view, model) == []


def test_every_consumed_type_has_a_publisher() -> None:
    unpublished = {t for _, t, _ in CONSUMED} - set(published())
    assert unpublished == set()


def _renamed(model: type[EventPayload], old: str, new: str) -> type[EventPayload]:
    """A copy of `model` with field `old` renamed `new`, as a publisher's careless refactoring would leave it."""
    fields: dict[str, Any] = {
        (new if name == old else name): (info.annotation, info) for name, info in model.model_fields.items()
    }
    return create_model(model.__name__, __base__=EventPayload, **fields)


def test_renaming_a_field_a_consumer_reads_breaks_the_contract() -> None:
    paid = order_events.PUBLISHED[order_events.PAID]
    assert incompatibilities(OrderToCode, paid) == []
    renamed = _renamed(paid, "fulfilment_mode", "mode")
    assert incompatibilities(OrderToCode, renamed) == ["OrderToCode.fulfilment_mode: the publisher sends no such field"]
    # A field no consumer reads may be renamed freely.
    assert incompatibilities(OrderToCode, _renamed(paid, "note", "remark")) == []


def test_retyping_or_loosening_a_field_breaks_the_contract() -> None:
    class Retyped(EventPayload):
        order_id: int
        fulfilment_mode: str | None
        merchant_id: str
        customer_id: str
        store: dict[str, str]
        items: list[dict[str, Any]]
        amounts: dict[str, int]

    assert incompatibilities(OrderToCode, Retyped) == [
        "OrderToCode.order_id: the publisher sends integer; the view takes ['string']",
        "OrderToCode.fulfilment_mode: the publisher sends null; the view takes ['string']",
    ]


def test_the_event_catalogue_is_current() -> None:
    assert event_catalogue.DOCUMENT.read_text(encoding="utf-8") == event_catalogue.rendered(), (
        "docs/events/asyncapi.json is stale: run make events-doc"
    )


def test_the_catalogue_lists_every_published_event_with_its_schema() -> None:
    document = asyncapi_document(event_catalogue.PUBLISHERS)
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == {"order.events", "dispatch.events", "redemption.events", "aftersales.events"}
    assert set(document["components"]["messages"]) == set(published())
    redeemed = document["components"]["messages"]["code.redeemed.v1"]
    assert redeemed["payload"]["allOf"][1]["properties"]["data"] == {"$ref": "#/components/schemas/CodeRedeemed"}
    schema = document["components"]["schemas"]["CodeRedeemed"]
    assert {"code_id", "kind", "order_id", "redemption_id", "redeemed_by"} <= set(schema["required"])
