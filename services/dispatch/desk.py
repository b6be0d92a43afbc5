"""The dispatch desk: what every room of the dispatcher works with (settings, the clock, the carrier client, the
vault), the reads they share (a delivery under its row lock, its offers, an offer's account) and the one way they
call a carrier about an offer, its failures turned into problems (`CarrierRefused`, `CarrierUnavailable`)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import accounts
from services.dispatch.carriers.base import CarrierError, Op
from services.dispatch.carriers.client import CarrierClient
from services.dispatch.errors import CarrierRefused, CarrierUnavailable, DeliveryNotFound
from services.dispatch.models import CarrierAccount, Delivery, Offer
from services.dispatch.settings import DispatchSettings
from shared.clock import Clock
from shared.vault import Vault

# An offer the carrier still holds, nobody having won the delivery yet.
LIVE = "placed"


class Desk:
    def __init__(self, *, settings: DispatchSettings, clock: Clock, carriers: CarrierClient, vault: Vault) -> None:
        self.settings = settings
        self.clock = clock
        self.carriers = carriers
        self.vault = vault

    async def locked(self, session: AsyncSession, delivery_id: uuid.UUID) -> Delivery:
        delivery = await session.scalar(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
        if delivery is None:
            raise DeliveryNotFound("No such delivery")
        return delivery

    async def account(self, session: AsyncSession, offer: Offer) -> CarrierAccount | None:
        """The carrier account an offer was placed with (none for the own fleet)."""
        return await session.get_one(CarrierAccount, offer.account_id) if offer.account_id is not None else None

    async def offers(self, session: AsyncSession, delivery: Delivery, status: str | None = None) -> list[Offer]:
        stmt = select(Offer).where(Offer.delivery_id == delivery.id).order_by(Offer.placed_at, Offer.id)
        if status is not None:
            stmt = stmt.where(Offer.status == status)
        return list((await session.scalars(stmt)).all())

    async def call(self, account: CarrierAccount, op: Op, fields: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.carriers.call(account.carrier, accounts.credentials(self.vault, account), op, fields)
        except CarrierError as error:
            raise CarrierRefused(f"{account.carrier} refused: {error.message}", carrier_code=error.code) from error
        except httpx.HTTPError as error:
            raise CarrierUnavailable(f"{account.carrier} could not be reached: {error!r}") from error


def offer_ref(offer: Offer, **extra: Any) -> dict[str, Any]:
    """How a carrier knows an offer: our shop_order_id and its waybill."""
    return {"shop_order_id": offer.shop_order_id, "waybill_id": offer.waybill_id, **extra}
