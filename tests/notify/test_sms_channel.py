"""The SMS channel (`services/notify/channels/sms.py`) against the Tencent Cloud SMS sandbox served on a real port,
and the sandbox against Tencent Cloud's own SDK (`tencentcloud-sdk-python-sms`), a client nobody here wrote: the
SDK's TC3-HMAC-SHA256 signatures verify there, so the signing both sides share (`tc3`) is Tencent's algorithm."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models
from tencentcloud.sms.v20210111.sms_client_async import SmsClient

from deploy.local.ports import free_port
from deploy.local.sandboxes.tencent_sms import SandboxSettings, create_app
from services.notify.channels import tc3
from services.notify.channels.sms import Answered, Refused, TencentSms, Unreachable, masked
from tests.support import serve

SECRET_ID, SECRET_KEY = "AKIDnotifytest", "notify-test-secret-key"
SDK_APP_ID, SIGN_NAME, TEMPLATE = "1400123456", "送达", "2233445"
CUSTOMER, OTHER = "+8613800001234", "+8613900005678"


@dataclass
class Sms:
    url: str
    http: httpx.AsyncClient
    sandbox: httpx.AsyncClient

    def client(self, *, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY, url: str = "") -> TencentSms:
        return TencentSms(
            self.http,
            secret_id=secret_id,
            secret_key=secret_key,
            sdk_app_id=SDK_APP_ID,
            sign_name=SIGN_NAME,
            url=url or f"{self.url}/",
        )

    async def messages(self) -> list[dict[str, Any]]:
        return list((await self.sandbox.get("/sandbox/messages")).json())

    async def post(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """A request as the test builds it, headers and all."""
        response = await self.http.post(f"{self.url}/", content=body, headers=headers)
        return dict(response.json()["Response"])


@pytest.fixture
async def sms() -> AsyncIterator[Sms]:
    settings = SandboxSettings(secret_id=SECRET_ID, secret_key=SECRET_KEY, sdk_app_id=SDK_APP_ID, sign_name=SIGN_NAME)
    async with serve(create_app(settings)) as url, httpx.AsyncClient() as http, httpx.AsyncClient(base_url=url) as sb:
        yield Sms(url, http, sb)


def signed_headers(host: str, body: bytes, *, timestamp: int, secret_key: str = SECRET_KEY) -> dict[str, str]:
    signature = tc3.signature(
        secret_key=secret_key,
        service="sms",
        host=host,
        content_type="application/json",
        body=body,
        timestamp=timestamp,
    )
    return {
        "Content-Type": "application/json",
        "X-TC-Action": "SendSms",
        "X-TC-Version": "2021-01-11",
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Region": "ap-guangzhou",
        "Authorization": tc3.authorization(
            secret_id=SECRET_ID, service="sms", timestamp=timestamp, signature=signature
        ),
    }


def send_body(*numbers: str) -> bytes:
    payload = {
        "PhoneNumberSet": list(numbers),
        "SmsSdkAppId": SDK_APP_ID,
        "TemplateId": TEMPLATE,
        "SignName": SIGN_NAME,
        "TemplateParamSet": ["SD1"],
    }
    return json.dumps(payload).encode()


async def test_a_signed_send_is_accepted_and_recorded(sms: Sms) -> None:
    result = await sms.client().send([CUSTOMER], TEMPLATE, ["SD20261122-0001", "已送达"], session_context="notice-7")
    assert isinstance(result, Answered)
    [number] = result.numbers
    assert (number.phone_number, number.code, number.sent) == (CUSTOMER, "Ok", True)
    assert number.serial_no
    assert await sms.messages() == [
        {
            "serial_no": number.serial_no,
            "phone_number": CUSTOMER,
            "template_id": TEMPLATE,
            "params": ["SD20261122-0001", "已送达"],
            "sign_name": SIGN_NAME,
            "session_context": "notice-7",
        }
    ]


async def test_each_number_has_its_own_result(sms: Sms, caplog: pytest.LogCaptureFixture) -> None:
    await sms.sandbox.post(
        "/sandbox/failures", json={"phone_number": OTHER, "code": "FailedOperation.PhoneNumberInBlacklist"}
    )
    with caplog.at_level(logging.DEBUG):
        result = await sms.client().send([CUSTOMER, OTHER, "+86123"], TEMPLATE, ["SD1"])
    assert isinstance(result, Answered)
    assert [(n.phone_number, n.code) for n in result.numbers] == [
        (CUSTOMER, "Ok"),
        (OTHER, "FailedOperation.PhoneNumberInBlacklist"),
        ("+86123", "InvalidParameterValue.IncorrectPhoneNumber"),
    ]
    assert [m["phone_number"] for m in await sms.messages()] == [CUSTOMER]
    # The refusals were logged, masked: never a whole number.
    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert masked(OTHER) in logged
    assert OTHER not in logged
    await sms.sandbox.delete("/sandbox/failures")
    await sms.sandbox.post(
        "/sandbox/failures", json={"phone_number": CUSTOMER, "code": "LimitExceeded.PhoneNumberDailyLimit"}
    )
    again = await sms.client().send([CUSTOMER, OTHER], TEMPLATE, ["SD1"])
    assert isinstance(again, Answered)
    assert [n.code for n in again.numbers] == ["LimitExceeded.PhoneNumberDailyLimit", "Ok"]


async def test_a_wrongly_signed_request_is_refused(sms: Sms) -> None:
    wrong_key = await sms.client(secret_key="not-the-key").send([CUSTOMER], TEMPLATE, ["SD1"])
    assert isinstance(wrong_key, Refused)
    assert wrong_key.code == "AuthFailure.SignatureFailure"
    wrong_id = await sms.client(secret_id="AKIDsomeoneelse").send([CUSTOMER], TEMPLATE, ["SD1"])
    assert isinstance(wrong_id, Refused)
    assert wrong_id.code == "AuthFailure.SecretIdNotFound"
    # A body changed after signing, and a header the signature covers changed, break the signature.
    host = httpx.URL(sms.url).netloc.decode()
    headers = signed_headers(host, send_body(CUSTOMER), timestamp=int(time.time()))
    tampered = await sms.post(send_body(OTHER), headers)
    assert tampered["Error"]["Code"] == "AuthFailure.SignatureFailure"
    retyped = await sms.post(send_body(CUSTOMER), headers | {"Content-Type": "application/json; charset=utf-8"})
    assert retyped["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert await sms.messages() == []


async def test_an_old_signature_and_missing_headers_are_refused(sms: Sms) -> None:
    host = httpx.URL(sms.url).netloc.decode()
    body = send_body(CUSTOMER)
    stale = await sms.post(body, signed_headers(host, body, timestamp=int(time.time()) - 600))
    assert stale["Error"]["Code"] == "AuthFailure.SignatureExpire"
    fresh = signed_headers(host, body, timestamp=int(time.time()))
    assert "SendStatusSet" in await sms.post(body, fresh)
    for header in ("X-TC-Region", "X-TC-Action", "X-TC-Version", "X-TC-Timestamp"):
        without = {name: value for name, value in fresh.items() if name != header}
        answer = await sms.post(body, without)
        assert answer["Error"]["Code"] == "MissingParameter"
        assert header in answer["Error"]["Message"]
    other_action = await sms.post(body, fresh | {"X-TC-Action": "PullSmsSendStatus"})
    assert other_action["Error"]["Code"] == "InvalidAction"
    assert len(await sms.messages()) == 1


async def test_a_request_for_too_many_numbers_is_refused_whole(sms: Sms) -> None:
    numbers = [f"+86138{i:08d}" for i in range(201)]
    result = await sms.client().send(numbers, TEMPLATE, ["SD1"])
    assert isinstance(result, Refused)
    assert result.code == "LimitExceeded.PhoneNumberCountLimit"


async def test_no_answer_is_unreachable(sms: Sms) -> None:
    result = await sms.client(url=f"http://127.0.0.1:{free_port()}/").send([CUSTOMER], TEMPLATE, ["SD1"])
    assert isinstance(result, Unreachable)


async def test_tencents_own_sdk_signs_requests_the_sandbox_accepts(sms: Sms) -> None:
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=httpx.URL(sms.url).netloc.decode()))
    request = models.SendSmsRequest()
    request.from_json_string(send_body(CUSTOMER).decode())
    async with SmsClient(Credential(SECRET_ID, SECRET_KEY), "ap-guangzhou", profile) as client:
        answer = await client.SendSms(request)
        assert [(status.PhoneNumber, status.Code) for status in answer.SendStatusSet] == [(CUSTOMER, "Ok")]
    async with SmsClient(Credential(SECRET_ID, "not-the-key"), "ap-guangzhou", profile) as client:
        with pytest.raises(TencentCloudSDKException) as refused:
            await client.SendSms(request)
        assert refused.value.get_code() == "AuthFailure.SignatureFailure"
    assert [m["phone_number"] for m in await sms.messages()] == [CUSTOMER]


def test_a_phone_number_is_masked_to_its_first_3_and_last_4() -> None:
    assert masked("+8613800001234") == "+86*******1234"
    assert masked("13800001234") == "138****1234"
    assert masked("1234567") == "*******"
