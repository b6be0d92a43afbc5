"""The courier's two channels over the providers' clients (`channels/`): what each provider's answer means for a
notice (sent; no grant; a field WeChat would refuse; try again; refused for good; unknown)."""

from __future__ import annotations

from services.notify.channels import sms, wechat
from services.notify.channels.fields import UnfitValue, fit
from services.notify.courier import Answer, Result

# WeChat's "system busy" and rate limits: the same message may pass later.
WECHAT_PASSING = frozenset({-1, 45009, 45011})
# Tencent's codes for a failure a later try may not meet (the rest would repeat).
SMS_PASSING = frozenset(
    {
        "InternalError",
        "InternalError.Timeout",
        "InternalError.RequestTimeException",
        "RequestLimitExceeded",
        "FailedOperation.FailResolvePacket",
        "LimitExceeded.PhoneNumberThirtySecondLimit",
    }
)
# A failure before the request could have reached the provider: sending again cannot tell the customer twice.
NOT_SENT = ("ConnectError", "ConnectTimeout", "PoolTimeout")


def _unreachable(reason: str) -> Answer:
    if any(kind in reason for kind in NOT_SENT):
        return Answer(Result.retry, "unreachable", reason)
    return Answer(Result.unknown, "no_answer", reason)


class WechatSender:
    def __init__(self, api: wechat.WeChatApi, miniprogram_state: str) -> None:
        self.api = api
        self.miniprogram_state = miniprogram_state

    async def send(self, *, openid: str, template_id: str, page: str | None, data: dict[str, str]) -> Answer:
        try:
            fitted = {key: fit(key, value or "无") for key, value in data.items()}
        except UnfitValue as exc:
            return Answer(Result.bad_field, "unfit", str(exc))
        result = await self.api.send(
            wechat.SubscribeMessage(touser=openid, template_id=template_id, data=fitted, page=page or "",
                                    miniprogram_state=self.miniprogram_state)
        )  # fmt: skip
        if isinstance(result, wechat.Sent):
            return Answer(Result.sent)
        if isinstance(result, wechat.NoGrant):
            return Answer(Result.no_grant, "43101", result.errmsg)
        if isinstance(result, wechat.BadField):
            return Answer(Result.bad_field, "47003", result.errmsg)
        if isinstance(result, wechat.WeChatError):
            passing = result.errcode in WECHAT_PASSING
            return Answer(Result.retry if passing else Result.refused, str(result.errcode), result.errmsg)
        return _unreachable(result.reason)


def e164(phone: str) -> str:
    """A mainland mobile number as Tencent wants it (`+86…`); one already international is kept."""
    phone = phone.strip().replace(" ", "").replace("-", "")
    if phone.startswith("+"):
        return phone
    return f"+86{phone}"


class SmsSender:
    def __init__(self, client: sms.TencentSms) -> None:
        self.client = client

    async def send(self, *, phone: str, template_id: str, params: list[str]) -> Answer:
        result = await self.client.send([e164(phone)], template_id, params)
        if isinstance(result, sms.Answered):
            number = result.numbers[0] if result.numbers else None
            if number is None:
                return Answer(Result.unknown, "no_status", "the answer lists no number")
            if number.sent:
                return Answer(Result.sent)
            return Answer(Result.retry if number.code in SMS_PASSING else Result.refused, number.code, number.message)
        if isinstance(result, sms.Refused):
            return Answer(Result.retry if result.code in SMS_PASSING else Result.refused, result.code, result.message)
        return _unreachable(result.reason)
