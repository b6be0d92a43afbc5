"""Tencent Cloud SMS: `SendSms` of API 3.0, version 2021-01-11, signed with TC3-HMAC-SHA256 (`tc3`).

One call sends one template to up to 200 numbers and answers per number (`Code` "Ok" or an error code), so a call
can succeed for some and fail for others: `Answered`. A request Tencent refuses as a whole (a bad signature, a
missing parameter, a rate limit) is `Refused`, and one that got no answer is `Unreachable`. Requests are signed at
the wall clock's time, whatever clock the service runs on: Tencent refuses a timestamp more than 5 minutes off.
Phone numbers are only ever logged masked (`masked`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from services.notify.channels import tc3

log = logging.getLogger(__name__)

URL = "https://sms.tencentcloudapi.com/"
SERVICE = "sms"
VERSION = "2021-01-11"
CONTENT_TYPE = "application/json"


def masked(phone_number: str) -> str:
    """A phone number fit for a log: its first 3 and last 4 characters."""
    if len(phone_number) <= 7:
        return "*" * len(phone_number)
    return phone_number[:3] + "*" * (len(phone_number) - 7) + phone_number[-4:]


@dataclass(frozen=True)
class NumberResult:
    """What Tencent said about one number of a call."""

    phone_number: str
    code: str  # "Ok", or an error code such as "FailedOperation.PhoneNumberInBlacklist"
    message: str
    serial_no: str = ""

    @property
    def sent(self) -> bool:
        return self.code == "Ok"


@dataclass(frozen=True)
class Answered:
    """The call was accepted; each number has its own result."""

    numbers: tuple[NumberResult, ...]
    request_id: str


@dataclass(frozen=True)
class Refused:
    """Tencent refused the whole request (`Response.Error`)."""

    code: str
    message: str
    request_id: str


@dataclass(frozen=True)
class Unreachable:
    """No answer, or not one in Tencent's shape."""

    reason: str


SmsResult = Answered | Refused | Unreachable


class TencentSms:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        sign_name: str,
        region: str = "ap-guangzhou",
        url: str = URL,
        timeout: float = 5.0,
    ) -> None:
        self.http = http
        self.secret_id, self.secret_key = secret_id, secret_key
        self.sdk_app_id, self.sign_name, self.region = sdk_app_id, sign_name, region
        self.url = url
        self.host = httpx.URL(url).netloc.decode()  # as httpx sends it in `Host`, which the signature covers
        self.timeout = timeout

    async def send(
        self, phone_numbers: Sequence[str], template_id: str, params: Sequence[str], *, session_context: str = ""
    ) -> SmsResult:
        """Sends template `template_id` with `params` to each number (E.164, `+8613800000000`)."""
        payload: dict[str, Any] = {
            "PhoneNumberSet": list(phone_numbers),
            "SmsSdkAppId": self.sdk_app_id,
            "TemplateId": template_id,
            "SignName": self.sign_name,
            "TemplateParamSet": list(params),
        }
        if session_context:
            payload["SessionContext"] = session_context
        body = json.dumps(payload, ensure_ascii=False).encode()
        timestamp = int(time.time())
        signature = tc3.signature(
            secret_key=self.secret_key,
            service=SERVICE,
            host=self.host,
            content_type=CONTENT_TYPE,
            body=body,
            timestamp=timestamp,
        )
        headers = {
            "Host": self.host,
            "Content-Type": CONTENT_TYPE,
            "X-TC-Action": "SendSms",
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self.region,
            "Authorization": tc3.authorization(
                secret_id=self.secret_id, service=SERVICE, timestamp=timestamp, signature=signature
            ),
        }
        numbers = ", ".join(masked(number) for number in phone_numbers)
        try:
            response = await self.http.post(self.url, content=body, headers=headers, timeout=self.timeout)
            answer = response.json()["Response"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("SendSms unreachable", extra={"numbers": numbers, "error": type(exc).__name__})
            return Unreachable(f"{type(exc).__name__}: {exc}")
        request_id = str(answer.get("RequestId", ""))
        if "Error" in answer:
            error = answer["Error"]
            log.warning("SendSms refused", extra={"numbers": numbers, "code": error.get("Code")})
            return Refused(str(error.get("Code", "")), str(error.get("Message", "")), request_id)
        results = tuple(
            NumberResult(
                phone_number=str(status.get("PhoneNumber", "")),
                code=str(status.get("Code", "")),
                message=str(status.get("Message", "")),
                serial_no=str(status.get("SerialNo", "")),
            )
            for status in answer.get("SendStatusSet") or []
        )
        for result in results:
            if not result.sent:
                log.info("SendSms number refused", extra={"number": masked(result.phone_number), "code": result.code})
        return Answered(results, request_id)
