"""Merchant webhooks, Standard Webhooks v1: endpoints and their secrets, the messages handed to them, signing.

Every consumed event becomes a message (`webhook-id` = `msg_` + the event's id, the same on every attempt and
replay) for each of the merchant's enabled endpoints that asked for its type (no types: all). The delivery itself
is `webhook_sender`'s job, outside any transaction.

Secrets are `whsec_` + base64 of 32 random bytes, sealed at rest (NOTIFY_VAULT_KEY). Rotating keeps the previous
secret signing beside the new one for `webhook_rotation_overlap_hours`, so a receiver verifying with either accepts
(the `webhook-signature` header lists one `v1,<base64>` per secret, space-separated).
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook

from services.notify.consumed import event_name
from services.notify.models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from shared.events.envelope import Envelope
from shared.vault import Vault

WEBHOOK_CHANNEL = "songda_webhook"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the secrets' prefix, not one)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def message_id(event_id: uuid.UUID | str) -> str:
    return f"msg_{uuid.UUID(str(event_id)).hex}"


def body_of(message: WebhookMessage) -> str:
    """The exact bytes sent and signed: `{type, timestamp, data}`."""
    payload = {"type": message.event_type, "timestamp": message.created_at.isoformat(), "data": message.payload}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def signature_header(secrets: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """`v1,<base64>` for each secret, space-separated: a receiver holding any of them verifies."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


class Secrets:
    """Seals and opens endpoints' signing secrets, each bound to its endpoint's id."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def seal(self, endpoint_id: uuid.UUID, secret: str) -> bytes:
        return self.vault.seal(secret, str(endpoint_id))

    def current(self, endpoint: WebhookEndpoint) -> str:
        return self.vault.open(endpoint.secret, str(endpoint.id))

    def signing(self, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
        """The secrets that sign now: the current one, and the previous one during its overlap."""
        secrets = [self.current(endpoint)]
        if endpoint.previous_secret is not None and endpoint.previous_expires_at and now < endpoint.previous_expires_at:
            secrets.append(self.vault.open(endpoint.previous_secret, str(endpoint.id)))
        return secrets

    def rotate(self, endpoint: WebhookEndpoint, now: datetime, overlap: timedelta) -> str:
        secret = new_secret()
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_expires_at = now + overlap
        endpoint.secret = self.seal(endpoint.id, secret)
        endpoint.updated_at = now
        return secret


# `fan_out`'s choice of endpoints, as one statement outside any transaction: whether any would get the event.
ANY_WANTS = (
    "SELECT EXISTS (SELECT FROM webhook_endpoint WHERE merchant_id = $1 AND disabled_at IS NULL"
    " AND (cardinality(event_types) = 0 OR $2 = ANY (event_types)))"
)


async def anyone_wants(connection: asyncpg.Connection, event: Envelope, merchant_id: str) -> bool:
    """Whether `fan_out` would hand the event to any of the merchant's endpoints, without a transaction."""
    wanted: bool = await connection.fetchval(ANY_WANTS, merchant_id, event_name(event.type))
    return wanted


# A merchant's live endpoints, looked up for every event (built once).
_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
    WebhookEndpoint.merchant_id == bindparam("merchant_id"), WebhookEndpoint.disabled_at.is_(None)
)


async def fan_out(session: AsyncSession, event: Envelope, *, merchant_id: str, now: datetime) -> int:
    """Hands the event to the merchant's endpoints that want it; returns how many deliveries were made."""
    name = event_name(event.type)
    endpoints = (await session.execute(_ENDPOINTS, {"merchant_id": merchant_id})).all()
    wanted = [endpoint_id for endpoint_id, types in endpoints if not types or name in types]
    if not wanted:
        return 0
    msg_id = message_id(event.id)
    await session.execute(
        insert(WebhookMessage)
        .values(id=msg_id, merchant_id=merchant_id, event_type=name, payload=event.data, created_at=event.time)
        .on_conflict_do_nothing(index_elements=[WebhookMessage.id])
    )
    await session.execute(
        insert(WebhookDelivery)
        .values([
            {"id": uuid.uuid4(), "message_id": msg_id, "endpoint_id": endpoint_id, "status": "pending",
             "next_attempt_at": now, "created_at": now}
            for endpoint_id in wanted
        ])
        .on_conflict_do_nothing(index_elements=[WebhookDelivery.message_id, WebhookDelivery.endpoint_id])
    )  # fmt: skip
    await wake(session)
    return len(wanted)


async def wake(session: AsyncSession) -> None:
    """Wakes the senders once the caller's transaction commits."""
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WEBHOOK_CHANNEL})
