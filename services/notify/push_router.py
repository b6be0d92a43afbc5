"""WeChat's message push of subscribe-message events (`/v1/notifications/wechat/push`, public: WeChat proves itself
by the push token's signature, and in safe mode by the sealed body's `msg_signature`).

- `subscribe_msg_popup_event`: the customer answered a prompt; each `accept` is a grant (matched with the
  mini-program's own report of the same popup, so the two make one);
- `subscribe_msg_change_event`: a `reject` from the user's settings page voids their open grants for the template;
- `subscribe_msg_sent_event`: WeChat's final word on a message; recorded in the log, it changes no grant.
`List` is an object for one template and an array for several: both are read. A retried push (same customer,
`CreateTime` and event) is answered and changes nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.dialects.postgresql import insert

from services.notify import grants
from services.notify.models import PushReceipt
from services.notify.settings import NotifySettings
from shared.clock import AppClock
from shared.db import DbSession
from shared.errors import BadRequest, NotFound, Unauthorized
from shared.wechat_push import (
    PushMalformed,
    PushRefused,
    decrypt_push,
    msg_signature,
    push_signature,
    signature_matches,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/notifications/wechat", tags=["wechat push"])

Signed = Annotated[str, Query(min_length=1, max_length=64)]


class PushSignatureInvalid(Unauthorized):
    code, title = "push-signature-invalid", "The push is not signed by WeChat for this account"


def _settings(request: Request) -> NotifySettings:
    settings: NotifySettings = request.app.state.settings
    if not settings.wechat_push_token:
        raise NotFound("WeChat message push is not configured")
    return settings


def _check_fresh(settings: NotifySettings, timestamp: str, now: datetime) -> None:
    try:
        sent = datetime.fromtimestamp(int(timestamp), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise PushSignatureInvalid("timestamp is not unix seconds") from exc
    if abs(now - sent) > timedelta(seconds=settings.wechat_push_tolerance_seconds):
        raise PushSignatureInvalid("timestamp is too far from now")


@router.get("/push", response_class=PlainTextResponse, summary="WeChat's check of the push URL")
async def verify_url(
    request: Request, clock: AppClock, signature: Signed, timestamp: Signed, nonce: Signed, echostr: Signed
) -> PlainTextResponse:
    settings = _settings(request)
    _check_fresh(settings, timestamp, clock.now())
    if not signature_matches(push_signature(settings.wechat_push_token, timestamp, nonce), signature):
        raise PushSignatureInvalid()
    return PlainTextResponse(echostr)


@router.post("/push", response_class=PlainTextResponse, summary="WeChat's subscribe-message events")
async def receive_push(
    request: Request, session: DbSession, clock: AppClock, signature: Signed, timestamp: Signed, nonce: Signed,
    msg_signature_: Annotated[str | None, Query(alias="msg_signature", max_length=64)] = None,
) -> PlainTextResponse:  # fmt: skip
    settings = _settings(request)
    now = clock.now()
    _check_fresh(settings, timestamp, now)
    if not signature_matches(push_signature(settings.wechat_push_token, timestamp, nonce), signature):
        raise PushSignatureInvalid()
    body = _json(await request.body())
    if settings.wechat_push_aes_key:
        encrypt = body.get("Encrypt")
        if not isinstance(encrypt, str) or not msg_signature_:
            raise PushSignatureInvalid("safe mode: only sealed pushes are taken")
        if not signature_matches(msg_signature(settings.wechat_push_token, timestamp, nonce, encrypt), msg_signature_):
            raise PushSignatureInvalid("msg_signature does not match")
        try:
            body = _json(decrypt_push(settings.wechat_push_aes_key, settings.wechat_appid, encrypt))
        except PushMalformed as exc:
            raise BadRequest(str(exc)) from exc
        except PushRefused as exc:
            raise PushSignatureInvalid(str(exc)) from exc
    await _apply(session, settings, body, now)
    return PlainTextResponse("success")


async def _apply(session: DbSession, settings: NotifySettings, body: dict[str, Any], now: datetime) -> None:
    event = str(body.get("Event") or "")
    openid = body.get("FromUserName")
    if body.get("MsgType") != "event" or not event.startswith("subscribe_msg_"):
        return  # other pushes to this URL are not ours to act on
    if not isinstance(openid, str) or not openid:
        raise BadRequest("FromUserName is missing")
    try:
        create_time = int(str(body.get("CreateTime")))  # an int, though the documentation says a string
    except (TypeError, ValueError) as exc:
        raise BadRequest("CreateTime is not a number") from exc
    first = await session.scalar(
        insert(PushReceipt).values(openid=openid, create_time=create_time, event=event, received_at=now)
        .on_conflict_do_nothing().returning(PushReceipt.openid)
    )  # fmt: skip
    if first is None:
        return  # WeChat retried a push already handled
    at = datetime.fromtimestamp(create_time, UTC) if 0 < create_time < 2**31 else now
    for item in _items(body.get("List")):
        template_id = str(item.get("TemplateId") or "")
        status = str(item.get("SubscribeStatusString") or "")
        if not template_id:
            continue
        if event == "subscribe_msg_popup_event" and status == "accept":
            await grants.record_accept(
                session, openid=openid, template_id=template_id, source="push", at=at,
                long_term=template_id in settings.long_term_templates,
                match_window=timedelta(seconds=settings.grant_match_seconds),
            )  # fmt: skip
        elif event == "subscribe_msg_change_event" and status == "reject":
            await grants.void(session, openid=openid, template_id=template_id, at=at)
        elif event == "subscribe_msg_sent_event":
            log.info("wechat reports a subscribe message's delivery",
                     extra={"template_id": template_id, "msg_id": item.get("MsgID"),
                            "error_code": item.get("ErrorCode"), "error_status": item.get("ErrorStatus")})  # fmt: skip


def _items(value: Any) -> list[dict[str, Any]]:
    """`List` is an object when there is one template and an array when there are several."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest("The push is not JSON (set the push's data format to JSON)") from exc
    if not isinstance(body, dict):
        raise BadRequest("The push is not a JSON object")
    return body
