"""The event catalogue: an AsyncAPI 3.0 document of every topic, the event types on it and their payload schemas,
generated from the publishers' models (`PUBLISHED` in each service's events.py), never written by hand.

Each service publishes on `<service>.events`, keyed by the event's subject (the order id, or a voucher's code id);
every record is an `Envelope` whose `data` is the event type's model. Internal consumers read the document to write
their views; tests check that the checked-in copy (docs/events/asyncapi.json) is current.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.events.contracts import EventPayload
from shared.events.envelope import Envelope
from shared.events.topics import events_topic

SCHEMAS = "#/components/schemas/{model}"


def asyncapi_document(publishers: Mapping[str, Mapping[str, type[EventPayload]]]) -> dict[str, Any]:
    """The AsyncAPI document of `publishers`: service -> event type -> model. Deterministic (sorted), so the
    checked-in copy changes only when a model does."""
    models: list[type[EventPayload]] = sorted(
        {model for published in publishers.values() for model in published.values()}, key=lambda m: m.__name__
    )
    refs, definitions = models_json_schema(
        [(Envelope, "serialization"), *((model, "serialization") for model in models)], ref_template=SCHEMAS
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for service in sorted(publishers):
        topic = events_topic(service)
        published = publishers[service]
        for event_type in sorted(published):
            model = published[event_type]
            messages[event_type] = {
                "name": event_type,
                "title": event_type,
                "summary": inspect.cleandoc(model.__doc__ or "") or model.__name__,
                "contentType": "application/json",
                "payload": {
                    "allOf": [
                        refs[(Envelope, "serialization")],
                        {
                            "type": "object",
                            "properties": {
                                "type": {"const": event_type},
                                "source": {"const": service},
                                "data": refs[(model, "serialization")],
                            },
                        },
                    ]
                },
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": "The event's subject (the envelope's `subject`)"},
                        "bindingVersion": "0.5.0",
                    }
                },
            }
        channels[topic] = {
            "address": topic,
            "description": f"Every event the {service} service publishes, keyed by subject (ordered per subject).",
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in sorted(published)},
        }
        operations[f"{service}.publish"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [{"$ref": f"#/channels/{topic}/messages/{t}"} for t in sorted(published)],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Songda events",
            "version": "1",
            "description": inspect.cleandoc(__doc__ or ""),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": definitions.get("$defs", {})},
    }
