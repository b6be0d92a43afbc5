"""Routes for the merchant's own riders: profile, online/offline, location, tasks (offered and accepted), and the
steps of a task; merchants list their fleet."""

from __future__ import annotations

import uuid
from typing import Annotated

import httpx
from fastapi import APIRouter, Request, Response

from services.dispatch import fleet, views
from services.dispatch.models import Rider
from services.dispatch.schemas import DeliveryRead, HandOver, Location, RiderProfile, RiderRead, TaskRead
from services.dispatch.service import app_dispatcher
from services.dispatch.views import delivery_read
from shared.auth import Principal, Role, require_roles
from shared.clock import AppClock
from shared.db import DbSession
from shared.errors import PROBLEM_JSON, ValidationFailed

router = APIRouter(tags=["riders"])
RiderPrincipal = Annotated[Principal, require_roles(Role.rider)]
Staff = Annotated[Principal, require_roles(Role.merchant, Role.ops)]


def _rider_read(rider: Rider) -> RiderRead:
    return RiderRead.model_validate(rider, from_attributes=True)


@router.put("/v1/riders/me", summary="The rider's name and phone, as customers and carriers see them")
async def set_profile(session: DbSession, clock: AppClock, principal: RiderPrincipal, body: RiderProfile) -> RiderRead:
    rider = await fleet.rider_for_update(session, clock, principal)
    rider.name, rider.phone, rider.updated_at = body.name, body.phone, clock.now()
    return _rider_read(rider)


@router.post("/v1/riders/me/online", summary="Start taking offers (a recent location is needed to get any)")
async def go_online(session: DbSession, clock: AppClock, principal: RiderPrincipal) -> RiderRead:
    rider = await fleet.rider_for_update(session, clock, principal)
    rider.online, rider.updated_at = True, clock.now()
    return _rider_read(rider)


@router.post("/v1/riders/me/offline", summary="Stop taking offers (tasks already accepted stay yours)")
async def go_offline(session: DbSession, clock: AppClock, principal: RiderPrincipal) -> RiderRead:
    rider = await fleet.rider_for_update(session, clock, principal)
    rider.online, rider.updated_at = False, clock.now()
    return _rider_read(rider)


@router.post("/v1/riders/me/location", summary="Report where the rider is (GCJ-02)")
async def report_location(
    session: DbSession, clock: AppClock, principal: RiderPrincipal, body: Location, request: Request
) -> RiderRead:
    rider = await fleet.rider_for_update(session, clock, principal)
    rider.lat, rider.lng, rider.located_at = body.lat, body.lng, clock.now()
    await fleet.located(session, request.app.state.settings, clock, rider)
    return _rider_read(rider)


@router.get("/v1/riders/me/tasks", summary="Offers waiting for an answer and accepted tasks still under way")
async def my_tasks(session: DbSession, clock: AppClock, principal: RiderPrincipal) -> list[TaskRead]:
    rows = await views.rider_tasks(session, principal, clock.now())
    return [
        TaskRead(
            delivery_id=delivery.id,
            order_id=delivery.order_id,
            offer=offer.status,
            expires_at=offer.expires_at if offer.status == "offered" else None,
            status=delivery.status,
            pickup=delivery.pickup,
            dropoff=delivery.dropoff,
            distance_m=offer.distance_m,
            tip_fen=delivery.tip_fen,
        )
        for offer, delivery in rows
    ]


@router.post("/v1/riders/me/tasks/{delivery_id}/accept", summary="Take an offered task")
async def accept(
    request: Request, session: DbSession, principal: RiderPrincipal, delivery_id: uuid.UUID
) -> DeliveryRead:
    delivery = await fleet.answer(app_dispatcher(request), session, principal, delivery_id, accept=True)
    return await delivery_read(session, principal, delivery, False)


@router.post("/v1/riders/me/tasks/{delivery_id}/decline", status_code=204, summary="Decline; it goes to the next rider")
async def decline(request: Request, session: DbSession, principal: RiderPrincipal, delivery_id: uuid.UUID) -> Response:
    await fleet.answer(app_dispatcher(request), session, principal, delivery_id, accept=False)
    return Response(status_code=204)


@router.post("/v1/riders/me/tasks/{delivery_id}/arrive", summary="At the store")
async def arrive(
    request: Request, session: DbSession, principal: RiderPrincipal, delivery_id: uuid.UUID
) -> DeliveryRead:
    delivery = await fleet.step(app_dispatcher(request), session, principal, delivery_id, "arrive")
    return await delivery_read(session, principal, delivery, False)


@router.post("/v1/riders/me/tasks/{delivery_id}/pickup", summary="Goods picked up")
async def pickup(
    request: Request, session: DbSession, principal: RiderPrincipal, delivery_id: uuid.UUID
) -> DeliveryRead:
    delivery = await fleet.step(app_dispatcher(request), session, principal, delivery_id, "pickup")
    return await delivery_read(session, principal, delivery, False)


@router.post(
    "/v1/riders/me/tasks/{delivery_id}/deliver",
    summary="Hand over: scan or type the customer's finish code (verified by the redemption service)",
    responses={409: {"description": "The redemption service's refusal, passed through", "content": {PROBLEM_JSON: {}}}},
)
async def deliver(
    request: Request, session: DbSession, principal: RiderPrincipal, delivery_id: uuid.UUID, body: HandOver
) -> Response:
    if (body.code is None) == (body.qr_token is None):
        raise ValidationFailed("Give the finish code (code) or its QR token (qr_token), one of them")
    http: httpx.AsyncClient = request.app.state.http
    delivery, answer = await fleet.hand_over(
        app_dispatcher(request),
        session,
        principal,
        delivery_id,
        body,
        request.headers.get("authorization", ""),
        http,
        request.app.state.vouchers,
    )
    if answer.status_code >= 300:
        # The refusal is the redemption service's (wrong code, locked out, ...): passed back as it came.
        return Response(answer.content, status_code=answer.status_code, media_type=PROBLEM_JSON)
    read = await delivery_read(session, principal, delivery, False)
    return Response(read.model_dump_json(), media_type="application/json")


@router.get("/v1/riders", summary="The merchant's riders")
async def list_riders(session: DbSession, principal: Staff, merchant_id: str | None = None) -> list[RiderRead]:
    scope = principal.merchant_id if principal.role is Role.merchant else merchant_id
    return [_rider_read(r) for r in await views.riders(session, scope)]
