"""Routes of merchant webhooks (`/v1/webhooks`, the merchant's admin or ops): endpoints, their secrets and
rotation, every delivery with every attempt, and replay (one delivery, or everything since a time)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime
from sqlalchemy import delete, func, select, update

from services.notify.access import MerchantQuery, Staff, merchant_of
from services.notify.errors import DeliveryNotFound, EndpointRefused, TooManyEndpoints, WebhookNotFound
from services.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookMessage
from services.notify.schemas import (
    ReplayAnswer,
    WebhookAttemptRead,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryPage,
    WebhookDeliveryRead,
    WebhookRead,
    WebhookSecret,
    WebhookUpdate,
)
from services.notify.settings import NotifySettings
from services.notify.webhooks import Secrets, new_secret, wake
from shared.auth import Principal, Role
from shared.clock import AppClock
from shared.contract import Offset
from shared.db import DbSession
from shared.egress import EgressRefused, resolve
from shared.tenancy import covers_merchant

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _settings(request: Request) -> NotifySettings:
    settings: NotifySettings = request.app.state.settings
    return settings


def _secrets(request: Request) -> Secrets:
    secrets: Secrets = request.app.state.webhook_secrets
    return secrets


async def _checked_url(request: Request, url: str) -> str:
    try:
        target = await resolve(url, allow_private=_settings(request).webhook_allow_private_targets)
    except EgressRefused as exc:
        raise EndpointRefused(str(exc)) from exc
    return str(target.url)


async def _endpoint(session: DbSession, principal: Principal, endpoint_id: uuid.UUID, lock: bool = False
                    ) -> WebhookEndpoint:  # fmt: skip
    endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=lock)
    if (
        endpoint is None
        or not covers_merchant(principal, endpoint.merchant_id)
        or (principal.role == Role.merchant and principal.store_ids)
    ):
        raise WebhookNotFound()
    return endpoint


def _read(endpoint: WebhookEndpoint) -> WebhookRead:
    return WebhookRead(id=endpoint.id, url=endpoint.url, description=endpoint.description,
                       event_types=list(endpoint.event_types), enabled=endpoint.disabled_at is None,
                       disabled_reason=endpoint.disabled_reason, failing_since=endpoint.failing_since,
                       created_at=endpoint.created_at)  # fmt: skip


@router.post("", status_code=201, response_model=WebhookCreated, summary="Register an endpoint")
async def create_endpoint(
    body: WebhookCreate, principal: Staff, session: DbSession, clock: AppClock, request: Request,
    merchant_id: MerchantQuery = None,
) -> WebhookCreated:  # fmt: skip
    """The URL must be public (no loopback, private or link-local address, unless ops allow it). The answer carries
    the signing secret; `GET /v1/webhooks/{id}/secret` shows it again."""
    merchant = merchant_of(principal, merchant_id)
    url = await _checked_url(request, body.url)
    count = await session.scalar(select(func.count()).where(WebhookEndpoint.merchant_id == merchant))
    if (count or 0) >= _settings(request).webhook_max_endpoints:
        raise TooManyEndpoints(limit=_settings(request).webhook_max_endpoints)
    now = clock.now()
    endpoint_id = uuid.uuid4()
    secret = new_secret()
    endpoint = WebhookEndpoint(id=endpoint_id, merchant_id=merchant, url=url, description=body.description,
                               event_types=sorted(set(body.event_types)),
                               secret=_secrets(request).seal(endpoint_id, secret), created_at=now,
                               updated_at=now)  # fmt: skip
    session.add(endpoint)
    await session.flush()
    return WebhookCreated(**_read(endpoint).model_dump(), secret=secret)


@router.get("", response_model=list[WebhookRead], summary="The merchant's endpoints")
async def list_endpoints(principal: Staff, session: DbSession, merchant_id: MerchantQuery = None) -> list[WebhookRead]:
    merchant = merchant_of(principal, merchant_id)
    rows = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.merchant_id == merchant).order_by(WebhookEndpoint.created_at)
    )
    return [_read(row) for row in rows]


@router.get("/{endpoint_id}", response_model=WebhookRead, summary="One endpoint")
async def get_endpoint(endpoint_id: uuid.UUID, principal: Staff, session: DbSession) -> WebhookRead:
    return _read(await _endpoint(session, principal, endpoint_id))


@router.patch("/{endpoint_id}", response_model=WebhookRead, summary="Change an endpoint, or re-enable it")
async def update_endpoint(
    endpoint_id: uuid.UUID, body: WebhookUpdate, principal: Staff, session: DbSession, clock: AppClock,
    request: Request,
) -> WebhookRead:  # fmt: skip
    endpoint = await _endpoint(session, principal, endpoint_id, lock=True)
    if body.url is not None:
        endpoint.url = await _checked_url(request, body.url)
    if body.description is not None:
        endpoint.description = body.description
    if body.event_types is not None:
        endpoint.event_types = sorted(set(body.event_types))
    if body.enabled is True and endpoint.disabled_at is not None:
        endpoint.disabled_at, endpoint.disabled_reason, endpoint.failing_since = None, None, None
        await wake(session)
    elif body.enabled is False and endpoint.disabled_at is None:
        endpoint.disabled_at, endpoint.disabled_reason = clock.now(), "disabled by the merchant"
    endpoint.updated_at = clock.now()
    return _read(endpoint)


@router.delete("/{endpoint_id}", status_code=204, summary="Remove an endpoint and its delivery history")
async def delete_endpoint(endpoint_id: uuid.UUID, principal: Staff, session: DbSession) -> Response:
    endpoint = await _endpoint(session, principal, endpoint_id, lock=True)
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
    await session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    await session.delete(endpoint)
    return Response(status_code=204)


@router.get("/{endpoint_id}/secret", response_model=WebhookSecret, summary="The endpoint's signing secret")
async def get_secret(
    endpoint_id: uuid.UUID, principal: Staff, session: DbSession, clock: AppClock, request: Request
) -> WebhookSecret:
    endpoint = await _endpoint(session, principal, endpoint_id)
    overlap = (
        endpoint.previous_expires_at
        if endpoint.previous_expires_at and endpoint.previous_expires_at > clock.now()
        else None
    )
    return WebhookSecret(secret=_secrets(request).current(endpoint), previous_valid_until=overlap)


@router.post("/{endpoint_id}/secret/rotate", response_model=WebhookSecret, summary="Rotate the signing secret")
async def rotate_secret(
    endpoint_id: uuid.UUID, principal: Staff, session: DbSession, clock: AppClock, request: Request
) -> WebhookSecret:
    """A new secret signs from now on; the previous one keeps signing beside it for the overlap
    (`NOTIFY_WEBHOOK_ROTATION_OVERLAP_HOURS`), so receivers can switch without losing a message."""
    endpoint = await _endpoint(session, principal, endpoint_id, lock=True)
    now = clock.now()
    overlap = timedelta(hours=_settings(request).webhook_rotation_overlap_hours)
    secret = _secrets(request).rotate(endpoint, now, overlap)
    return WebhookSecret(secret=secret, previous_valid_until=endpoint.previous_expires_at)


@router.get("/{endpoint_id}/deliveries", response_model=WebhookDeliveryPage, summary="Deliveries to the endpoint")
async def list_deliveries(
    endpoint_id: uuid.UUID, principal: Staff, session: DbSession,
    status: Annotated[str | None, Query(pattern="^(pending|sending|succeeded|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50, offset: Offset = 0,
) -> WebhookDeliveryPage:  # fmt: skip
    """Newest first, each with every attempt made (status code or transport error, how long it took)."""
    endpoint = await _endpoint(session, principal, endpoint_id)
    conditions = [WebhookDelivery.endpoint_id == endpoint.id]
    if status:
        conditions.append(WebhookDelivery.status == status)
    rows = (
        await session.execute(
            select(WebhookDelivery, WebhookMessage.event_type)
            .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
            .where(*conditions)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    history: dict[uuid.UUID, list[WebhookAttemptRead]] = {d.id: [] for d, _ in rows}
    for attempt in await session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(history)).order_by(WebhookAttempt.id)
    ):
        history[attempt.delivery_id].append(WebhookAttemptRead.model_validate(attempt, from_attributes=True))
    items = [
        WebhookDeliveryRead(id=d.id, message_id=d.message_id, event_type=event_type, status=d.status,
                            attempts=d.attempts, next_attempt_at=d.next_attempt_at, last_status_code=d.last_status_code,
                            last_error=d.last_error, created_at=d.created_at, finished_at=d.finished_at,
                            history=history[d.id])
        for d, event_type in rows
    ]  # fmt: skip
    return WebhookDeliveryPage(items=items, limit=limit, offset=offset)


@router.post("/{endpoint_id}/deliveries/{delivery_id}/retry", response_model=ReplayAnswer,
             summary="Send one delivery again")  # fmt: skip
async def retry_delivery(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, principal: Staff, session: DbSession, clock: AppClock
) -> ReplayAnswer:
    """The same message (same `webhook-id`), sent again now whatever its state, on a fresh schedule."""
    endpoint = await _endpoint(session, principal, endpoint_id)
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id,
               WebhookDelivery.status != "sending")
        .values(status="pending", attempts=0, next_attempt_at=clock.now(), finished_at=None)
        .returning(WebhookDelivery.id)
    )  # fmt: skip
    if result.first() is None:
        exists = await session.scalar(
            select(WebhookDelivery.id).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
            )
        )
        if exists is None:
            raise DeliveryNotFound()
        return ReplayAnswer(replayed=0)  # being sent right now
    await wake(session)
    return ReplayAnswer(replayed=1)


@router.post("/{endpoint_id}/replay", response_model=ReplayAnswer, summary="Send again everything since a time")
async def replay(
    endpoint_id: uuid.UUID, principal: Staff, session: DbSession, clock: AppClock,
    since: Annotated[AwareDatetime, Query(description="Messages created at or after this time")],
    only_failed: bool = Query(default=False, description="Only deliveries that failed"),
) -> ReplayAnswer:  # fmt: skip
    """Every message to this endpoint since `since` (all, or only the failed ones) is sent again, each with its
    original `webhook-id`, on a fresh schedule."""
    endpoint = await _endpoint(session, principal, endpoint_id)
    conditions = [WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.created_at >= since,
                  WebhookDelivery.status != "sending"]  # fmt: skip
    if only_failed:
        conditions.append(WebhookDelivery.status == "failed")
    result = await session.execute(
        update(WebhookDelivery).where(*conditions)
        .values(status="pending", attempts=0, next_attempt_at=clock.now(), finished_at=None)
        .returning(WebhookDelivery.id)
    )  # fmt: skip
    replayed = len(result.all())
    if replayed:
        await wake(session)
    return ReplayAnswer(replayed=replayed)
