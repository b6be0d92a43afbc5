"""A local Tencent Cloud SMS sandbox: `SendSms` of API 3.0 (version 2021-01-11) in its own wire format.

It checks the common headers (`X-TC-Action`, `X-TC-Version`, `X-TC-Timestamp`, `X-TC-Region`) and the
TC3-HMAC-SHA256 signature (`AuthFailure.SecretIdNotFound`, `AuthFailure.SignatureExpire` beyond 5 minutes,
`AuthFailure.SignatureFailure`), and answers per number as Tencent does: `Code` "Ok", or an error code such as
`InvalidParameterValue.IncorrectPhoneNumber` for a number that is not E.164. It fails a number on demand: `POST
/sandbox/failures` with a number and a code (`FailedOperation.PhoneNumberInBlacklist`,
`LimitExceeded.PhoneNumberDailyLimit`, ...) fails every send to it until `DELETE /sandbox/failures`. Every message
sent is kept for tests to read (`GET /sandbox/messages`), in memory. Tencent answers HTTP 200 with `Response.Error`
for a refused request, and so does the sandbox. Run it with
`uvicorn --factory deploy.local.sandboxes.tencent_sms:create_app`; the local stack starts it for the notify service
(`wire`).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy.local.keys import ensure_secret, key_dir
from deploy.local.wiring import Environments, Wiring
from services.notify.channels import tc3
from shared.logging import configure_logging

NAME = "tencent-sms-sandbox"
SERVICE = "sms"
VERSION = "2021-01-11"
MAX_SKEW_SECONDS = 300
MAX_NUMBERS = 200
_AUTHORIZATION = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]*)/(?P<date>[^/]*)/(?P<service>[^/]*)/tc3_request, "
    r"SignedHeaders=(?P<headers>[^,]*), Signature=(?P<signature>[0-9a-f]+)"
)
_E164 = re.compile(r"\+\d{6,15}")
_MAINLAND = re.compile(r"\+861[3-9]\d{9}")


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TENCENT_SMS_SANDBOX_", extra="ignore")

    secret_id: str = "AKIDsandbox"  # noqa: S105 (the key's public id; the key itself comes from `wire`)
    secret_key: str = ""
    sdk_app_id: str = "1400000000"
    sign_name: str = "送达"
    log_level: str = "INFO"


class Failure(BaseModel):
    phone_number: str  # E.164, as the sends name it
    code: str = "FailedOperation.PhoneNumberInBlacklist"


class Refusal(Exception):
    """A whole request refused: `Response.Error`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Sandbox:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.failures: dict[str, str] = {}
        self.messages: list[dict[str, Any]] = []

    def authenticate(self, request: Request, body: bytes) -> None:
        headers = request.headers
        for name in ("X-TC-Action", "X-TC-Version", "X-TC-Timestamp", "X-TC-Region", "Authorization"):
            if not headers.get(name):
                raise Refusal("MissingParameter", f"The request is missing a required parameter `{name}`.")
        if headers["X-TC-Action"] != "SendSms":
            raise Refusal("InvalidAction", f"The action `{headers['X-TC-Action']}` is not found.")
        if headers["X-TC-Version"] != VERSION:
            raise Refusal("NoSuchVersion", f"The requested version `{headers['X-TC-Version']}` is not supported.")
        try:
            timestamp = int(headers["X-TC-Timestamp"])
        except ValueError:
            raise Refusal("InvalidParameter", "X-TC-Timestamp is not a Unix time") from None
        fields = _AUTHORIZATION.fullmatch(headers["Authorization"])
        if fields is None:
            raise Refusal("AuthFailure.InvalidAuthorization", "Authorization is not TC3-HMAC-SHA256")
        if fields["id"] != self.settings.secret_id:
            raise Refusal("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        if abs(time.time() - timestamp) > MAX_SKEW_SECONDS:
            raise Refusal("AuthFailure.SignatureExpire", "Signature expired: the timestamp is more than 5 minutes off.")
        expected = tc3.signature(
            secret_key=self.settings.secret_key,
            service=SERVICE,
            host=headers.get("host", ""),
            content_type=headers.get("content-type", ""),
            body=body,
            timestamp=timestamp,
        )
        if (
            fields["service"] != SERVICE
            or fields["date"] != tc3.utc_date(timestamp)
            or fields["headers"] != tc3.SIGNED_HEADERS
            or not hmac.compare_digest(fields["signature"], expected)
        ):
            raise Refusal("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")

    def send(self, payload: Any) -> list[dict[str, Any]]:
        if not isinstance(payload, dict):
            raise Refusal("InvalidParameter", "The body is not a JSON object.")
        numbers, params = payload.get("PhoneNumberSet"), payload.get("TemplateParamSet", [])
        for name in ("PhoneNumberSet", "SmsSdkAppId", "TemplateId"):
            if not payload.get(name):
                raise Refusal("MissingParameter", f"The request is missing a required parameter `{name}`.")
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            raise Refusal("InvalidParameter", "PhoneNumberSet is not a list of strings.")
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise Refusal("InvalidParameter", "TemplateParamSet is not a list of strings.")
        if len(numbers) > MAX_NUMBERS:
            raise Refusal("LimitExceeded.PhoneNumberCountLimit", "More than 200 numbers in one request.")
        if payload["SmsSdkAppId"] != self.settings.sdk_app_id:
            raise Refusal("InvalidParameterValue.SdkAppIdNotExist", "The SdkAppId does not exist.")
        if payload.get("SignName") != self.settings.sign_name:
            raise Refusal("FailedOperation.SignatureIncorrectOrUnapproved", "The signature is not approved.")
        return [self.send_one(number, payload, params) for number in numbers]

    def send_one(self, number: str, payload: dict[str, Any], params: list[str]) -> dict[str, Any]:
        code = self.failures.get(number, "Ok")
        if not _E164.fullmatch(number) or (number.startswith("+86") and not _MAINLAND.fullmatch(number)):
            code = "InvalidParameterValue.IncorrectPhoneNumber"
        serial_no = f"3369:{secrets.token_hex(12)}" if code == "Ok" else ""
        if code == "Ok":
            self.messages.append(
                {
                    "serial_no": serial_no,
                    "phone_number": number,
                    "template_id": payload["TemplateId"],
                    "params": params,
                    "sign_name": payload.get("SignName"),
                    "session_context": payload.get("SessionContext", ""),
                }
            )
        return {
            "SerialNo": serial_no,
            "PhoneNumber": number,
            "Fee": 1 if code == "Ok" else 0,
            "SessionContext": payload.get("SessionContext", ""),
            "Code": code,
            "Message": "send success" if code == "Ok" else code,
            "IsoCode": "CN" if number.startswith("+86") else "",
        }


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    if settings is None:
        settings = SandboxSettings()
        configure_logging(NAME, settings.log_level)
    sandbox = Sandbox(settings)
    app = FastAPI(title="Tencent Cloud SMS sandbox", version="0.1.0")
    app.state.sandbox = sandbox

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": NAME}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "service": NAME}

    @app.post("/", summary="Tencent Cloud API 3.0: SendSms")
    async def api(request: Request) -> dict[str, Any]:
        request_id = str(uuid.uuid4())
        body = await request.body()
        try:
            sandbox.authenticate(request, body)
            try:
                payload = json.loads(body)
            except ValueError:
                raise Refusal("InvalidParameter", "The body is not JSON.") from None
            statuses = sandbox.send(payload)
        except Refusal as refusal:
            return {"Response": {"Error": {"Code": refusal.code, "Message": refusal.message}, "RequestId": request_id}}
        return {"Response": {"SendStatusSet": statuses, "RequestId": request_id}}

    # --- errors on demand, and inspection: sandbox only ----------------------------------------------------------

    @app.post("/sandbox/failures", summary="Fail every send to this number with this code")
    async def fail(failure: Failure) -> dict[str, str]:
        sandbox.failures[failure.phone_number] = failure.code
        return sandbox.failures

    @app.delete("/sandbox/failures", summary="Send to every number again")
    async def clear() -> dict[str, str]:
        sandbox.failures.clear()
        return sandbox.failures

    @app.get("/sandbox/messages", summary="Every message sent, oldest first")
    async def messages(phone_number: str = "") -> list[dict[str, Any]]:
        return [m for m in sandbox.messages if not phone_number or m["phone_number"] == phone_number]

    return app


def wire(wiring: Wiring) -> Environments:
    """A secret key (made once, kept with the stack's keys) for the sandbox and the notify service, which sends
    here."""
    settings = SandboxSettings()
    secret_key = ensure_secret(key_dir(wiring.state_dir) / "tencent-sms.key", lambda: secrets.token_hex(16)).strip()
    return {
        NAME: {"TENCENT_SMS_SANDBOX_SECRET_KEY": secret_key},
        "notify": {
            "NOTIFY_SMS_URL": f"{wiring.urls[NAME]}/",
            "NOTIFY_SMS_SECRET_ID": settings.secret_id,
            "NOTIFY_SMS_SECRET_KEY": secret_key,
            "NOTIFY_SMS_SDK_APP_ID": settings.sdk_app_id,
            "NOTIFY_SMS_SIGN_NAME": settings.sign_name,
            "NOTIFY_SMS_REGION": "ap-guangzhou",
        },
    }
