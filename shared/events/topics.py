"""Topic names. Each service publishes to `<service>.events`; a record a consumer cannot handle goes to
`<topic>.dlq`."""

from __future__ import annotations

SERVICES = ("order", "dispatch", "redemption", "aftersales", "notify")
# Its first record names the broker's epoch (see shared/events/epoch.py).
EPOCH_TOPIC = "songda.broker-epoch"


def events_topic(service: str) -> str:
    return f"{service}.events"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics() -> list[str]:
    """Every topic the platform uses, the relays' broker epoch included."""
    topics = [events_topic(s) for s in SERVICES]
    return [*topics, *(dlq_topic(t) for t in topics), EPOCH_TOPIC]
