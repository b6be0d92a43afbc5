"""A redemption in one statement. When nothing stands in its way, redeeming is `redeem_code` (a PL/pgSQL function,
migration redemption_0005): the request_no's lock, the lockout check, the conditional update with the caller's
tenancy as its terms, the ledger, audit, answer and outbox rows. Everything else (replays, lockouts, refusals and
their precise reasons) takes the ledger's full path (services/redemption/ledger.py), which the function leaves to
when it writes nothing."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.redemption import codes, events
from services.redemption.lockouts import actor_of
from services.redemption.scanning import Presented
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.db import pooled_driver
from shared.handover import Voucher
from shared.tenancy import covers_store
from shared.vault import Vault


def _terms(principal: Principal, presented: Presented, voucher: Voucher | None) -> dict[str, Any] | None:
    """What `scanning.authorise` asks of the code, as the conditions of the conditional update in `redeem_code`, and the
    lockout scopes the caller counts towards if the code passes them; None when the caller's request needs the full
    path to be answered (it can only be refused)."""
    store_id = presented.store_id
    if principal.role is Role.ops:
        if store_id is None:
            return None
        merchant_id, finish, order_id = None, None, None
    elif principal.role is Role.merchant:
        if store_id is None or not covers_store(principal, principal.merchant_id, store_id):
            return None
        merchant_id, finish, order_id = principal.merchant_id, False, None
    elif principal.role is Role.rider and voucher is not None:
        merchant_id, finish, order_id = principal.merchant_id, True, voucher.order_id
    else:
        return None
    if principal.role is not Role.ops and merchant_id is None:
        return None
    # As `lockouts.lockout_scopes` finds them: the store (known by the code, which is of this store) only for its staff.
    scopes = [("principal", principal.sub)]
    if store_id and covers_store(principal, merchant_id or "", store_id):
        scopes.append(("store", store_id))
        if presented.device_id:
            scopes.append(("device", f"{store_id}:{presented.device_id}"))
    return {
        "merchant_id": merchant_id,
        "store_id": store_id,
        "finish": finish,
        "order_id": order_id,
        "lock_scopes": [s for s, _ in scopes],
        "lock_keys": [k for _, k in scopes],
    }


# On a pooled connection's asyncpg driver (shared.db.pooled_driver), without a session: no ORM or compilation in the
# hot path, and no BEGIN/COMMIT of its own (the function is atomic by itself).
REDEEM_CODE = (
    "SELECT redeem_code($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,"
    " $21, $22, $23, $24, $25::jsonb)"
)


async def redeem_at_once(
    engine: AsyncEngine,
    principal: Principal,
    presented: Presented,
    voucher: Voucher | None,
    scope: str,
    request_no: str,
    request_hash: str,
    count: int,
    now: datetime,
    clock: Clock,
    vault: Vault,
) -> dict[str, Any] | None:
    """The redemption in one statement (`redeem_code`, migration redemption_0005) when nothing stands in its way:
    the answer, stored with the ledger, audit and outbox rows. None, with nothing written, when the request needs
    the full path: a replay, a lockout, a code the caller may not redeem, or a refusal to explain. A QR token costs
    one more statement: its code's secret, to check the token before."""
    terms = _terms(principal, presented, voucher)
    if terms is None:
        return None
    parsed = codes.parse_token(presented.qr_token) if presented.qr_token else None
    number = None if presented.qr_token else codes.normalise(presented.code or "")
    if parsed is None and (number is None or not codes.check_digit_ok(number)):
        return None
    envelope = events.envelope(clock, events.REDEEMED).model_dump_json()
    # The pool's connection is taken only now, with everything that could be worked out before worked out.
    async with pooled_driver(engine) as connection:
        code_id: uuid.UUID | None = None
        if parsed is not None:
            sealed = await connection.fetchval("SELECT secret_sealed FROM code WHERE id = $1", parsed[0])
            if sealed is None or not codes.token_valid(vault.open_bytes(sealed, str(parsed[0])), parsed[1], now):
                return None
            code_id = parsed[0]
        answer: dict[str, Any] | None = await connection.fetchval(
            REDEEM_CODE,
            *(scope, request_no, request_hash, number, code_id, count, now, now.isoformat()),
            *(terms["merchant_id"], terms["store_id"], terms["finish"], terms["order_id"]),
            *(terms["lock_scopes"], terms["lock_keys"]),
            *(uuid.uuid4(), actor_of(principal), principal.sub, principal.role.value),
            *(presented.device_id, presented.ip, presented.lat, presented.lng, presented.shown()),
            *(events.TOPIC, envelope),
        )
    return answer
