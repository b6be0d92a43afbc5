"""Topic names. Each service publishes to `<service>.events`; a record a consumer cannot handle goes to
`<topic>.dlq`."""

from __future__ import annotations

SERVICES = ("order", "dispatch", "redemption", "aftersales", "notify")


def events_topic(service: str) -> str:
    return f"{service}.events"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics() -> list[str]:
    topics = [events_topic(s) for s in SERVICES]
    return topics + [dlq_topic(t) for t in topics]
